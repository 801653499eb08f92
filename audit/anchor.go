package audit

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/go-openapi/strfmt"
	"github.com/sigstore/rekor/pkg/generated/models"
	rekorverify "github.com/sigstore/rekor/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"

	ckpt "evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
)

// ErrBadAnchor is wrapped by every error about a checkpoint.anchored record
// whose Rekor entry, proof or signatures do not hold.
var ErrBadAnchor = errors.New("bad anchor")

// RekorLogID is Rekor's log ID for its public key: hex SHA-256 of the PKIX DER.
func RekorLogID(pub crypto.PublicKey) (string, error) {
	return verifier.KeyID(pub)
}

// hashedRekordBody is the part of a hashedrekord v0.0.1 entry an anchor
// check reads; Content fields are base64 in JSON.
type hashedRekordBody struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Spec       struct {
		Data struct {
			Hash struct {
				Algorithm string `json:"algorithm"`
				Value     string `json:"value"`
			} `json:"hash"`
		} `json:"data"`
		Signature struct {
			Content   []byte `json:"content"`
			PublicKey struct {
				Content []byte `json:"content"`
			} `json:"publicKey"`
		} `json:"signature"`
	} `json:"spec"`
}

// VerifyAnchor checks an anchor on its own: that its Rekor entry is a
// hashedrekord over the SHA-512 of the checkpoint text of origin at the
// anchored size and root, signed with the log's key (Ed25519ph), and that a
// Rekor whose public key is among rekorKeys included it (inclusion proof up
// to Rekor's signed checkpoint) and, for Rekor v1, signed its entry
// timestamp. A Rekor v2 anchor (Version 2) is checked only against the
// RekorV2Key values among rekorKeys, a Rekor v1 anchor only against the
// others. Whether the log ever had that root is for the caller to check
// (CheckLog does). It is pure computation.
func VerifyAnchor(a *evidence.Anchor, origin string, logKey ed25519.PublicKey, rekorKeys []crypto.PublicKey) error {
	if err := checkAnchorEntry(a, origin, logKey); err != nil {
		return fmt.Errorf("%w: %v", ErrBadAnchor, err)
	}
	if err := checkRekorProof(a, rekorKeys); err != nil {
		return fmt.Errorf("%w: %v", ErrBadAnchor, err)
	}
	return nil
}

// checkAnchorEntry checks the Rekor entry is the log's signature over the
// anchored checkpoint.
func checkAnchorEntry(a *evidence.Anchor, origin string, logKey ed25519.PublicKey) error {
	switch a.Version {
	case 0, 1:
	case 2:
		return checkAnchorEntryV2(a, origin, logKey)
	default:
		return fmt.Errorf("version %d: not an anchor in Rekor v1 or v2", a.Version)
	}
	raw, err := base64.StdEncoding.DecodeString(a.Body)
	if err != nil {
		return fmt.Errorf("body is not base64: %v", err)
	}
	var body hashedRekordBody
	if err := json.Unmarshal(raw, &body); err != nil {
		return fmt.Errorf("body is not a Rekor entry: %v", err)
	}
	if body.Kind != "hashedrekord" || body.APIVersion != "0.0.1" {
		return fmt.Errorf("body is a %s %s entry, not hashedrekord 0.0.1", body.Kind, body.APIVersion)
	}
	root, err := hex.DecodeString(a.RootHash)
	if err != nil || len(root) != sha256.Size {
		return errors.New("rootHash is not a hex SHA-256")
	}
	digest := sha512.Sum512(ckpt.Text(origin, a.CheckpointSize, [32]byte(root)))
	h := body.Spec.Data.Hash
	if h.Algorithm != "sha512" || h.Value != hex.EncodeToString(digest[:]) {
		return fmt.Errorf("the Rekor entry is not over the checkpoint of %d entries with root %s of log %q", a.CheckpointSize, a.RootHash, origin)
	}
	block, _ := pem.Decode(body.Spec.Signature.PublicKey.Content)
	if block == nil {
		return errors.New("the Rekor entry's public key is not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return fmt.Errorf("the Rekor entry's public key: %v", err)
	}
	if k, ok := pub.(ed25519.PublicKey); !ok || !k.Equal(logKey) {
		return errors.New("the Rekor entry is signed with a key that is not the log's")
	}
	if err := ed25519.VerifyWithOptions(logKey, digest[:], body.Spec.Signature.Content, &ed25519.Options{Hash: crypto.SHA512}); err != nil {
		return fmt.Errorf("the log's signature in the Rekor entry does not verify: %v", err)
	}
	return nil
}

// checkRekorProof checks Rekor's inclusion proof, its checkpoint signature
// and the signed entry timestamp with the Rekor key the log ID names.
func checkRekorProof(a *evidence.Anchor, rekorKeys []crypto.PublicKey) error {
	v1Keys, v2Keys := splitRekorKeys(rekorKeys)
	if a.Version == 2 {
		return checkRekorProofV2(a, v2Keys)
	}
	if len(v1Keys) == 0 {
		return errors.New("no Rekor public key to check it with")
	}
	if a.InclusionProof == nil {
		return errors.New("no inclusion proof")
	}
	var rekorKey crypto.PublicKey
	for _, k := range v1Keys {
		if id, err := RekorLogID(k); err == nil && id == a.LogID {
			rekorKey = k
			break
		}
	}
	if rekorKey == nil {
		return fmt.Errorf("logId %s is not the ID of a trusted Rekor key", a.LogID)
	}
	v, err := signature.LoadVerifier(rekorKey, crypto.SHA256)
	if err != nil {
		return fmt.Errorf("the Rekor key: %v", err)
	}
	set, err := base64.StdEncoding.DecodeString(a.SignedEntryTimestamp)
	if err != nil {
		return fmt.Errorf("signedEntryTimestamp is not base64: %v", err)
	}
	ip := a.InclusionProof
	e := &models.LogEntryAnon{
		Body:           a.Body,
		IntegratedTime: &a.IntegratedTime,
		LogID:          &a.LogID,
		LogIndex:       &a.LogIndex,
		Verification: &models.LogEntryAnonVerification{
			InclusionProof: &models.InclusionProof{
				Checkpoint: &ip.Checkpoint,
				Hashes:     ip.Hashes,
				LogIndex:   &ip.LogIndex,
				RootHash:   &ip.RootHash,
				TreeSize:   &ip.TreeSize,
			},
			SignedEntryTimestamp: strfmt.Base64(set),
		},
	}
	// Pure computation: the context only travels into signature options.
	ctx := context.Background()
	if err := rekorverify.VerifyInclusion(ctx, e); err != nil {
		return fmt.Errorf("the Rekor inclusion proof: %v", err)
	}
	if err := rekorverify.VerifyCheckpointSignature(e, v); err != nil {
		return fmt.Errorf("the Rekor checkpoint: %v", err)
	}
	if err := rekorverify.VerifySignedEntryTimestamp(ctx, e, v); err != nil {
		return fmt.Errorf("the Rekor signed entry timestamp: %v", err)
	}
	return nil
}

// anchorCheck checks the anchors CheckLog meets against the log's own signed
// checkpoints.
type anchorCheck struct {
	origin    string
	logKey    ed25519.PublicKey
	rekorKeys []crypto.PublicKey
	roots     map[uint64][32]byte // the log's signed checkpoints, checked against its entries
	verified  int
	unchecked int
}

func newAnchorCheck(opts CheckOptions, logKey ed25519.PublicKey, cps []checkpoint) *anchorCheck {
	roots := make(map[uint64][32]byte, len(cps))
	for _, cp := range cps {
		roots[cp.size] = cp.root
	}
	return &anchorCheck{origin: opts.Origin, logKey: logKey, rekorKeys: opts.RekorKeys, roots: roots}
}

// check judges the anchor recorded as entry index: it must anchor a
// checkpoint the log signed before it, and without Rekor keys it is
// counted as unchecked.
func (c *anchorCheck) check(index uint64, a *evidence.Anchor) error {
	if a.CheckpointSize > index {
		return fmt.Errorf("%w: anchors a checkpoint of %d entries, but is entry %d", ErrBadAnchor, a.CheckpointSize, index)
	}
	root, ok := c.roots[a.CheckpointSize]
	if !ok {
		return fmt.Errorf("%w: the log has no signed checkpoint of %d entries", ErrBadAnchor, a.CheckpointSize)
	}
	if hex.EncodeToString(root[:]) != a.RootHash {
		return fmt.Errorf("%w: anchors root %s for %d entries, but the log's root at that size is %x", ErrBadAnchor, a.RootHash, a.CheckpointSize, root)
	}
	if err := checkAnchorEntry(a, c.origin, c.logKey); err != nil {
		return fmt.Errorf("%w: %v", ErrBadAnchor, err)
	}
	if len(c.rekorKeys) == 0 {
		c.unchecked++
		return nil
	}
	if err := checkRekorProof(a, c.rekorKeys); err != nil {
		return fmt.Errorf("%w: %v", ErrBadAnchor, err)
	}
	c.verified++
	return nil
}
