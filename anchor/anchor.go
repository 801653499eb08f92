// Package anchor enters the log's signed checkpoints in an independent
// transparency log, Rekor (https://docs.sigstore.dev/logging/overview/), and
// records Rekor's answer in the log as a checkpoint.anchored entry: after
// that, rewriting the log's history would also need rewriting Rekor's.
//
// A checkpoint is submitted as a hashedrekord entry: the SHA-512 of the
// checkpoint's note text (origin, size, root hash), signed with the log's
// ed25519 key as Ed25519ph, the form Rekor's hashedrekord accepts for
// ed25519 keys. Rekor v1 (hashedrekord 0.0.1) and Rekor v2, rekor-tiles
// (hashedrekord 0.0.2), take the same submission; only the request and
// the answer differ. Rekor's inclusion proof, and Rekor v1's signed entry
// timestamp, are checked (audit.VerifyAnchor) before the anchor is
// recorded, through the same path as every other record the log writes
// itself.
package anchor

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strconv"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/go-openapi/swag/conv"
	rekorclient "github.com/sigstore/rekor/pkg/client"
	genclient "github.com/sigstore/rekor/pkg/generated/client"
	"github.com/sigstore/rekor/pkg/generated/client/entries"
	"github.com/sigstore/rekor/pkg/generated/models"
	"golang.org/x/mod/sumdb/note"

	"evident.dev/evident/api"
	"evident.dev/evident/audit"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
)

// Log is the log whose checkpoints are anchored.
type Log interface {
	// Checkpoint returns the latest signed checkpoint note; an error
	// (ledger.ErrEmpty) when there is none yet.
	Checkpoint() ([]byte, error)
	Origin() string
	// VerifierKey is the note verifier key of the log's checkpoints.
	VerifierKey() string
}

// Recorder appends a record signed with the log key and returns once it is
// durable (ingest.Recorder).
type Recorder interface {
	Record(ctx context.Context, subjects []evidence.Subject, t evidence.Transition) (api.Receipt, error)
}

// Config is what an Anchorer needs.
type Config struct {
	// Rekor is Rekor's base URL, e.g. https://rekor.sigstore.dev. For
	// Rekor v2 it serves both the write API (/api/v2/log/entries) and the
	// tiles (/checkpoint, /tile/), as Sigstore's instances do.
	Rekor string
	// RekorVersion is 2 for Rekor v2 (rekor-tiles); 0 or 1 for Rekor v1.
	RekorVersion int
	// RekorKeys are the Rekor public keys an answer must be signed with,
	// pinned out of band (for Rekor v1, GET /api/v1/log/publicKey,
	// checked once). A Rekor v2 key is an audit.RekorV2Key, with the
	// origin of Rekor's checkpoints.
	RekorKeys []crypto.PublicKey
	Log       Log
	// LogKey is the log's private key, the one its checkpoints are signed with.
	LogKey   ed25519.PrivateKey
	Recorder Recorder
	Logger   *slog.Logger
	// Clock gives the anchor record's occurredAt; nil means time.Now.
	Clock func() time.Time
	// Retries of a failed Rekor request (5xx but 501, 429 and connection
	// errors, with back-off: go-retryablehttp, as under Rekor v1's own
	// client); default 3.
	Retries uint
}

// rekorLog is one version of Rekor's API: enter submits the checkpoint
// text and returns the anchor block of Rekor's answer (not yet verified).
type rekorLog interface {
	enter(ctx context.Context, text []byte, size uint64, root [32]byte) (evidence.Anchor, error)
}

// Anchorer anchors checkpoints. Anchor and Run must not be called
// concurrently with each other.
type Anchorer struct {
	cfg      Config
	rekor    rekorLog
	verifier note.Verifier
	logPub   ed25519.PublicKey

	// The last anchor this Anchorer recorded, to skip a checkpoint that
	// adds nothing but that anchor record.
	lastSize   uint64
	lastRecord uint64
	anchored   bool
}

// Result is one recorded anchor.
type Result struct {
	Anchor  evidence.Anchor
	Receipt api.Receipt
}

// New checks the configuration and builds a Rekor client.
func New(cfg Config) (*Anchorer, error) {
	var v1Keys, v2Keys int
	for _, k := range cfg.RekorKeys {
		if _, ok := k.(audit.RekorV2Key); ok {
			v2Keys++
		} else {
			v1Keys++
		}
	}
	switch {
	case cfg.Rekor == "":
		return nil, errors.New("anchor: the Rekor URL is required")
	case cfg.RekorVersion != 0 && cfg.RekorVersion != 1 && cfg.RekorVersion != 2:
		return nil, fmt.Errorf("anchor: Rekor version %d is neither 1 nor 2", cfg.RekorVersion)
	case cfg.RekorVersion == 2 && v2Keys == 0:
		return nil, errors.New("anchor: Rekor v2's public key is required, with its origin (a PEM PUBLIC KEY with an Origin header)")
	case cfg.RekorVersion != 2 && v1Keys == 0:
		return nil, errors.New("anchor: Rekor's public key is required (pin it: GET <rekor>/api/v1/log/publicKey)")
	case cfg.Log == nil || cfg.Recorder == nil || cfg.LogKey == nil:
		return nil, errors.New("anchor: Log, LogKey and Recorder are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Retries == 0 {
		cfg.Retries = 3
	}
	v, err := note.NewVerifier(cfg.Log.VerifierKey())
	if err != nil {
		return nil, fmt.Errorf("anchor: log key: %w", err)
	}
	pub := cfg.LogKey.Public().(ed25519.PublicKey)
	logPub, _, err := audit.LogPublicKey(cfg.Log.VerifierKey())
	if err != nil {
		return nil, fmt.Errorf("anchor: %w", err)
	}
	if !logPub.Equal(pub) {
		return nil, errors.New("anchor: the log key does not sign the log's checkpoints")
	}
	var rl rekorLog
	if cfg.RekorVersion == 2 {
		rl, err = newRekorV2(cfg, pub)
	} else {
		rl, err = newRekorV1(cfg, pub)
	}
	if err != nil {
		return nil, fmt.Errorf("anchor: Rekor client for %s: %w", cfg.Rekor, err)
	}
	return &Anchorer{cfg: cfg, rekor: rl, verifier: v, logPub: pub}, nil
}

// Anchor submits the latest checkpoint to Rekor, verifies Rekor's answer
// and records it. Submitting a checkpoint Rekor already holds (after a
// restart, say) fetches and records Rekor's existing entry.
func (a *Anchorer) Anchor(ctx context.Context) (*Result, error) {
	signed, err := a.cfg.Log.Checkpoint()
	if err != nil {
		return nil, fmt.Errorf("anchor: latest checkpoint: %w", err)
	}
	size, root, text, err := a.openCheckpoint(signed)
	if err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, errors.New("anchor: the log is empty")
	}
	anc, err := a.rekor.enter(ctx, text, size, root)
	if err != nil {
		return nil, err
	}
	anc.Rekor = a.cfg.Rekor
	if err := audit.VerifyAnchor(&anc, a.cfg.Log.Origin(), a.logPub, a.cfg.RekorKeys); err != nil {
		return nil, fmt.Errorf("anchor: Rekor's answer for checkpoint %d: %w", size, err)
	}
	sum := sha512.Sum512(text)
	rootHex := hex.EncodeToString(root[:])
	receipt, err := a.cfg.Recorder.Record(ctx, []evidence.Subject{{
		Name:   "checkpoint/" + strconv.FormatUint(size, 10),
		Digest: map[string]string{"sha512": hex.EncodeToString(sum[:])},
	}}, evidence.Transition{
		Kind:       evidence.KindCheckpointAnchored,
		ChangeID:   "checkpoint-" + strconv.FormatUint(size, 10),
		OccurredAt: a.cfg.Clock().UTC(),
		Actor:      "evident-anchor",
		Anchor:     &anc,
	})
	if err != nil {
		return nil, fmt.Errorf("anchor: record the anchor of checkpoint %d: %w", size, err)
	}
	a.lastSize, a.lastRecord, a.anchored = size, receipt.Index, true
	a.cfg.Logger.Info("anchored checkpoint in Rekor", "size", size, "root", rootHex,
		"rekorVersion", max(anc.Version, 1), "rekorIndex", anc.LogIndex, "entry", receipt.Index)
	return &Result{Anchor: anc, Receipt: receipt}, nil
}

// due reports whether the latest checkpoint needs anchoring: it does unless
// it is the one anchored last, or adds only that anchor's own record.
func (a *Anchorer) due() (bool, error) {
	signed, err := a.cfg.Log.Checkpoint()
	if err != nil {
		return false, nil // no checkpoint yet
	}
	size, _, _, err := a.openCheckpoint(signed)
	if err != nil {
		return false, err
	}
	if size == 0 {
		return false, nil
	}
	if !a.anchored {
		return true, nil
	}
	idle := size == a.lastSize || a.lastSize == a.lastRecord && size == a.lastRecord+1
	return !idle, nil
}

// Run anchors the latest checkpoint every interval while the log grows,
// until ctx ends. A failed attempt is logged and retried at the next tick:
// Rekor being away must not stop the log.
func (a *Anchorer) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("anchor: interval must be positive, got %v", interval)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		due, err := a.due()
		if err != nil {
			a.cfg.Logger.Error("anchor: read checkpoint", "err", err)
		}
		if due {
			if _, err := a.Anchor(ctx); err != nil && ctx.Err() == nil {
				a.cfg.Logger.Error("anchor failed; retrying at the next interval", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// openCheckpoint verifies a signed checkpoint note and returns its size,
// root and note text (checkpoint.Text), the bytes an anchor commits to, so
// that an auditor can recompute what was signed.
func (a *Anchorer) openCheckpoint(signed []byte) (uint64, [32]byte, []byte, error) {
	cp, err := checkpoint.Open(signed, a.cfg.Log.Origin(), a.verifier)
	if err != nil {
		return 0, [32]byte{}, nil, fmt.Errorf("anchor: %w", err)
	}
	return cp.Size, cp.Root, checkpoint.Text(cp.Origin, cp.Size, cp.Root), nil
}

// rekorV1 is Rekor v1's API, through Rekor's generated client.
type rekorV1 struct {
	url    string
	client *genclient.Rekor
	logKey ed25519.PrivateKey
	logPub ed25519.PublicKey
}

func newRekorV1(cfg Config, logPub ed25519.PublicKey) (*rekorV1, error) {
	rc, err := rekorclient.GetRekorClient(cfg.Rekor, rekorclient.WithRetryCount(cfg.Retries),
		rekorclient.WithUserAgent("evident-anchor"))
	if err != nil {
		return nil, err
	}
	return &rekorV1{url: cfg.Rekor, client: rc, logKey: cfg.LogKey, logPub: logPub}, nil
}

func (r *rekorV1) enter(ctx context.Context, text []byte, size uint64, root [32]byte) (evidence.Anchor, error) {
	entry, err := r.submit(ctx, text)
	if err != nil {
		return evidence.Anchor{}, err
	}
	return anchorOf(entry, size, root)
}

// submit enters a hashedrekord over text in Rekor and returns Rekor's entry.
func (r *rekorV1) submit(ctx context.Context, text []byte) (*models.LogEntryAnon, error) {
	digest := sha512.Sum512(text)
	sig, err := r.logKey.Sign(rand.Reader, digest[:], &ed25519.Options{Hash: crypto.SHA512})
	if err != nil {
		return nil, fmt.Errorf("anchor: sign checkpoint: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(r.logPub)
	if err != nil {
		return nil, fmt.Errorf("anchor: log public key: %w", err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	proposed := &models.Hashedrekord{
		APIVersion: conv.Pointer("0.0.1"),
		Spec: models.HashedrekordV001Schema{
			Data: &models.HashedrekordV001SchemaData{Hash: &models.HashedrekordV001SchemaDataHash{
				Algorithm: conv.Pointer(models.HashedrekordV001SchemaDataHashAlgorithmSha512),
				Value:     conv.Pointer(hex.EncodeToString(digest[:])),
			}},
			Signature: &models.HashedrekordV001SchemaSignature{
				Content:   strfmt.Base64(sig),
				PublicKey: &models.HashedrekordV001SchemaSignaturePublicKey{Content: strfmt.Base64(pubPEM)},
			},
		},
	}
	params := entries.NewCreateLogEntryParams().WithProposedEntry(proposed)
	created, err := r.client.Entries.CreateLogEntryContext(ctx, params)
	var conflict *entries.CreateLogEntryConflict
	switch {
	case errors.As(err, &conflict):
		// Ed25519 signatures are deterministic: Rekor already holds this
		// very entry. Fetch it, with its proof, by the UUID it names.
		uuid := path.Base(conflict.Location.String())
		got, err := r.client.Entries.GetLogEntryByUUIDContext(ctx, entries.NewGetLogEntryByUUIDParams().WithEntryUUID(uuid))
		if err != nil {
			return nil, fmt.Errorf("anchor: Rekor holds the entry already, but fetching %s: %w", uuid, err)
		}
		return onlyEntry(got.Payload)
	case err != nil:
		return nil, fmt.Errorf("anchor: submit to Rekor %s: %w", r.url, err)
	}
	return onlyEntry(created.Payload)
}

func onlyEntry(le models.LogEntry) (*models.LogEntryAnon, error) {
	if len(le) != 1 {
		return nil, fmt.Errorf("anchor: Rekor answered with %d entries, want 1", len(le))
	}
	var only models.LogEntryAnon
	for _, e := range le {
		only = e
	}
	return &only, nil
}

// anchorOf copies Rekor's answer into an anchor block.
func anchorOf(e *models.LogEntryAnon, size uint64, root [32]byte) (evidence.Anchor, error) {
	body, ok := e.Body.(string)
	switch {
	case !ok:
		return evidence.Anchor{}, fmt.Errorf("anchor: Rekor's entry body is a %T, not a base64 string", e.Body)
	case e.IntegratedTime == nil || e.LogID == nil || e.LogIndex == nil:
		return evidence.Anchor{}, errors.New("anchor: Rekor's entry lacks integratedTime, logID or logIndex")
	case e.Verification == nil || e.Verification.InclusionProof == nil || len(e.Verification.SignedEntryTimestamp) == 0:
		return evidence.Anchor{}, errors.New("anchor: Rekor's entry has no inclusion proof or signed entry timestamp")
	}
	ip := e.Verification.InclusionProof
	if ip.Checkpoint == nil || ip.LogIndex == nil || ip.RootHash == nil || ip.TreeSize == nil {
		return evidence.Anchor{}, errors.New("anchor: Rekor's inclusion proof is incomplete")
	}
	return evidence.Anchor{
		CheckpointSize:       size,
		RootHash:             hex.EncodeToString(root[:]),
		LogID:                *e.LogID,
		LogIndex:             *e.LogIndex,
		IntegratedTime:       *e.IntegratedTime,
		Body:                 body,
		SignedEntryTimestamp: base64.StdEncoding.EncodeToString(e.Verification.SignedEntryTimestamp),
		InclusionProof: &evidence.RekorInclusionProof{
			LogIndex:   *ip.LogIndex,
			TreeSize:   *ip.TreeSize,
			RootHash:   *ip.RootHash,
			Hashes:     ip.Hashes,
			Checkpoint: *ip.Checkpoint,
		},
	}, nil
}
