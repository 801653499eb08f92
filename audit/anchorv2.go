package audit

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	pbs "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	rekortilespb "github.com/sigstore/rekor-tiles/v2/pkg/generated/protobuf"
	rekornote "github.com/sigstore/rekor-tiles/v2/pkg/note"
	"github.com/sigstore/rekor-tiles/v2/pkg/types/hashedrekord"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/signature"
	flog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/encoding/protojson"

	ckpt "evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
)

// RekorV2Key pins a Rekor v2 log: the origin of its checkpoints (the
// host name it runs as) and the public key that signs them. Rekor v2's log
// ID hashes both for an ed25519 key, and its checkpoints name the origin,
// so a key alone does not say which log it vouches for. A RekorV2Key goes
// among the Rekor keys wherever a Rekor v1 key (a bare crypto.PublicKey)
// does: CheckOptions.RekorKeys, VerifyAnchor's rekorKeys,
// anchor.Config.RekorKeys.
type RekorV2Key struct {
	Origin    string
	PublicKey crypto.PublicKey
}

// LogID is Rekor v2's log ID for the key: the full-length key ID of the
// C2SP signed note (SHA-256 over origin, signature type and key for
// ed25519; SHA-256 of the PKIX DER for ECDSA, as rekor-tiles computes it).
func (k RekorV2Key) LogID() ([]byte, error) {
	_, id, err := rekornote.KeyHash(k.Origin, k.PublicKey)
	return id, err
}

// noteVerifier verifies Rekor v2's checkpoints; it refuses an origin that
// cannot name a note signer (empty, with spaces or '+') and a key type
// rekor-tiles does not sign with.
func (k RekorV2Key) noteVerifier() (note.Verifier, error) {
	v, err := signature.LoadDefaultVerifier(k.PublicKey)
	if err != nil {
		return nil, err
	}
	return rekornote.NewNoteVerifier(k.Origin, v)
}

// splitRekorKeys separates pinned Rekor v1 keys from Rekor v2 ones.
func splitRekorKeys(keys []crypto.PublicKey) (v1 []crypto.PublicKey, v2 []RekorV2Key) {
	for _, k := range keys {
		if k2, ok := k.(RekorV2Key); ok {
			v2 = append(v2, k2)
		} else {
			v1 = append(v1, k)
		}
	}
	return v1, v2
}

// ParseRekorKeys reads pinned Rekor public keys from PEM: every PUBLIC KEY
// block is a key. A block with an Origin header ("Origin: log2025-1.rekor.example")
// pins a Rekor v2 log and becomes a RekorV2Key; one without is a Rekor v1
// key. Other blocks and text around them are skipped.
func ParseRekorKeys(b []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return keys, nil
		}
		if block.Type != "PUBLIC KEY" {
			continue
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		origin, ok := block.Headers["Origin"]
		if !ok {
			keys = append(keys, k)
			continue
		}
		k2 := RekorV2Key{Origin: origin, PublicKey: k}
		if _, err := k2.noteVerifier(); err != nil {
			return nil, fmt.Errorf("the Rekor v2 key for %q: %w", origin, err)
		}
		keys = append(keys, k2)
	}
}

// parseRekorV2Entry decodes a Rekor v2 anchor's TransparencyLogEntry and
// parses the entry it carries with sigstore-go.
func parseRekorV2Entry(raw []byte) (*pbs.TransparencyLogEntry, *tlog.Entry, error) {
	var tle pbs.TransparencyLogEntry
	if err := protojson.Unmarshal(raw, &tle); err != nil {
		return nil, nil, fmt.Errorf("transparencyLogEntry is not a TransparencyLogEntry: %v", err)
	}
	e, err := tlog.ParseTransparencyLogEntry(&tle)
	if err != nil {
		return nil, nil, fmt.Errorf("transparencyLogEntry: %v", err)
	}
	if !e.IsRekorV2() {
		return nil, nil, errors.New("transparencyLogEntry is not a Rekor v2 entry")
	}
	if err := tlog.ValidateEntry(e); err != nil {
		return nil, nil, fmt.Errorf("transparencyLogEntry: %v", err)
	}
	// sigstore-go takes kindVersion as the entry's kind without comparing
	// it with the body's; a bundle reader rebuilding the body from it
	// must find the entry that was logged.
	if kv := tle.GetKindVersion(); kv.GetKind() != "hashedrekord" || kv.GetVersion() != "0.0.2" {
		return nil, nil, fmt.Errorf("transparencyLogEntry's kindVersion is %s %s, not the body's hashedrekord 0.0.2", kv.GetKind(), kv.GetVersion())
	}
	if tle.InclusionProof == nil {
		return nil, nil, errors.New("transparencyLogEntry has no inclusion proof")
	}
	return &tle, e, nil
}

// checkAnchorEntryV2 checks a Rekor v2 anchor's entry is the log's
// signature over the anchored checkpoint. The entry Rekor hashed into its
// tree must be exactly the hashedrekord this checkpoint and key make: the
// leaf is rebuilt from the expected digest, the log key and the entry's
// signature, as sigstore-go rebuilds it for a Rekor v2 bundle, rather than
// trusting whatever else the stored body might also parse as.
func checkAnchorEntryV2(a *evidence.Anchor, origin string, logKey ed25519.PublicKey) error {
	tle, e, err := parseRekorV2Entry(a.TransparencyLogEntry)
	if err != nil {
		return err
	}
	if tle.LogIndex != a.LogIndex {
		return fmt.Errorf("logIndex %d, but the Rekor v2 entry's is %d", a.LogIndex, tle.LogIndex)
	}
	root, err := hex.DecodeString(a.RootHash)
	if err != nil || len(root) != sha256.Size {
		return errors.New("rootHash is not a hex SHA-256")
	}
	digest := sha512.Sum512(ckpt.Text(origin, a.CheckpointSize, [32]byte(root)))
	got, alg, ok := e.GetHashedRekordDigest()
	if !ok || alg != protocommon.HashAlgorithm_SHA2_512.String() || !bytes.Equal(got, digest[:]) {
		return fmt.Errorf("the Rekor entry is not over the checkpoint of %d entries with root %s of log %q", a.CheckpointSize, a.RootHash, origin)
	}
	if k, ok := e.PublicKey().(ed25519.PublicKey); !ok || !k.Equal(logKey) {
		return errors.New("the Rekor entry is signed with a key that is not the log's")
	}
	sig := e.Signature()
	if err := ed25519.VerifyWithOptions(logKey, digest[:], sig, &ed25519.Options{Hash: crypto.SHA512}); err != nil {
		return fmt.Errorf("the log's signature in the Rekor entry does not verify: %v", err)
	}
	der, err := x509.MarshalPKIXPublicKey(logKey)
	if err != nil {
		return err
	}
	want, err := hashedrekord.ToEntryHash(digest[:], &rekortilespb.Signature{
		Content: sig,
		Verifier: &rekortilespb.Verifier{
			Verifier:   &rekortilespb.Verifier_PublicKey{PublicKey: &rekortilespb.PublicKey{RawBytes: der}},
			KeyDetails: protocommon.PublicKeyDetails_PKIX_ED25519_PH,
		},
	})
	if err != nil {
		return err
	}
	if !bytes.Equal(rfc6962.DefaultHasher.HashLeaf(tle.CanonicalizedBody), want) {
		return errors.New("the Rekor entry's canonicalizedBody is not the hashedrekord (Ed25519ph, log key) of this checkpoint")
	}
	return nil
}

// checkRekorProofV2 checks, with the pinned Rekor v2 key the entry's log ID
// names, Rekor's signed checkpoint and the inclusion proof up to it
// (sigstore-go), and that the proof's own tree size, root and index are
// that checkpoint's and the entry's. checkAnchorEntryV2 has established
// that the body is the expected leaf.
func checkRekorProofV2(a *evidence.Anchor, keys []RekorV2Key) error {
	if len(keys) == 0 {
		return errors.New("no pinned Rekor v2 key to check it with (a PEM key with an Origin header)")
	}
	tle, e, err := parseRekorV2Entry(a.TransparencyLogEntry)
	if err != nil {
		return err
	}
	var key *RekorV2Key
	for i, k := range keys {
		if id, err := k.LogID(); err == nil && bytes.Equal(id, tle.GetLogId().GetKeyId()) {
			key = &keys[i]
			break
		}
	}
	if key == nil {
		return fmt.Errorf("logId %x is not the ID of a pinned Rekor v2 key", tle.GetLogId().GetKeyId())
	}
	v, err := signature.LoadDefaultVerifier(key.PublicKey)
	if err != nil {
		return fmt.Errorf("the Rekor v2 key: %v", err)
	}
	// sigstore-go turns the key and origin into the note verifier.
	if err := tlog.VerifyCheckpointAndInclusion(e, v, key.Origin); err != nil {
		return fmt.Errorf("the Rekor v2 inclusion proof or checkpoint: %v", err)
	}
	ip := tle.InclusionProof
	text, _, _ := strings.Cut(ip.GetCheckpoint().GetEnvelope(), "\n\n")
	var cp flog.Checkpoint
	if _, err := cp.Unmarshal([]byte(text + "\n")); err != nil {
		return fmt.Errorf("the Rekor v2 checkpoint: %v", err)
	}
	if ip.LogIndex != tle.LogIndex || ip.TreeSize < 0 || uint64(ip.TreeSize) != cp.Size || !bytes.Equal(ip.RootHash, cp.Hash) {
		return fmt.Errorf("the Rekor v2 inclusion proof names index %d in a tree of %d, not the entry's index %d and its checkpoint's tree of %d with root %x",
			ip.LogIndex, ip.TreeSize, tle.LogIndex, cp.Size, cp.Hash)
	}
	return nil
}
