package verifier_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"math/big"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
	"evident.dev/evident/verifier/verifiertest"
)

// The verifier checks ed25519 with curve25519-voi (keys expanded once) and
// must accept exactly the signatures crypto/ed25519 accepts, so an auditor
// using the standard library reaches the same verdict. Fuzzed signatures,
// including non-canonical S (S+L) and small-order R, are judged alike.
func FuzzEd25519MatchesStdlib(f *testing.F) {
	k := verifiertest.FixedKey(f, "ed25519", "ci")
	v := verifiertest.MustNew(f, trustOf(verifiertest.Runner("ci", k, "*")), nil)
	payload := verifiertest.PayloadOf(f, verifiertest.Transition(evidence.KindPlanCreated, "CHG-ED", verifiertest.Prod()))
	msg := verifiertest.PAE(evidence.PayloadType, payload)
	good := ed25519.Sign(k.Priv.(ed25519.PrivateKey), msg)

	// S + L: the same signature with a non-canonical scalar.
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	s := new(big.Int).SetBytes(reverse(good[32:]))
	nonCanonical := append(append([]byte{}, good[:32]...), reverse(new(big.Int).Add(s, l).FillBytes(make([]byte, 32)))...)
	smallOrderR := append(make([]byte, 32), good[32:]...)
	smallOrderR[0] = 1 // the identity point's encoding

	f.Add(good, uint16(0), byte(0))
	f.Add(nonCanonical, uint16(0), byte(0))
	f.Add(smallOrderR, uint16(0), byte(0))
	f.Add(good, uint16(5), byte(0x80))
	f.Add(good, uint16(63), byte(0x10))
	f.Fuzz(func(t *testing.T, sig []byte, at uint16, flip byte) {
		sig = append([]byte(nil), sig...)
		if len(sig) > 0 {
			sig[int(at)%len(sig)] ^= flip
		}
		want := ed25519.Verify(k.Priv.Public().(ed25519.PublicKey), msg, sig)
		env := encodeEnv(t, dsse.Envelope{PayloadType: evidence.PayloadType,
			Payload:    base64.StdEncoding.EncodeToString(payload),
			Signatures: []dsse.Signature{{KeyID: k.ID, Sig: base64.StdEncoding.EncodeToString(sig)}}})
		_, err := v.Verify(env)
		if got := err == nil; got != want {
			t.Fatalf("signature %x: verifier accepts=%v, crypto/ed25519 accepts=%v (err %v)", sig, got, want, err)
		}
	})
}

func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[len(b)-1-i] = b[i]
	}
	return out
}

func trustOf(rs ...verifier.Runner) verifier.TrustConfig { return verifier.TrustConfig{Runners: rs} }
