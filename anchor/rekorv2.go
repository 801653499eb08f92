package anchor

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"
	"github.com/hashicorp/go-retryablehttp"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	pbs "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	rekorclient "github.com/sigstore/rekor-tiles/v2/pkg/client"
	"github.com/sigstore/rekor-tiles/v2/pkg/client/read"
	pb "github.com/sigstore/rekor-tiles/v2/pkg/generated/protobuf"
	"github.com/sigstore/sigstore/pkg/signature"
	tclient "github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/encoding/protojson"

	"evident.dev/evident/audit"
	"evident.dev/evident/evidence"
)

const (
	// rekorV2Timeout bounds one write: Rekor v2 answers only once a
	// checkpoint covers the entry (its client guide asks for at least 20s).
	rekorV2Timeout = time.Minute
	maxAnswer      = 1 << 20
	userAgent      = "evident-anchor"
)

// rekorV2 is Rekor v2's API: writes to <url>/api/v2/log/entries, reads of
// the checkpoint and tiles under <url>.
//
// The entry is a hashedrekord 0.0.2 (the only type Rekor v2 takes; it
// dropped DSSE) with key details PKIX_ED25519_PH: Rekor v2 checks an ed25519
// key's hashedrekord signature as Ed25519ph over a SHA-512 digest, so the
// log key signs the same way as for Rekor v1, and the entry commits to the
// checkpoint's SHA-512 as the anchor's subject does.
type rekorV2 struct {
	url    string
	http   *http.Client
	keys   []audit.RekorV2Key
	logKey ed25519.PrivateKey
	pubDER []byte
}

func newRekorV2(cfg Config, logPub ed25519.PublicKey) (*rekorV2, error) {
	der, err := x509.MarshalPKIXPublicKey(logPub)
	if err != nil {
		return nil, err
	}
	r := &rekorV2{url: strings.TrimSuffix(cfg.Rekor, "/"), logKey: cfg.LogKey, pubDER: der}
	for _, k := range cfg.RekorKeys {
		if k2, ok := k.(audit.RekorV2Key); ok {
			r.keys = append(r.keys, k2)
		}
	}
	// A resubmission is harmless (Rekor v2 answers a duplicate with its
	// index), so a POST is retried like a read.
	// The retrying client is the one Rekor v1's client uses.
	retry := retryablehttp.NewClient()
	retry.RetryMax = int(cfg.Retries)
	retry.Logger = nil
	retry.HTTPClient = &http.Client{Transport: rekorclient.CreateRoundTripper(nil, userAgent), Timeout: rekorV2Timeout}
	r.http = retry.StandardClient()
	return r, nil
}

func (r *rekorV2) enter(ctx context.Context, text []byte, size uint64, root [32]byte) (evidence.Anchor, error) {
	digest := sha512.Sum512(text)
	sig, err := r.logKey.Sign(rand.Reader, digest[:], &ed25519.Options{Hash: crypto.SHA512})
	if err != nil {
		return evidence.Anchor{}, fmt.Errorf("anchor: sign checkpoint: %w", err)
	}
	req := &pb.HashedRekordRequestV002{Digest: digest[:], Signature: &pb.Signature{
		Content: sig,
		Verifier: &pb.Verifier{
			Verifier:   &pb.Verifier_PublicKey{PublicKey: &pb.PublicKey{RawBytes: r.pubDER}},
			KeyDetails: protocommon.PublicKeyDetails_PKIX_ED25519_PH,
		},
	}}
	tle, err := r.add(ctx, req)
	var dup duplicateError
	if errors.As(err, &dup) {
		// Ed25519 signatures are deterministic, so the same checkpoint
		// makes the same entry, and Rekor v2 names the index it holds it
		// at instead of answering with it. The answer is rebuilt from
		// the tiles; audit.VerifyAnchor then checks it like any other.
		tle, err = r.existing(ctx, dup.index, req)
		if err != nil {
			return evidence.Anchor{}, fmt.Errorf("anchor: Rekor v2 holds the entry already at index %d, but: %w", dup.index, err)
		}
	}
	if err != nil {
		return evidence.Anchor{}, err
	}
	raw, err := marshalEntry(tle)
	if err != nil {
		return evidence.Anchor{}, err
	}
	return evidence.Anchor{
		Version:              2,
		CheckpointSize:       size,
		RootHash:             hex.EncodeToString(root[:]),
		LogIndex:             tle.GetLogIndex(),
		TransparencyLogEntry: raw,
	}, nil
}

// duplicateError is Rekor v2's answer to an entry it holds already.
type duplicateError struct{ index uint64 }

func (e duplicateError) Error() string {
	return fmt.Sprintf("Rekor v2 holds an equal entry at index %d", e.index)
}

// add posts the entry. rekor-tiles' own write client is not used: it does
// not hand out the X-Log-Index header of a duplicate's 409 answer.
func (r *rekorV2) add(ctx context.Context, hr *pb.HashedRekordRequestV002) (*pbs.TransparencyLogEntry, error) {
	body, err := protojson.Marshal(&pb.CreateEntryRequest{Spec: &pb.CreateEntryRequest_HashedRekordRequestV002{HashedRekordRequestV002: hr}})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url+"/api/v2/log/entries", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("anchor: Rekor v2 %s: %w", r.url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("anchor: submit to Rekor v2 %s: %w", r.url, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("anchor: Rekor v2's answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusCreated:
	case http.StatusConflict:
		idx, err := strconv.ParseUint(resp.Header.Get("X-Log-Index"), 10, 63)
		if err != nil {
			return nil, fmt.Errorf("anchor: Rekor v2 answered 409 without a valid X-Log-Index: %s", firstLine(answer))
		}
		return nil, duplicateError{index: idx}
	default:
		return nil, fmt.Errorf("anchor: submit to Rekor v2 %s: HTTP %d: %s", r.url, resp.StatusCode, firstLine(answer))
	}
	var tle pbs.TransparencyLogEntry
	// A newer Rekor may add fields; the entry and its proof are what
	// the anchor keeps.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(answer, &tle); err != nil {
		return nil, fmt.Errorf("anchor: Rekor v2's answer is not a TransparencyLogEntry: %w", err)
	}
	return &tle, nil
}

// existing rebuilds Rekor v2's answer for the entry it holds at index: the
// body is the canonical JSON Rekor made of the same request, the proof
// comes from the tiles up to a checkpoint, signed by a pinned key, that
// covers the index.
func (r *rekorV2) existing(ctx context.Context, index uint64, hr *pb.HashedRekordRequestV002) (*pbs.TransparencyLogEntry, error) {
	body, err := canonicalEntry(hr)
	if err != nil {
		return nil, err
	}
	if len(r.keys) == 0 {
		return nil, errors.New("no pinned Rekor v2 key to read its checkpoint with")
	}
	// A Rekor that names an index it never covers must not hold the
	// anchoring loop.
	ctx, cancel := context.WithTimeout(ctx, rekorV2Timeout)
	defer cancel()
	var errs []error
	for _, k := range r.keys {
		tle, err := r.existingUnder(ctx, k, index, body)
		if err == nil {
			return tle, nil
		}
		errs = append(errs, fmt.Errorf("with the key of %s: %w", k.Origin, err))
	}
	return nil, errors.Join(errs...)
}

func (r *rekorV2) existingUnder(ctx context.Context, k audit.RekorV2Key, index uint64, body []byte) (*pbs.TransparencyLogEntry, error) {
	v, err := signature.LoadDefaultVerifier(k.PublicKey)
	if err != nil {
		return nil, err
	}
	logID, err := k.LogID()
	if err != nil {
		return nil, err
	}
	rd, err := read.NewReader(r.url, k.Origin, v, rekorclient.WithUserAgent(userAgent))
	if err != nil {
		return nil, err
	}
	// Rekor answers a duplicate as soon as it sees one, which may be
	// before the first submission's checkpoint is out.
	var size uint64
	var hash []byte
	var n *note.Note
	for {
		cp, cpNote, err := rd.ReadCheckpoint(ctx)
		if err != nil {
			return nil, err
		}
		if cp.Size > index {
			size, hash, n = cp.Size, cp.Hash, cpNote
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no checkpoint covers index %d (latest: %d entries): %w", index, cp.Size, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	pbuilder, err := tclient.NewProofBuilder(ctx, size, rd.ReadTile)
	if err != nil {
		return nil, err
	}
	hashes, err := pbuilder.InclusionProof(ctx, index)
	if err != nil {
		return nil, err
	}
	return &pbs.TransparencyLogEntry{
		LogIndex:    int64(index),
		LogId:       &protocommon.LogId{KeyId: logID},
		KindVersion: &pbs.KindVersion{Kind: "hashedrekord", Version: "0.0.2"},
		InclusionProof: &pbs.InclusionProof{
			LogIndex:   int64(index),
			RootHash:   hash,
			TreeSize:   int64(size),
			Hashes:     hashes,
			Checkpoint: &pbs.Checkpoint{Envelope: envelope(n)},
		},
		CanonicalizedBody: body,
	}, nil
}

// canonicalEntry is the entry Rekor v2 logs for the request: the
// hashedrekord 0.0.2 in protobuf JSON, JSON-canonicalized (RFC 8785).
func canonicalEntry(hr *pb.HashedRekordRequestV002) ([]byte, error) {
	b, err := protojson.Marshal(&pb.Entry{
		Kind:       "hashedrekord",
		ApiVersion: "0.0.2",
		Spec: &pb.Spec{Spec: &pb.Spec_HashedRekordV002{HashedRekordV002: &pb.HashedRekordLogEntryV002{
			Signature: hr.Signature,
			Data:      &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_512, Digest: hr.Digest},
		}}},
	})
	if err != nil {
		return nil, err
	}
	return jsoncanonicalizer.Transform(b)
}

// envelope writes a checkpoint note back with the signatures that verified.
func envelope(n *note.Note) string {
	var b strings.Builder
	b.WriteString(n.Text)
	b.WriteString("\n")
	for _, s := range n.Sigs {
		fmt.Fprintf(&b, "\u2014 %s %s\n", s.Name, s.Base64)
	}
	return b.String()
}

// marshalEntry is the entry's protobuf JSON, compacted: protojson varies
// its spacing from run to run on purpose, and a record's bytes should not.
func marshalEntry(tle *pbs.TransparencyLogEntry) (json.RawMessage, error) {
	b, err := protojson.Marshal(tle)
	if err != nil {
		return nil, fmt.Errorf("anchor: encode Rekor v2's entry: %w", err)
	}
	var c bytes.Buffer
	if err := json.Compact(&c, b); err != nil {
		return nil, fmt.Errorf("anchor: encode Rekor v2's entry: %w", err)
	}
	return c.Bytes(), nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
