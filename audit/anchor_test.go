package audit_test

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	pbs "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"evident.dev/evident/audit"
	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
)

// anchorVector is a real anchor, recorded from rekor-server v1.5.4 by the
// anchor package's test (EVIDENT_ANCHOR_VECTOR), with the keys to check it.
type anchorVector struct {
	Origin   string          `json:"origin"`
	LogKey   string          `json:"logKey"`
	RekorKey string          `json:"rekorKey"`
	Anchor   evidence.Anchor `json:"anchor"`
}

func loadAnchorVector(t testing.TB) (anchorVector, ed25519.PublicKey, crypto.PublicKey) {
	t.Helper()
	b, err := os.ReadFile("testdata/anchor.json")
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
	rekorPub, err := verifier.ParsePublicKey([]byte(v.RekorKey))
	if err != nil {
		t.Fatal(err)
	}
	return v, logPub, rekorPub
}

func flipBase64(s string) string {
	b, _ := base64.StdEncoding.DecodeString(s)
	b[len(b)/2] ^= 1
	return base64.StdEncoding.EncodeToString(b)
}

func flipHex(s string) string {
	c := byte('0')
	if s[10] == '0' {
		c = '1'
	}
	return s[:10] + string(c) + s[11:]
}

func TestVerifyAnchor(t *testing.T) {
	v, logPub, rekorPub := loadAnchorVector(t)
	keys := []crypto.PublicKey{rekorPub}
	if err := audit.VerifyAnchor(&v.Anchor, v.Origin, logPub, keys); err != nil {
		t.Fatalf("the recorded anchor does not verify: %v", err)
	}
	otherSeed := sha256.Sum256([]byte("another key"))
	otherKey := ed25519.NewKeyFromSeed(otherSeed[:]).Public()
	cases := []struct {
		name    string
		mut     func(a *evidence.Anchor)
		origin  string
		logKey  ed25519.PublicKey
		keys    []crypto.PublicKey
		mention string
	}{
		{name: "tampered SET", mut: func(a *evidence.Anchor) { a.SignedEntryTimestamp = flipBase64(a.SignedEntryTimestamp) }, mention: "signed entry timestamp"},
		{name: "other integrated time", mut: func(a *evidence.Anchor) { a.IntegratedTime++ }, mention: "signed entry timestamp"},
		{name: "other Rekor index", mut: func(a *evidence.Anchor) { a.LogIndex++ }, mention: "signed entry timestamp"},
		{name: "tampered proof hash", mut: func(a *evidence.Anchor) { a.InclusionProof.Hashes[0] = flipHex(a.InclusionProof.Hashes[0]) }, mention: "inclusion proof"},
		{name: "proof for another index", mut: func(a *evidence.Anchor) { a.InclusionProof.LogIndex ^= 1 }, mention: "inclusion proof"},
		{name: "tampered Rekor root", mut: func(a *evidence.Anchor) { a.InclusionProof.RootHash = flipHex(a.InclusionProof.RootHash) }, mention: "inclusion proof"},
		{name: "tampered Rekor checkpoint", mut: func(a *evidence.Anchor) {
			a.InclusionProof.Checkpoint = strings.Replace(a.InclusionProof.Checkpoint, "\n\n", "\nextra\n\n", 1)
		}, mention: "checkpoint"},
		{name: "another checkpoint size", mut: func(a *evidence.Anchor) { a.CheckpointSize++ }, mention: "not over the checkpoint"},
		{name: "another checkpoint root", mut: func(a *evidence.Anchor) { a.RootHash = flipHex(a.RootHash) }, mention: "not over the checkpoint"},
		{name: "another log's origin", origin: "evident.test/other", mention: "not over the checkpoint"},
		{name: "another log's key", logKey: otherKey.(ed25519.PublicKey), mention: "not the log's"},
		{name: "Rekor key not pinned", keys: []crypto.PublicKey{otherKey}, mention: "not the ID of a trusted Rekor key"},
		{name: "no Rekor key", keys: []crypto.PublicKey{}, mention: "no Rekor public key"},
		{name: "body not base64", mut: func(a *evidence.Anchor) { a.Body = "%%%" }, mention: "base64"},
		{name: "body of another entry", mut: func(a *evidence.Anchor) {
			a.Body = base64.StdEncoding.EncodeToString([]byte(`{"apiVersion":"0.0.1","kind":"rekord","spec":{}}`))
		}, mention: "not hashedrekord"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := v.Anchor
			ip := *a.InclusionProof
			ip.Hashes = append([]string(nil), ip.Hashes...)
			a.InclusionProof = &ip
			if c.mut != nil {
				c.mut(&a)
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
}

// FuzzVerifyAnchor feeds VerifyAnchor anchors decoded from arbitrary JSON,
// as CheckLog meets them in a log, Rekor v1 and Rekor v2 ones (whose
// transparencyLogEntry goes through protojson and sigstore-go): it must not
// panic, and whatever it accepts must anchor a recorded checkpoint with
// Rekor's recorded answer. Its seeds are real anchors of 1.5 KB; run it
// with -fuzzminimizetime=1x, or the fuzzer spends its time minimizing
// every new input (a minute each by default) rather than fuzzing.
func FuzzVerifyAnchor(f *testing.F) {
	v, logPub, rekorPub := loadAnchorVector(f)
	v2, logPub2, rekorV2Key := loadAnchorV2Vector(f)
	if v.Origin != v2.Origin || !logPub.Equal(logPub2) {
		f.Fatal("the vectors are of different logs")
	}
	for _, a := range []evidence.Anchor{v.Anchor, v2.Anchor} {
		seed, err := json.Marshal(a)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(seed)
	}
	f.Add([]byte(`{"checkpointSize":1,"body":"e30=","signedEntryTimestamp":"","inclusionProof":{"treeSize":1}}`))
	f.Add([]byte(`{"version":2,"checkpointSize":1,"transparencyLogEntry":{"logIndex":"0","kindVersion":{},"inclusionProof":{"checkpoint":{"envelope":"x"}}}}`))
	f.Add([]byte(`{"version":2,"checkpointSize":7,"transparencyLogEntry":{"canonicalizedBody":"e30=","logId":{"keyId":""},"kindVersion":{"kind":"hashedrekord","version":"0.0.2"}}}`))
	want2 := entryBody(f, v2.Anchor)
	f.Fuzz(func(t *testing.T, b []byte) {
		var a evidence.Anchor
		if json.Unmarshal(b, &a) != nil {
			return
		}
		if err := audit.VerifyAnchor(&a, v.Origin, logPub, []crypto.PublicKey{rekorPub, rekorV2Key}); err != nil {
			return
		}
		if a.Version == 2 {
			if a.CheckpointSize != v2.Anchor.CheckpointSize || a.RootHash != v2.Anchor.RootHash || a.LogIndex != v2.Anchor.LogIndex ||
				entryBody(t, a) != want2 {
				t.Fatalf("VerifyAnchor accepted a Rekor v2 anchor other than the recorded one: %+v", a)
			}
			return
		}
		want := v.Anchor
		if a.CheckpointSize != want.CheckpointSize || a.RootHash != want.RootHash || a.LogIndex != want.LogIndex ||
			a.IntegratedTime != want.IntegratedTime || a.LogID != want.LogID {
			t.Fatalf("VerifyAnchor accepted an anchor other than the recorded one: %+v", a)
		}
	})
}

// entryBody is the entry a Rekor v2 anchor's transparencyLogEntry carries.
func entryBody(t testing.TB, a evidence.Anchor) string {
	t.Helper()
	var e pbs.TransparencyLogEntry
	if err := protojson.Unmarshal(a.TransparencyLogEntry, &e); err != nil {
		t.Fatal(err)
	}
	return string(e.CanonicalizedBody)
}

// TestAnchorRecordsAreTheLogsOwn checks that only the log key signs a
// checkpoint.anchored record: a runner trusted for every environment
// cannot, and the log key can.
func TestAnchorRecordsAreTheLogsOwn(t *testing.T) {
	raw, err := os.ReadFile("../evidence/testdata/kinds/checkpoint.anchored.json")
	if err != nil {
		t.Fatal(err)
	}
	runnerPriv, runnerPub, err := verifier.GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	runner, err := verifier.ParsePrivateKey(runnerPriv)
	if err != nil {
		t.Fatal(err)
	}
	logSeed := sha256.Sum256([]byte("anchor test log"))
	logKey := ed25519.NewKeyFromSeed(logSeed[:])
	v, err := verifier.New(verifier.TrustConfig{Runners: []verifier.Runner{
		{Name: "ci", PublicKey: string(runnerPub), Scope: verifier.Scope{Environments: []string{"*"}}},
	}}, logKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	env, err := verifier.SignEnvelope(runner, raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(env); !errors.Is(err, verifier.ErrOutOfScope) {
		t.Errorf("a runner's checkpoint.anchored record: %v, want ErrOutOfScope", err)
	}
	env, err = verifier.SignEnvelope(logKey, raw)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Verify(env)
	if err != nil {
		t.Fatalf("the log's checkpoint.anchored record: %v", err)
	}
	if got.Signer.Name != verifier.LogSigner {
		t.Errorf("signer %q, want the log", got.Signer.Name)
	}
}
