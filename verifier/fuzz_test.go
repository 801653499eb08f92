package verifier_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
	"evident.dev/evident/verifier/verifiertest"
)

// FuzzDecodeEnvelope: DecodeEnvelope and Verify never panic, every refusal
// wraps one documented error, and whatever is accepted verifies again, to the
// same record, after a decode/encode round trip.
func FuzzDecodeEnvelope(f *testing.F) {
	ci := verifiertest.FixedKey(f, "ed25519", "ci")
	apply := verifiertest.FixedKey(f, "ecdsa-p256", "apply")
	logKey := verifiertest.FixedKey(f, "ed25519", "log")
	v := verifiertest.MustNew(f, verifier.TrustConfig{Runners: []verifier.Runner{
		verifiertest.Runner("ci", ci, "*"),
		{Name: "apply", PublicKey: apply.PubPEM, Scope: verifier.Scope{Environments: []string{"prod"}, Stacks: []string{verifiertest.StackA}}},
	}}, logKey.Priv.Public())

	plan := verifiertest.Record(f, "CHG-1", verifiertest.Prod())
	good := verifiertest.Sign(f, ci, plan)
	f.Add(good)
	f.Add(verifiertest.Sign(f, apply, verifiertest.PayloadOf(f, verifiertest.Transition(evidence.KindApplyCompleted, "CHG-2", evidence.Target{Environment: "prod", Stack: verifiertest.StackA}))))
	f.Add(verifiertest.Sign(f, apply, plan)) // out of scope: no stack
	f.Add(verifiertest.Sign(f, logKey, verifiertest.PayloadOf(f, verifiertest.Transition(evidence.KindBootstrap, "bootstrap", evidence.Target{}))))
	f.Add(verifiertest.Sign(f, ci, verifiertest.PayloadOf(f, verifiertest.Transition(evidence.KindTrustUpdated, "t", evidence.Target{}))))
	f.Add(verifiertest.Sign(f, ci, []byte(`{"_type":"x"}`)))
	f.Add(editEnv(f, good, func(e *dsse.Envelope) { e.Signatures[0].KeyID = "" }))
	f.Add(editEnv(f, good, func(e *dsse.Envelope) { e.Payload = base64.URLEncoding.EncodeToString(plan) }))
	f.Add(editEnv(f, good, func(e *dsse.Envelope) {
		e.Signatures = append(e.Signatures, dsse.Signature{KeyID: apply.ID, Sig: e.Signatures[0].Sig})
	}))
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"","sig":"AAAA"}]}`))
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`))
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","payload":"e30=","signatures":[{}]}`))
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[`))
	f.Add([]byte(``))
	f.Add([]byte(`null`))
	f.Add(good[:len(good)/2])

	f.Fuzz(func(t *testing.T, raw []byte) {
		env, payload, err := verifier.DecodeEnvelope(raw)
		if err != nil {
			if !errors.Is(err, verifier.ErrMalformed) {
				t.Fatalf("DecodeEnvelope error %v does not wrap ErrMalformed", err)
			}
			if _, err := v.Verify(raw); !errors.Is(err, verifier.ErrMalformed) {
				t.Fatalf("DecodeEnvelope refused the envelope but Verify says %v", err)
			}
			return
		}
		if env.PayloadType != evidence.PayloadType || len(env.Signatures) == 0 || len(env.Signatures) > 8 || len(payload) == 0 {
			t.Fatalf("DecodeEnvelope accepted %+v with payload %q", env, payload)
		}
		// The decoded envelope, encoded again, decodes to the same.
		re, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		env2, payload2, err := verifier.DecodeEnvelope(re)
		if err != nil || !bytes.Equal(payload, payload2) || env2.Payload != env.Payload || len(env2.Signatures) != len(env.Signatures) {
			t.Fatalf("round trip: %v", err)
		}

		got, err := v.Verify(raw)
		if err != nil {
			var invalid *evidence.ValidationError
			n := 0
			for _, sentinel := range []error{verifier.ErrMalformed, verifier.ErrUntrusted, verifier.ErrOutOfScope, evidence.ErrMalformed} {
				if errors.Is(err, sentinel) {
					n++
				}
			}
			if errors.As(err, &invalid) {
				n++
			}
			if n != 1 {
				t.Fatalf("Verify error %v matches %d of the documented errors, want 1", err, n)
			}
			return
		}
		// Accepted: a record only a trusted key signed, with its identity.
		switch got.Signer {
		case verifier.Signer{Name: "ci", KeyID: ci.ID}, verifier.Signer{Name: "apply", KeyID: apply.ID}, verifier.Signer{Name: verifier.LogSigner, KeyID: logKey.ID}:
		default:
			t.Fatalf("accepted with signer %+v", got.Signer)
		}
		if got.Digest != sha256.Sum256(verifiertest.PAE(evidence.PayloadType, payload)) || !bytes.Equal(got.Payload, payload) {
			t.Fatal("accepted record's digest or payload is not the envelope's")
		}
		again, err := v.Verify(re)
		if err != nil {
			t.Fatalf("accepted envelope does not verify after a round trip: %v", err)
		}
		if again.Digest != got.Digest || again.Signer != got.Signer {
			t.Fatalf("round trip changed the record: %+v vs %+v", again.Signer, got.Signer)
		}
	})
}
