// Package client is the Go SDK of Evident: sign transition records, post
// them, and fetch and verify inclusion proofs against a pinned log key. The
// bundled runners and the evident command use it; so can any CI job.
package client

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"evident.dev/evident/api"
	"evident.dev/evident/audit"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
	"evident.dev/evident/witness"
)

// Client talks to one Evident server.
type Client struct {
	BaseURL string       // e.g. "http://127.0.0.1:8080"
	HTTP    *http.Client // nil: a client with a 30s timeout
	// Token, if set, is sent as a bearer token: the apply gate and the read
	// side need one once the server's access is configured.
	Token string
}

// New returns a client for the server at baseURL.
func New(baseURL string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// APIError is a refusal from the server, carrying its status and JSON error.
type APIError struct {
	Status     int
	RetryAfter time.Duration
	Body       api.ErrorBody
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("server answered %d", e.Status)
	if e.Body.Error != "" {
		msg += ": " + e.Body.Error
	}
	return msg
}

// Signer signs statements with one key.
type Signer struct {
	key crypto.Signer
	// Origin, when set, binds every transition that names no log origin to
	// that log (predicate.logOrigin): another log refuses it, so the signed
	// record cannot be replayed there.
	Origin string
}

// NewSigner reads a PKCS#8 PEM private key (ed25519 or ECDSA P-256).
func NewSigner(pemBytes []byte) (*Signer, error) {
	k, err := verifier.ParsePrivateKey(pemBytes)
	if err != nil {
		return nil, err
	}
	return &Signer{key: k}, nil
}

// Sign wraps a transition in an in-toto statement about subjects and signs it
// into a DSSE envelope. With no subjects, the transition's artifacts and
// commit are the subjects.
func (s *Signer) Sign(t evidence.Transition, subjects ...evidence.Subject) ([]byte, error) {
	payload, err := encodeStatement(t, s.Origin, subjects)
	if err != nil {
		return nil, err
	}
	return verifier.SignEnvelope(s.key, payload)
}

// Check reports whether t would be a valid record about its default
// subjects: what Sign checks before it signs. A receiver that acknowledges
// an event for later delivery asks this first, so that it never
// acknowledges what it could not send.
func Check(t evidence.Transition) error {
	_, err := encodeStatement(t, "", nil)
	return err
}

// SignRecord signs t about its default subjects, as the runners post it.
func (s *Signer) SignRecord(_ context.Context, t evidence.Transition) (Signed, error) {
	env, err := s.Sign(t)
	if err != nil {
		return Signed{}, err
	}
	return Signed{Body: env, ContentType: "application/json"}, nil
}

// Signed is a record ready to post: a DSSE envelope (application/json) or a
// Sigstore bundle (verifier.BundleMediaType).
type Signed struct {
	Body        []byte
	ContentType string
}

// encodeStatement wraps a transition in an in-toto statement about subjects
// (DefaultSubjects when none), binding it to origin when it names no log,
// and validates it: the DSSE payload both signers sign.
func encodeStatement(t evidence.Transition, origin string, subjects []evidence.Subject) ([]byte, error) {
	if t.LogOrigin == "" {
		t.LogOrigin = origin
	}
	if len(subjects) == 0 {
		subjects = DefaultSubjects(t)
	}
	st := evidence.Statement{
		Type:          evidence.StatementType,
		Subject:       subjects,
		PredicateType: evidence.PredicateType,
		Predicate:     t,
	}
	if err := st.Validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode statement: %w", err)
	}
	return payload, nil
}

// DefaultSubjects names what a transition is about: its artifacts, its plan
// hash, and its commit.
func DefaultSubjects(t evidence.Transition) []evidence.Subject {
	var subs []evidence.Subject
	for _, a := range t.Artifacts {
		if d, ok := strings.CutPrefix(a.Digest, "sha256:"); ok {
			subs = append(subs, evidence.Subject{Name: a.Name, Digest: map[string]string{"sha256": d}})
		}
	}
	if t.Plan != nil && t.Plan.PlanSHA256 != "" {
		subs = append(subs, evidence.Subject{Name: "plan", Digest: map[string]string{"sha256": t.Plan.PlanSHA256}})
	}
	if t.Source.CommitSHA != "" {
		subs = append(subs, evidence.Subject{Name: t.Source.Repository, Digest: map[string]string{"gitCommit": t.Source.CommitSHA}})
	}
	if len(subs) == 0 {
		// Nothing else to name: the subject is the change itself.
		sum := sha256.Sum256([]byte(t.ChangeID))
		subs = append(subs, evidence.Subject{Name: "change:" + t.ChangeID, Digest: map[string]string{"sha256": fmt.Sprintf("%x", sum)}})
	}
	return subs
}

// Post sends a signed envelope. It returns the receipt for a new entry or a
// duplicate, and an *APIError for a refusal.
func (c *Client) Post(ctx context.Context, envelope []byte) (*api.Receipt, error) {
	return c.PostSigned(ctx, Signed{Body: envelope, ContentType: "application/json"})
}

// PostSigned sends a signed record with its content type: a DSSE envelope,
// or a Sigstore bundle from a KeylessSigner. Answers as Post.
func (c *Client) PostSigned(ctx context.Context, s Signed) (*api.Receipt, error) {
	var rec api.Receipt
	if err := c.doAs(ctx, http.MethodPost, "/v1/records", s.ContentType, s.Body, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// latestCheckpoint fetches the latest signed checkpoint, or under a witness
// policy the latest witnessed one: nil while the witnesses have cosigned
// none yet.
func (c *Client) latestCheckpoint(ctx context.Context, policy *witness.Policy) ([]byte, error) {
	if policy == nil {
		return c.Checkpoint(ctx)
	}
	cp, err := c.WitnessedCheckpoint(ctx)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusServiceUnavailable {
		return nil, nil
	}
	return cp, err
}

// WitnessedCheckpoint fetches the latest checkpoint the log's witnesses
// cosigned, with their cosignatures. Check it with witness.Policy.
func (c *Client) WitnessedCheckpoint(ctx context.Context) ([]byte, error) {
	return c.text(ctx, "/v1/checkpoint/witnessed")
}

// Checkpoint fetches the latest signed checkpoint note.
func (c *Client) Checkpoint(ctx context.Context) ([]byte, error) {
	return c.text(ctx, "/v1/checkpoint")
}

// LogKey fetches the server's claimed log verifier key. Pin it out of band:
// a key fetched from the server proves nothing about the server.
func (c *Client) LogKey(ctx context.Context) (string, error) {
	b, err := c.text(ctx, "/v1/log-key")
	return strings.TrimSpace(string(b)), err
}

// LogKeys fetches the log's chain of keys (GET /v1/log-keys), as the server
// claims it: check it with FollowLogKeys.
func (c *Client) LogKeys(ctx context.Context) (*api.LogKeys, error) {
	var k api.LogKeys
	if err := c.do(ctx, http.MethodGet, "/v1/log-keys", nil, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// KeyChain is the log's chain of keys as far as it was verified from a
// pinned genesis key.
type KeyChain struct {
	Pinned string
	Steps  []api.LogKeyStep
	// Keys[i] signs the checkpoints covering entries up to Steps[i].Index
	// (and, with Keys[i+1], the first checkpoint after it); the last one
	// signs every later checkpoint.
	Keys []string
}

// FollowLogKeys fetches the rotations the server names and verifies them
// from the pinned (genesis) key: each rotation entry signed by the key
// before it, each in a checkpoint both keys sign. The server is not
// trusted: a rotation that does not verify is an error.
func (c *Client) FollowLogKeys(ctx context.Context, pinned string) (*KeyChain, error) {
	k, err := c.LogKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch the log's key rotations: %w", err)
	}
	chain := &KeyChain{Pinned: pinned, Steps: k.Rotations, Keys: []string{pinned}}
	for i := range k.Rotations {
		key, _, err := audit.FollowLogKeys(pinned, k.Rotations[:i+1])
		if err != nil {
			return nil, err
		}
		chain.Keys = append(chain.Keys, key)
	}
	return chain, nil
}

// Open verifies a checkpoint note against the chain: signed by the key in
// force for its size (checkpoint.Chain).
func (ch *KeyChain) Open(signed []byte) (*checkpoint.Checkpoint, error) {
	chain := checkpoint.Chain{}
	var origin string
	for i, k := range ch.Keys {
		_, nv, err := audit.LogPublicKey(k)
		if err != nil {
			return nil, err
		}
		origin = nv.Name()
		chain.Keys = append(chain.Keys, nv)
		if i < len(ch.Steps) {
			chain.Rotations = append(chain.Rotations, ch.Steps[i].Index)
		}
	}
	return chain.Open(signed, origin)
}

func (c *Client) Entry(ctx context.Context, index uint64) (*api.Entry, error) {
	var e api.Entry
	if err := c.do(ctx, http.MethodGet, "/v1/entries/"+strconv.FormatUint(index, 10), nil, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// InclusionProof fetches the audit path of index in the tree of size.
func (c *Client) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	var p api.Proof
	path := fmt.Sprintf("/v1/proofs/inclusion?index=%d&size=%d", index, size)
	if err := c.do(ctx, http.MethodGet, path, nil, &p); err != nil {
		return nil, err
	}
	return p.Hashes, nil
}

// ConsistencyProof fetches the proof that tree to extends tree from.
func (c *Client) ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error) {
	var p api.Proof
	path := fmt.Sprintf("/v1/proofs/consistency?from=%d&to=%d", from, to)
	if err := c.do(ctx, http.MethodGet, path, nil, &p); err != nil {
		return nil, err
	}
	return p.Hashes, nil
}

// InclusionBundle is everything an auditor needs to check one entry offline.
type InclusionBundle struct {
	Index      uint64   `json:"index"`
	Leaf       []byte   `json:"leaf"`
	TreeSize   uint64   `json:"treeSize"`
	Proof      [][]byte `json:"proof"`
	Checkpoint string   `json:"checkpoint"`
	LogKey     string   `json:"logKey"`
	// LogKeyRotations, when the log key was rotated since the pinned
	// LogKey, lead from it to the key that signs Checkpoint
	// (audit.FollowLogKeys).
	LogKeyRotations []api.LogKeyStep `json:"logKeyRotations,omitempty"`
}

// Prove fetches an entry, waits (up to ctx) for a checkpoint that covers it,
// fetches its inclusion proof, and verifies the lot against the pinned log
// key: the checkpoint's signature, and the proof against its root. If the
// log key was rotated since, the checkpoint is checked against the key the
// chain of rotations leads to from the pinned one (FollowLogKeys).
func (c *Client) Prove(ctx context.Context, index uint64, logKey string) (*InclusionBundle, error) {
	return c.prove(ctx, index, logKey, nil)
}

// ProveWitnessed is Prove under a witness policy: the proof is to the
// latest checkpoint the log's witnesses cosigned (GET
// /v1/checkpoint/witnessed), which must carry the cosignatures the policy
// asks for (witness.Policy.Check) besides the log's signature.
func (c *Client) ProveWitnessed(ctx context.Context, index uint64, logKey string, policy *witness.Policy) (*InclusionBundle, error) {
	return c.prove(ctx, index, logKey, policy)
}

func (c *Client) prove(ctx context.Context, index uint64, logKey string, policy *witness.Policy) (*InclusionBundle, error) {
	_, nv, err := audit.LogPublicKey(logKey)
	if err != nil {
		return nil, err
	}
	var cpNote []byte
	var size uint64
	var root []byte
	var chain *KeyChain
	var latest uint64 // the size of the latest checkpoint seen
	notYet := func() error {
		what := "checkpoint"
		if policy != nil {
			what = "witnessed checkpoint"
		}
		return fmt.Errorf("no %s covers entry %d yet (latest size %d): %w", what, index, latest, ctx.Err())
	}
	for {
		if cpNote, err = c.latestCheckpoint(ctx, policy); err != nil {
			if ctx.Err() != nil {
				return nil, notYet()
			}
			return nil, err
		}
		var cp *checkpoint.Checkpoint
		if cpNote != nil {
			cp, err = checkpoint.Open(cpNote, nv.Name(), nv)
			if err != nil && chain == nil {
				// Perhaps a rotated key: follow the chain from the pinned one.
				if chain, err = c.FollowLogKeys(ctx, logKey); err != nil {
					return nil, fmt.Errorf("the server's checkpoint does not verify with the pinned log key, nor through the log's key rotations: %w", err)
				}
			}
			if chain != nil {
				cp, err = chain.Open(cpNote)
			}
			if err != nil {
				return nil, fmt.Errorf("the server's checkpoint does not verify with the pinned log key: %w", err)
			}
			if policy != nil {
				if _, err := policy.Check(cpNote); err != nil {
					return nil, fmt.Errorf("the server's witnessed checkpoint of %d entries: %w", cp.Size, err)
				}
			}
			if cp.Size > index {
				size, root = cp.Size, cp.Root[:]
				break
			}
			latest = cp.Size
		}
		// Waiting helps only an entry the log has and the next checkpoint
		// will cover: one it does not have is answered at once.
		var apiErr *APIError
		if _, err := c.Entry(ctx, index); errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
			return nil, fmt.Errorf("the log has no entry %d (its latest checkpoint covers %d entries): %w", index, latest, err)
		}
		select {
		case <-ctx.Done():
			return nil, notYet()
		case <-time.After(100 * time.Millisecond):
		}
	}
	e, err := c.Entry(ctx, index)
	if err != nil {
		return nil, err
	}
	hashes, err := c.InclusionProof(ctx, index, size)
	if err != nil {
		return nil, err
	}
	b := &InclusionBundle{Index: index, Leaf: e.Leaf, TreeSize: size, Proof: hashes, Checkpoint: string(cpNote), LogKey: logKey}
	if chain != nil {
		b.LogKeyRotations = chain.Steps
	}
	if err := VerifyInclusion(b, root); err != nil {
		return nil, err
	}
	return b, nil
}

// VerifyInclusion checks a bundle's proof against a root it trusts.
func VerifyInclusion(b *InclusionBundle, root []byte) error {
	leafHash := rfc6962.DefaultHasher.HashLeaf(b.Leaf)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, b.Index, b.TreeSize, leafHash, b.Proof, root); err != nil {
		return fmt.Errorf("inclusion proof of entry %d in tree %d: %w", b.Index, b.TreeSize, err)
	}
	return nil
}

func (c *Client) text(ctx context.Context, path string) ([]byte, error) {
	var buf bytes.Buffer
	if err := c.do(ctx, http.MethodGet, path, nil, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// do sends a request and decodes a 2xx answer into out (a *bytes.Buffer takes
// the raw body). Refusals become *APIError.
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	return c.doAs(ctx, method, path, "application/json", body, out)
}

// doAs is do with the body's content type.
func (c *Client) doAs(ctx context.Context, method, path, contentType string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	httpc := c.HTTP
	if httpc == nil {
		// Never http.DefaultClient: it has no timeout, and a stuck server
		// would hold the runner forever.
		httpc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		apiErr := &APIError{Status: resp.StatusCode}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			apiErr.RetryAfter = time.Duration(s) * time.Second
		}
		if json.Unmarshal(data, &apiErr.Body) != nil {
			apiErr.Body.Error = strings.TrimSpace(string(data))
		}
		return apiErr
	}
	if buf, ok := out.(*bytes.Buffer); ok {
		buf.Write(data)
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Pack fetches the evidence pack of a change (GET /v1/packs/{change}: its
// records with their inclusion proofs under one signed checkpoint, and the
// trust entries that judge them) and checks it offline against the pinned
// log key. What it returns has been verified, whatever the server is; the
// pack can be kept and checked again later with audit.CheckPack.
func (c *Client) Pack(ctx context.Context, changeID, logKey string) (*audit.Pack, *audit.PackReport, error) {
	var body bytes.Buffer
	if err := c.do(ctx, http.MethodGet, "/v1/packs/"+evidence.EscapeChangeID(changeID), nil, &body); err != nil {
		return nil, nil, err
	}
	p, err := audit.ReadPack(&body)
	if err != nil {
		return nil, nil, err
	}
	rep, err := audit.CheckPack(p, logKey)
	if err != nil {
		return nil, nil, fmt.Errorf("the evidence pack of %s does not verify: %w", changeID, err)
	}
	return p, rep, nil
}

// IsRetryable reports whether a Post failed for a reason that a later retry
// of the same envelope can cure (overload, shutdown, storage trouble).
func IsRetryable(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Status == http.StatusServiceUnavailable || apiErr.Status == http.StatusTooManyRequests
	}
	return false
}
