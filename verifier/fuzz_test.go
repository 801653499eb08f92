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
)

// FuzzDecodeEnvelope: DecodeEnvelope and Verify never panic, every refusal
// wraps one documented error, and whatever is accepted verifies again, to the
// same record, after a decode/encode round trip.
func FuzzDecodeEnvelope(f *testing.F) {
	ci := fixedKey(f, "ed25519", "ci")
	apply := fixedKey(f, "ecdsa-p256", "apply")
	logKey := fixedKey(f, "ed25519", "log")
	v := mustNew(f, verifier.TrustConfig{Runners: []verifier.Runner{
		runner("ci", ci, "*"),
		{Name: "apply", PublicKey: apply.pubPEM, Scope: verifier.Scope{Environments: []string{"prod"}, Stacks: []string{stackA}}},
	}}, logKey.priv.Public())

	plan := record(f, "CHG-1", prod())
	good := sign(f, ci, plan)
	f.Add(good)
	f.Add(sign(f, apply, payloadOf(f, transition(evidence.KindApplyCompleted, "CHG-2", evidence.Target{Environment: "prod", Stack: stackA}))))
	f.Add(sign(f, apply, plan)) // out of scope: no stack
	f.Add(sign(f, logKey, payloadOf(f, transition(evidence.KindBootstrap, "bootstrap", evidence.Target{}))))
	f.Add(sign(f, ci, payloadOf(f, transition(evidence.KindTrustUpdated, "t", evidence.Target{}))))
	f.Add(sign(f, ci, []byte(`{"_type":"x"}`)))
	f.Add(editEnv(f, good, func(e *dsse.Envelope) { e.Signatures[0].KeyID = "" }))
	f.Add(editEnv(f, good, func(e *dsse.Envelope) { e.Payload = base64.URLEncoding.EncodeToString(plan) }))
	f.Add(editEnv(f, good, func(e *dsse.Envelope) {
		e.Signatures = append(e.Signatures, dsse.Signature{KeyID: apply.id, Sig: e.Signatures[0].Sig})
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
		case verifier.Signer{Name: "ci", KeyID: ci.id}, verifier.Signer{Name: "apply", KeyID: apply.id}, verifier.Signer{Name: verifier.LogSigner, KeyID: logKey.id}:
		default:
			t.Fatalf("accepted with signer %+v", got.Signer)
		}
		if got.Digest != sha256.Sum256(pae(evidence.PayloadType, payload)) || !bytes.Equal(got.Payload, payload) {
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
