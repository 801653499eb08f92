package audit_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"testing"

	pbs "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"evident.dev/evident/audit"
	"evident.dev/evident/evidence"
)

// loadAnchorV2Vector is a real Rekor v2 anchor, recorded from rekor-tiles
// v2.3.0 by the anchor package's test (EVIDENT_ANCHOR_VECTOR_V2), with the
// log key and the pinned Rekor v2 key as its key file holds it.
func loadAnchorV2Vector(t testing.TB) (anchorVector, ed25519.PublicKey, audit.RekorV2Key) {
	t.Helper()
	b, err := os.ReadFile("testdata/anchor-v2.json")
	if err != nil {
		t.Fatal(err)
	}
	var v anchorVector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	logPub, _, err := audit.LogPublicKey(v.LogKey)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := audit.ParseRekorKeys([]byte(v.RekorKey))
	if err != nil || len(keys) != 1 {
		t.Fatalf("the vector's Rekor v2 key: %v %v", keys, err)
	}
	k, ok := keys[0].(audit.RekorV2Key)
	if !ok {
		t.Fatalf("the vector's Rekor key is a %T, not a Rekor v2 key", keys[0])
	}
	return v, logPub, k
}

func mutateEntry(t *testing.T, a evidence.Anchor, f func(*pbs.TransparencyLogEntry)) evidence.Anchor {
	t.Helper()
	var e pbs.TransparencyLogEntry
	if err := protojson.Unmarshal(a.TransparencyLogEntry, &e); err != nil {
		t.Fatal(err)
	}
	f(&e)
	b, err := protojson.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	a.TransparencyLogEntry = b
	return a
}

// TestVerifyAnchorV2 checks a recorded Rekor v2 anchor offline and refuses
// it with any part of Rekor's answer, the checkpoint or the keys changed.
func TestVerifyAnchorV2(t *testing.T) {
	v, logPub, rekorKey := loadAnchorV2Vector(t)
	_, _, v1Key := loadAnchorVector(t)
	keys := []crypto.PublicKey{v1Key, rekorKey}
	if err := audit.VerifyAnchor(&v.Anchor, v.Origin, logPub, keys); err != nil {
		t.Fatalf("the recorded anchor does not verify: %v", err)
	}
	otherSeed := sha256.Sum256([]byte("another key"))
	otherKey := ed25519.NewKeyFromSeed(otherSeed[:]).Public()
	cases := []struct {
		name    string
		anchor  func(t *testing.T, a evidence.Anchor) evidence.Anchor
		origin  string
		logKey  ed25519.PublicKey
		keys    []crypto.PublicKey
		mention string
	}{
		{name: "flipped proof hash", anchor: func(t *testing.T, a evidence.Anchor) evidence.Anchor {
			return mutateEntry(t, a, func(e *pbs.TransparencyLogEntry) { e.InclusionProof.Hashes[0][0] ^= 1 })
		}, mention: "inclusion proof"},
		{name: "proof root not the checkpoint's", anchor: func(t *testing.T, a evidence.Anchor) evidence.Anchor {
			return mutateEntry(t, a, func(e *pbs.TransparencyLogEntry) { e.InclusionProof.RootHash[0] ^= 1 })
		}, mention: "inclusion proof"},
		{name: "Rekor checkpoint of another size", anchor: func(t *testing.T, a evidence.Anchor) evidence.Anchor {
			return mutateEntry(t, a, func(e *pbs.TransparencyLogEntry) {
				e.InclusionProof.Checkpoint.Envelope = strings.Replace(e.InclusionProof.Checkpoint.Envelope, "\n2\n", "\n3\n", 1)
			})
		}, mention: "checkpoint"},
		{name: "another log ID", anchor: func(t *testing.T, a evidence.Anchor) evidence.Anchor {
			return mutateEntry(t, a, func(e *pbs.TransparencyLogEntry) { e.LogId.KeyId[0] ^= 1 })
		}, mention: "not the ID of a pinned Rekor v2 key"},
		{name: "not a Rekor v2 entry", anchor: func(t *testing.T, a evidence.Anchor) evidence.Anchor {
			return mutateEntry(t, a, func(e *pbs.TransparencyLogEntry) {
				e.CanonicalizedBody = []byte(`{"apiVersion":"0.0.1","kind":"rekord","spec":{}}`)
			})
		}, mention: "transparencyLogEntry"},
		{name: "kind and version not the body's", anchor: func(t *testing.T, a evidence.Anchor) evidence.Anchor {
			return mutateEntry(t, a, func(e *pbs.TransparencyLogEntry) { e.KindVersion.Version = "0.0.1" })
		}, mention: "transparencyLogEntry"},
		{name: "no inclusion proof", anchor: func(t *testing.T, a evidence.Anchor) evidence.Anchor {
			return mutateEntry(t, a, func(e *pbs.TransparencyLogEntry) { e.InclusionProof = nil })
		}, mention: "no inclusion proof"},
		{name: "entry not JSON", anchor: func(t *testing.T, a evidence.Anchor) evidence.Anchor {
			a.TransparencyLogEntry = json.RawMessage(`{"logIndex":"x"}`)
			return a
		}, mention: "not a TransparencyLogEntry"},
		{name: "another checkpoint size", anchor: func(t *testing.T, a evidence.Anchor) evidence.Anchor {
			a.CheckpointSize++
			return a
		}, mention: "not over the checkpoint"},
		{name: "version 3", anchor: func(t *testing.T, a evidence.Anchor) evidence.Anchor {
			a.Version = 3
			return a
		}, mention: "version 3"},
		{name: "another log's origin", origin: "evident.test/other", mention: "not over the checkpoint"},
		{name: "another log's key", logKey: otherKey.(ed25519.PublicKey), mention: "not the log's"},
		{name: "Rekor v2 key not pinned", keys: []crypto.PublicKey{v1Key, audit.RekorV2Key{Origin: rekorKey.Origin, PublicKey: otherKey}},
			mention: "not the ID of a pinned Rekor v2 key"},
		{name: "Rekor v2 key pinned for another origin", keys: []crypto.PublicKey{audit.RekorV2Key{Origin: "rekor.other", PublicKey: rekorKey.PublicKey}},
			mention: "not the ID of a pinned Rekor v2 key"},
		{name: "only Rekor v1 keys", keys: []crypto.PublicKey{v1Key, rekorKey.PublicKey}, mention: "no pinned Rekor v2 key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := v.Anchor
			if c.anchor != nil {
				a = c.anchor(t, a)
			}
			origin, lk, ks := v.Origin, logPub, keys
			if c.origin != "" {
				origin = c.origin
			}
			if c.logKey != nil {
				lk = c.logKey
			}
			if c.keys != nil {
				ks = c.keys
			}
			err := audit.VerifyAnchor(&a, origin, lk, ks)
			if !errors.Is(err, audit.ErrBadAnchor) {
				t.Fatalf("VerifyAnchor: %v, want ErrBadAnchor", err)
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Errorf("error %q does not mention %q", err, c.mention)
			}
		})
	}

	// A Rekor v1 anchor is not checked against Rekor v2 keys.
	v1, v1LogPub, _ := loadAnchorVector(t)
	if err := audit.VerifyAnchor(&v1.Anchor, v1.Origin, v1LogPub, []crypto.PublicKey{rekorKey}); err == nil || !strings.Contains(err.Error(), "no Rekor public key") {
		t.Errorf("a Rekor v1 anchor with only a Rekor v2 key: %v", err)
	}
}

func TestParseRekorKeys(t *testing.T) {
	ed, _, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	block := func(k crypto.PublicKey, h map[string]string) string {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: h, Bytes: der}))
	}
	file := "Rekor v1:\n" + block(&ec.PublicKey, nil) + "Rekor v2:\n" + block(ed, map[string]string{"Origin": "log2025-1.rekor.example"}) +
		block(&ec.PublicKey, map[string]string{"Origin": "rekor2.example.internal"})
	keys, err := audit.ParseRekorKeys([]byte(file))
	if err != nil || len(keys) != 3 {
		t.Fatalf("ParseRekorKeys: %d keys, %v", len(keys), err)
	}
	if _, ok := keys[0].(*ecdsa.PublicKey); !ok {
		t.Errorf("a key without Origin is a %T, want a Rekor v1 key", keys[0])
	}
	k2, ok := keys[1].(audit.RekorV2Key)
	if !ok || k2.Origin != "log2025-1.rekor.example" || !ed.Equal(k2.PublicKey) {
		t.Errorf("an ed25519 key with Origin: %#v", keys[1])
	}
	if k3, ok := keys[2].(audit.RekorV2Key); !ok || k3.Origin != "rekor2.example.internal" {
		t.Errorf("an ECDSA key with Origin: %#v", keys[2])
	}
	// Rekor v2's log ID for ECDSA is the key's SHA-256, as Rekor v1's.
	id, err := keys[2].(audit.RekorV2Key).LogID()
	v1ID, _ := audit.RekorLogID(&ec.PublicKey)
	if err != nil || v1ID != hex.EncodeToString(id) {
		t.Errorf("ECDSA Rekor v2 log ID %x, want %s (%v)", id, v1ID, err)
	}
	if _, err := audit.ParseRekorKeys([]byte(block(ed, map[string]string{"Origin": "has space"}))); err == nil {
		t.Errorf("an origin with a space was taken")
	}
}
