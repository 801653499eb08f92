package verifier_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
	"evident.dev/evident/verifier/verifiertest"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	for _, alg := range []string{"ed25519", "ecdsa-p256", ""} {
		t.Run("alg="+alg, func(t *testing.T) {
			k := verifiertest.NewKey(t, alg)
			other := verifiertest.NewKey(t, "ed25519")
			v := verifiertest.MustNew(t, verifier.TrustConfig{Runners: []verifier.Runner{
				verifiertest.Runner("other", other, "*"),
				verifiertest.Runner("ci", k, "prod"),
			}}, nil)
			payload := verifiertest.Record(t, "CHG-1", verifiertest.Prod())
			raw := verifiertest.Sign(t, k, payload)

			env := decodeEnv(t, raw)
			if len(env.Signatures) != 1 || env.Signatures[0].KeyID != k.ID {
				t.Fatalf("signatures = %+v, want one with keyid %s (hex SHA-256 of the PKIX DER)", env.Signatures, k.ID)
			}
			pub, err := verifier.ParsePublicKey([]byte(k.PubPEM))
			if err != nil {
				t.Fatal(err)
			}
			if id, err := verifier.KeyID(pub); err != nil || id != k.ID {
				t.Fatalf("KeyID = %q, %v; want %q", id, err, k.ID)
			}

			got, err := v.Verify(raw)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Signer != (verifier.Signer{Name: "ci", KeyID: k.ID}) {
				t.Errorf("Signer = %+v", got.Signer)
			}
			if !bytes.Equal(got.Payload, payload) {
				t.Errorf("Payload differs from the signed one")
			}
			if got.Digest != sha256.Sum256(verifiertest.PAE(evidence.PayloadType, payload)) {
				t.Errorf("Digest is not SHA-256 of the DSSE PAE")
			}
			if got.Statement.Predicate.ChangeID != "CHG-1" || got.Statement.Predicate.Kind != evidence.KindPlanCreated {
				t.Errorf("Statement = %+v", got.Statement.Predicate)
			}

			// The same payload signed again (ECDSA signatures differ each
			// time), in URL-safe base64, or with whitespace around it is the
			// same record: same digest.
			again, err := v.Verify(verifiertest.Sign(t, k, payload))
			if err != nil || again.Digest != got.Digest {
				t.Errorf("re-signed record: err %v, digest equal %v", err, err == nil && again.Digest == got.Digest)
			}
			urlSafe := editEnv(t, raw, func(e *dsse.Envelope) {
				e.Payload = base64.URLEncoding.EncodeToString(payload)
				sig, _ := base64.StdEncoding.DecodeString(e.Signatures[0].Sig)
				e.Signatures[0].Sig = base64.URLEncoding.EncodeToString(sig)
			})
			if v2, err := v.Verify(urlSafe); err != nil || v2.Digest != got.Digest {
				t.Errorf("URL-safe base64 envelope: %v", err)
			}
			spaced := append(append([]byte(" \n\t"), bytes.ReplaceAll(raw, []byte(","), []byte(" ,\n "))...), '\n')
			if v2, err := v.Verify(spaced); err != nil || v2.Digest != got.Digest {
				t.Errorf("envelope with whitespace: %v", err)
			}

			// A signature without keyid is tried against every trusted key.
			noID := editEnv(t, raw, func(e *dsse.Envelope) { e.Signatures[0].KeyID = "" })
			v3, err := v.Verify(noID)
			if err != nil {
				t.Fatalf("signature without keyid: %v", err)
			}
			if v3.Signer.Name != "ci" {
				t.Errorf("signature without keyid attributed to %q, want ci", v3.Signer.Name)
			}
		})
	}
}

func TestGenerateAndParseKeys(t *testing.T) {
	if _, _, err := verifier.GenerateKey("rsa"); err == nil {
		t.Error("GenerateKey(rsa) succeeded")
	}
	for _, alg := range []string{"ed25519", "ecdsa-p256"} {
		priv, pub, err := verifier.GenerateKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(priv, []byte("-----BEGIN PRIVATE KEY-----")) || !bytes.HasPrefix(pub, []byte("-----BEGIN PUBLIC KEY-----")) {
			t.Errorf("%s: not PKCS#8 / PKIX PEM:\n%s\n%s", alg, priv, pub)
		}
		if _, err := verifier.ParsePrivateKey(pub); err == nil {
			t.Errorf("%s: ParsePrivateKey accepted a public key", alg)
		}
		if _, err := verifier.ParsePublicKey(priv); err == nil {
			t.Errorf("%s: ParsePublicKey accepted a private key", alg)
		}
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]any{"P-384": p384, "RSA": rsaKey} {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := verifier.ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err == nil {
			t.Errorf("ParsePrivateKey accepted a %s key", name)
		}
	}
	for _, junk := range []string{"", "not pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"} {
		if _, err := verifier.ParsePrivateKey([]byte(junk)); err == nil {
			t.Errorf("ParsePrivateKey(%q) succeeded", junk)
		}
	}
	if _, err := verifier.SignEnvelope(rsaKey, []byte("{}")); err == nil {
		t.Error("SignEnvelope accepted an RSA key")
	}
}

func TestVerifyUntrusted(t *testing.T) {
	ed := verifiertest.NewKey(t, "ed25519")
	ec := verifiertest.NewKey(t, "ecdsa-p256")
	stranger := verifiertest.NewKey(t, "ed25519")
	v := verifiertest.MustNew(t, verifier.TrustConfig{Runners: []verifier.Runner{verifiertest.Runner("ed", ed, "*"), verifiertest.Runner("ec", ec, "*")}}, nil)
	payload := verifiertest.Record(t, "CHG-1", verifiertest.Prod())

	for _, k := range []struct {
		name string
		key  verifiertest.Key
	}{{"ed25519", ed}, {"ecdsa", ec}} {
		good := verifiertest.Sign(t, k.key, payload)
		if _, err := v.Verify(good); err != nil {
			t.Fatalf("%s: the untampered envelope does not verify: %v", k.name, err)
		}
		tampered := bytes.Replace(payload, []byte("CHG-1"), []byte("CHG-2"), 1)
		cases := map[string][]byte{
			"tampered payload": editEnv(t, good, func(e *dsse.Envelope) {
				e.Payload = base64.StdEncoding.EncodeToString(tampered)
			}),
			"tampered signature": editEnv(t, good, func(e *dsse.Envelope) {
				sig, _ := base64.StdEncoding.DecodeString(e.Signatures[0].Sig)
				sig[len(sig)/2] ^= 0x01
				e.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig)
			}),
			"truncated signature": editEnv(t, good, func(e *dsse.Envelope) {
				sig, _ := base64.StdEncoding.DecodeString(e.Signatures[0].Sig)
				e.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig[:len(sig)-1])
			}),
			"wrong keyid (another trusted key)": editEnv(t, good, func(e *dsse.Envelope) {
				if k.name == "ed25519" {
					e.Signatures[0].KeyID = ec.ID
				} else {
					e.Signatures[0].KeyID = ed.ID
				}
			}),
			"wrong keyid (unknown)": editEnv(t, good, func(e *dsse.Envelope) {
				e.Signatures[0].KeyID = strings.Repeat("ab", 32)
			}),
			"other payload type signed": editEnv(t, good, func(e *dsse.Envelope) {
				// A signature over the PAE of another payloadType must
				// not verify for this one.
				e.Signatures[0].Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(ed.Priv.(ed25519.PrivateKey), verifiertest.PAE("application/json", payload)))
				e.Signatures[0].KeyID = ed.ID
			}),
			"unknown key": verifiertest.Sign(t, stranger, payload),
			"unknown key without keyid": editEnv(t, verifiertest.Sign(t, stranger, payload), func(e *dsse.Envelope) {
				e.Signatures[0].KeyID = ""
			}),
			"signature over the raw payload, not the PAE": editEnv(t, good, func(e *dsse.Envelope) {
				e.Signatures[0].Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(ed.Priv.(ed25519.PrivateKey), payload))
				e.Signatures[0].KeyID = ed.ID
			}),
		}
		for name, raw := range cases {
			t.Run(k.name+"/"+name, func(t *testing.T) {
				got, err := v.Verify(raw)
				if !errors.Is(err, verifier.ErrUntrusted) {
					t.Fatalf("Verify = %+v, %v; want ErrUntrusted", got, err)
				}
				if errors.Is(err, verifier.ErrMalformed) || errors.Is(err, verifier.ErrOutOfScope) {
					t.Errorf("error %v wraps more than one sentinel", err)
				}
			})
		}
	}

	t.Run("empty trust", func(t *testing.T) {
		empty := verifiertest.MustNew(t, verifier.TrustConfig{}, nil)
		if _, err := empty.Verify(verifiertest.Sign(t, ed, payload)); !errors.Is(err, verifier.ErrUntrusted) {
			t.Fatalf("err = %v, want ErrUntrusted", err)
		}
	})
	t.Run("untrusted signer of an invalid statement", func(t *testing.T) {
		// Authentication comes first: an outsider learns nothing about
		// validation.
		bad := verifiertest.Transition(evidence.KindPlanCreated, "", verifiertest.Prod())
		if _, err := v.Verify(verifiertest.Sign(t, stranger, verifiertest.PayloadOf(t, bad))); !errors.Is(err, verifier.ErrUntrusted) {
			t.Fatalf("err = %v, want ErrUntrusted", err)
		}
	})
}

func TestVerifyMultipleSignatures(t *testing.T) {
	trusted := verifiertest.NewKey(t, "ed25519")
	stranger := verifiertest.NewKey(t, "ecdsa-p256")
	v := verifiertest.MustNew(t, verifier.TrustConfig{Runners: []verifier.Runner{verifiertest.Runner("ci", trusted, "*")}}, nil)
	payload := verifiertest.Record(t, "CHG-1", verifiertest.Prod())
	good := decodeEnv(t, verifiertest.Sign(t, trusted, payload)).Signatures[0]
	bad := decodeEnv(t, verifiertest.Sign(t, stranger, payload)).Signatures[0]

	for name, sigs := range map[string][]dsse.Signature{
		"stranger first":      {bad, good},
		"trusted first":       {good, bad},
		"eight, last trusted": append(repeatSig(bad, 7), good),
	} {
		t.Run(name, func(t *testing.T) {
			raw := encodeEnv(t, dsse.Envelope{PayloadType: evidence.PayloadType, Payload: base64.StdEncoding.EncodeToString(payload), Signatures: sigs})
			got, err := v.Verify(raw)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Signer.Name != "ci" {
				t.Errorf("signer = %+v", got.Signer)
			}
		})
	}
	t.Run("nine, last trusted", func(t *testing.T) {
		raw := encodeEnv(t, dsse.Envelope{PayloadType: evidence.PayloadType, Payload: base64.StdEncoding.EncodeToString(payload), Signatures: append(repeatSig(bad, 8), good)})
		if _, err := v.Verify(raw); !errors.Is(err, verifier.ErrMalformed) {
			t.Fatalf("err = %v, want ErrMalformed (at most 8 signatures)", err)
		}
	})
}

func repeatSig(s dsse.Signature, n int) []dsse.Signature {
	out := make([]dsse.Signature, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestDecodeEnvelopeMalformed(t *testing.T) {
	k := verifiertest.NewKey(t, "ed25519")
	v := verifiertest.MustNew(t, verifier.TrustConfig{Runners: []verifier.Runner{verifiertest.Runner("ci", k, "*")}}, nil)
	payload := verifiertest.Record(t, "CHG-1", verifiertest.Prod())
	good := verifiertest.Sign(t, k, payload)
	env := decodeEnv(t, good)
	p64, sig, id := env.Payload, env.Signatures[0].Sig, env.Signatures[0].KeyID
	sigJSON := fmt.Sprintf(`{"keyid":%q,"sig":%q}`, id, sig)
	withSigs := func(n int) string {
		s := make([]string, n)
		for i := range s {
			s[i] = sigJSON
		}
		return fmt.Sprintf(`{"payloadType":%q,"payload":%q,"signatures":[%s]}`, evidence.PayloadType, p64, strings.Join(s, ","))
	}
	obj := func(payloadType, payload, sigs string) string {
		return fmt.Sprintf(`{"payloadType":%s,"payload":%s,"signatures":%s}`, payloadType, payload, sigs)
	}
	pt := fmt.Sprintf("%q", evidence.PayloadType)
	pl := fmt.Sprintf("%q", p64)
	sg := "[" + sigJSON + "]"

	cases := []struct {
		name, raw, want string // want: a word the message must hold
	}{
		{"empty", "", "JSON"},
		{"whitespace only", " \n", "JSON"},
		{"bad JSON", `{"payloadType":`, "JSON"},
		{"not JSON", "hello", "JSON"},
		{"truncated", string(good[:len(good)/2]), "JSON"},
		{"truncated by one byte", string(good[:len(good)-1]), "JSON"},
		{"null", "null", "payloadType"},
		{"array", "[" + string(good) + "]", ""},
		{"string", `"` + p64 + `"`, ""},
		{"trailing data", string(good) + "{}", ""},
		{"two envelopes", string(good) + string(good), ""},
		{"unknown field", `{"payloadType":` + pt + `,"payload":` + pl + `,"signatures":` + sg + `,"extra":1}`, "extra"},
		{"unknown field in signature", obj(pt, pl, fmt.Sprintf(`[{"keyid":%q,"sig":%q,"cert":"x"}]`, id, sig)), "cert"},
		{"field in other case", `{"PayloadType":` + pt + `,"payload":` + pl + `,"signatures":` + sg + `}`, "PayloadType"},
		{"duplicate payloadType", `{"payloadType":` + pt + `,"payloadType":` + pt + `,"payload":` + pl + `,"signatures":` + sg + `}`, "payloadType"},
		{"duplicate payload", `{"payloadType":` + pt + `,"payload":` + pl + `,"payload":` + pl + `,"signatures":` + sg + `}`, "payload"},
		{"duplicate sig", obj(pt, pl, fmt.Sprintf(`[{"keyid":%q,"sig":%q,"sig":%q}]`, id, sig, sig)), "sig"},
		{"wrong payloadType", obj(`"application/json"`, pl, sg), "payloadType"},
		{"payloadType differs in case", obj(`"application/vnd.in-toto+JSON"`, pl, sg), "payloadType"},
		{"missing payloadType", `{"payload":` + pl + `,"signatures":` + sg + `}`, "payloadType"},
		{"missing payload", `{"payloadType":` + pt + `,"signatures":` + sg + `}`, "payload"},
		{"empty payload", obj(pt, `""`, sg), "payload"},
		{"missing signatures", `{"payloadType":` + pt + `,"payload":` + pl + `}`, "signatures"},
		{"null signatures", obj(pt, pl, "null"), "signatures"},
		{"no signatures", obj(pt, pl, "[]"), "signatures"},
		{"nine signatures", withSigs(9), "signatures"},
		{"a hundred signatures", withSigs(100), "signatures"},
		{"bad base64 payload", obj(pt, `"!!not base64!!"`, sg), "payload"},
		{"payload base64 cut", obj(pt, fmt.Sprintf("%q", p64[:len(p64)-1]), sg), "payload"},
		{"bad base64 sig", obj(pt, pl, fmt.Sprintf(`[{"keyid":%q,"sig":"%%%%%%"}]`, id)), "sig"},
		{"empty sig", obj(pt, pl, fmt.Sprintf(`[{"keyid":%q,"sig":""}]`, id)), "sig"},
		{"null signature", obj(pt, pl, "[null]"), "sig"},
		{"payload is an object", obj(pt, `{"a":1}`, sg), "payload"},
		{"payload is a number", obj(pt, `12`, sg), "payload"},
		{"payloadType is an array", obj(`["`+evidence.PayloadType+`"]`, pl, sg), "payloadType"},
		{"signatures is an object", obj(pt, pl, sigJSON), "signatures"},
		{"nested arrays in signatures", obj(pt, pl, "[[["+sigJSON+"]]]"), "signatures"},
		{"deeply nested junk", obj(pt, strings.Repeat("[", 100000), sg), ""},
		{"deeply nested document", strings.Repeat("[", 100000), ""},
		{"deeply nested objects", strings.Repeat(`{"a":`, 50000), ""},
		{"keyid is a number", obj(pt, pl, fmt.Sprintf(`[{"keyid":1,"sig":%q}]`, sig)), "keyid"},
		{"invalid UTF-8", obj(`"application/vnd.in-toto+json`+"\xff"+`"`, pl, sg), ""},
		{"NUL byte", "\x00" + string(good), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := verifier.DecodeEnvelope([]byte(c.raw))
			if !errors.Is(err, verifier.ErrMalformed) {
				// Base64 of the signature is checked in Verify, not in
				// DecodeEnvelope.
				if !strings.Contains(c.name, "sig") || err != nil {
					t.Fatalf("DecodeEnvelope: err = %v, want ErrMalformed", err)
				}
			}
			got, err := v.Verify([]byte(c.raw))
			if !errors.Is(err, verifier.ErrMalformed) {
				t.Fatalf("Verify = %+v, %v; want ErrMalformed", got, err)
			}
			if errors.Is(err, verifier.ErrUntrusted) || errors.Is(err, verifier.ErrOutOfScope) {
				t.Errorf("error %v wraps more than one sentinel", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not name %q", err, c.want)
			}
		})
	}
}

func TestDecodeEnvelopeAccepts(t *testing.T) {
	k := verifiertest.NewKey(t, "ed25519")
	payload := verifiertest.Record(t, "CHG-1", verifiertest.Prod())
	good := verifiertest.Sign(t, k, payload)
	env, got, err := verifier.DecodeEnvelope(good)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) || env.PayloadType != evidence.PayloadType || len(env.Signatures) != 1 {
		t.Fatalf("DecodeEnvelope = %+v, %q", env, got)
	}
	// A payload that is not a statement is the statement decoder's
	// business, not the envelope's.
	if _, _, err := verifier.DecodeEnvelope(editEnv(t, good, func(e *dsse.Envelope) {
		e.Payload = base64.StdEncoding.EncodeToString([]byte("not json"))
	})); err != nil {
		t.Fatalf("DecodeEnvelope refused an envelope over a non-JSON payload: %v", err)
	}
}

func TestVerifyInvalidStatement(t *testing.T) {
	k := verifiertest.NewKey(t, "ed25519")
	v := verifiertest.MustNew(t, verifier.TrustConfig{Runners: []verifier.Runner{verifiertest.Runner("ci", k, "*")}}, nil)

	missing := verifiertest.Transition(evidence.KindPlanCreated, "", verifiertest.Prod())
	missing.Plan.PlanSHA256 = "nope"
	_, err := v.Verify(verifiertest.Sign(t, k, verifiertest.PayloadOf(t, missing)))
	var invalid *evidence.ValidationError
	if !errors.As(err, &invalid) {
		t.Fatalf("err = %v, want *evidence.ValidationError", err)
	}
	fields := map[string]bool{}
	for _, p := range invalid.Problems {
		fields[p.Field] = true
	}
	if !fields["predicate.changeId"] || !fields["predicate.plan.planSha256"] {
		t.Errorf("problems %+v do not name predicate.changeId and predicate.plan.planSha256", invalid.Problems)
	}
	for _, sentinel := range []error{verifier.ErrMalformed, verifier.ErrUntrusted, verifier.ErrOutOfScope} {
		if errors.Is(err, sentinel) {
			t.Errorf("validation error also wraps %v", sentinel)
		}
	}

	unknown := verifiertest.Transition(evidence.KindPlanCreated, "CHG-1", verifiertest.Prod())
	unknown.Kind = "plan.exploded"
	if _, err := v.Verify(verifiertest.Sign(t, k, verifiertest.PayloadOf(t, unknown))); !errors.As(err, &invalid) || !strings.Contains(err.Error(), "plan.exploded") {
		t.Errorf("unknown kind: err = %v, want a ValidationError naming the kind", err)
	}

	for name, payload := range map[string]string{
		"not JSON":           "not json",
		"unknown field":      strings.Replace(string(verifiertest.PayloadOf(t, verifiertest.Transition(evidence.KindPlanCreated, "CHG-1", verifiertest.Prod()))), `"changeId"`, `"extra":1,"changeId"`, 1),
		"deeply nested":      `{"_type":` + strings.Repeat("[", 1000),
		"trailing data":      string(verifiertest.Record(t, "CHG-1", verifiertest.Prod())) + "{}",
		"statement is array": "[]",
	} {
		_, err := v.Verify(verifiertest.Sign(t, k, []byte(payload)))
		if !errors.Is(err, evidence.ErrMalformed) {
			t.Errorf("%s: err = %v, want evidence.ErrMalformed", name, err)
		}
	}
}

func TestScope(t *testing.T) {
	const stackB = "prod/aws/payments/network"
	cases := []struct {
		name   string
		scope  verifier.Scope
		target evidence.Target
		ok     bool
		why    string // a word the refusal must hold
	}{
		{"environment in scope", verifier.Scope{Environments: []string{"staging", "prod"}}, evidence.Target{Environment: "prod"}, true, ""},
		{"environment outside scope", verifier.Scope{Environments: []string{"staging"}}, evidence.Target{Environment: "prod"}, false, `environment "prod"`},
		{"environment prefix is not a match", verifier.Scope{Environments: []string{"prod"}}, evidence.Target{Environment: "prod-eu"}, false, "environment"},
		{"environment wildcard", verifier.Scope{Environments: []string{"*"}}, evidence.Target{Environment: "anything"}, true, ""},
		{"environment wildcard among others", verifier.Scope{Environments: []string{"dev", "*"}}, evidence.Target{Environment: "prod"}, true, ""},

		{"stack in scope", verifier.Scope{Environments: []string{"prod"}, Stacks: []string{verifiertest.StackA}}, evidence.Target{Environment: "prod", Stack: verifiertest.StackA}, true, ""},
		{"stack outside scope", verifier.Scope{Environments: []string{"prod"}, Stacks: []string{verifiertest.StackA}}, evidence.Target{Environment: "prod", Stack: stackB}, false, `stack "` + stackB + `"`},
		{"stack-scoped runner, record names no stack", verifier.Scope{Environments: []string{"prod"}, Stacks: []string{verifiertest.StackA}}, evidence.Target{Environment: "prod"}, false, "names neither"},
		{"stack-scoped runner, record names only a cluster", verifier.Scope{Environments: []string{"prod"}, Stacks: []string{verifiertest.StackA}}, evidence.Target{Environment: "prod", Cluster: "prod-eu-1"}, false, "names neither"},
		{"stack wildcard", verifier.Scope{Environments: []string{"prod"}, Stacks: []string{"*"}}, evidence.Target{Environment: "prod", Stack: stackB}, true, ""},
		{"environment checked before stack", verifier.Scope{Environments: []string{"dev"}, Stacks: []string{verifiertest.StackA}}, evidence.Target{Environment: "prod", Stack: verifiertest.StackA}, false, "environment"},

		{"cluster in scope", verifier.Scope{Environments: []string{"prod"}, Clusters: []string{"prod-eu-1"}}, evidence.Target{Environment: "prod", Cluster: "prod-eu-1"}, true, ""},
		{"cluster outside scope", verifier.Scope{Environments: []string{"prod"}, Clusters: []string{"prod-eu-1"}}, evidence.Target{Environment: "prod", Cluster: "prod-us-1"}, false, `cluster "prod-us-1"`},
		{"cluster-scoped runner, record names no cluster", verifier.Scope{Environments: []string{"prod"}, Clusters: []string{"prod-eu-1"}}, evidence.Target{Environment: "prod"}, false, "names neither"},
		{"cluster-scoped runner, record names only a stack", verifier.Scope{Environments: []string{"prod"}, Clusters: []string{"prod-eu-1"}}, evidence.Target{Environment: "prod", Stack: verifiertest.StackA}, false, "names neither"},
		{"cluster wildcard", verifier.Scope{Environments: []string{"prod"}, Clusters: []string{"*"}}, evidence.Target{Environment: "prod", Cluster: "x"}, true, ""},

		// Both restricted: naming one in scope is enough (a cluster-scoped
		// watcher's sync record names no stack), naming one outside is not.
		{"both restricted, stack only", verifier.Scope{Environments: []string{"prod"}, Stacks: []string{verifiertest.StackA}, Clusters: []string{"prod-eu-1"}}, evidence.Target{Environment: "prod", Stack: verifiertest.StackA}, true, ""},
		{"both restricted, cluster only", verifier.Scope{Environments: []string{"prod"}, Stacks: []string{verifiertest.StackA}, Clusters: []string{"prod-eu-1"}}, evidence.Target{Environment: "prod", Cluster: "prod-eu-1"}, true, ""},
		{"both restricted, both in scope", verifier.Scope{Environments: []string{"prod"}, Stacks: []string{verifiertest.StackA}, Clusters: []string{"prod-eu-1"}}, evidence.Target{Environment: "prod", Stack: verifiertest.StackA, Cluster: "prod-eu-1"}, true, ""},
		{"both restricted, stack out", verifier.Scope{Environments: []string{"prod"}, Stacks: []string{verifiertest.StackA}, Clusters: []string{"prod-eu-1"}}, evidence.Target{Environment: "prod", Stack: stackB, Cluster: "prod-eu-1"}, false, "stack"},
		{"both restricted, cluster out", verifier.Scope{Environments: []string{"prod"}, Stacks: []string{verifiertest.StackA}, Clusters: []string{"prod-eu-1"}}, evidence.Target{Environment: "prod", Stack: verifiertest.StackA, Cluster: "prod-us-1"}, false, "cluster"},
		{"both restricted, neither named", verifier.Scope{Environments: []string{"prod"}, Stacks: []string{verifiertest.StackA}, Clusters: []string{"prod-eu-1"}}, evidence.Target{Environment: "prod", Region: "eu-west-1"}, false, "names neither"},

		{"namespace in scope", verifier.Scope{Environments: []string{"prod"}, Clusters: []string{"prod-eu-1"}, Namespaces: []string{"orders", "payments"}}, evidence.Target{Environment: "prod", Cluster: "prod-eu-1", Namespace: "orders"}, true, ""},
		{"namespace outside scope", verifier.Scope{Environments: []string{"prod"}, Clusters: []string{"prod-eu-1"}, Namespaces: []string{"orders"}}, evidence.Target{Environment: "prod", Cluster: "prod-eu-1", Namespace: "kube-system"}, false, `namespace "kube-system"`},
		{"namespace-scoped runner, record names no namespace", verifier.Scope{Environments: []string{"prod"}, Namespaces: []string{"orders"}}, evidence.Target{Environment: "prod", Cluster: "prod-eu-1"}, false, "names none"},
		{"namespace wildcard", verifier.Scope{Environments: []string{"prod"}, Namespaces: []string{"*"}}, evidence.Target{Environment: "prod", Namespace: "x"}, true, ""},
		{"namespace in scope, cluster out", verifier.Scope{Environments: []string{"prod"}, Clusters: []string{"prod-eu-1"}, Namespaces: []string{"orders"}}, evidence.Target{Environment: "prod", Cluster: "prod-us-1", Namespace: "orders"}, false, "cluster"},

		{"unrestricted runner, stack and cluster named", verifier.Scope{Environments: []string{"prod"}}, evidence.Target{Environment: "prod", Stack: stackB, Cluster: "c"}, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := verifiertest.NewKey(t, "ed25519")
			v := verifiertest.MustNew(t, verifier.TrustConfig{Runners: []verifier.Runner{{Name: "r", PublicKey: k.PubPEM, Scope: c.scope}}}, nil)
			for _, kind := range []evidence.Kind{evidence.KindPlanCreated, evidence.KindSyncSucceeded} {
				_, err := v.Verify(verifiertest.Sign(t, k, verifiertest.PayloadOf(t, verifiertest.Transition(kind, "CHG-1", c.target))))
				switch {
				case c.ok && err != nil:
					t.Errorf("%s: err = %v, want accepted", kind, err)
				case !c.ok && !errors.Is(err, verifier.ErrOutOfScope):
					t.Errorf("%s: err = %v, want ErrOutOfScope", kind, err)
				case !c.ok && !strings.Contains(err.Error(), c.why):
					t.Errorf("%s: error %q does not say %q", kind, err, c.why)
				}
			}
		})
	}
}

func TestLogWideKinds(t *testing.T) {
	runnerKey := verifiertest.NewKey(t, "ed25519")
	logPriv := verifiertest.NewKey(t, "ed25519")
	v := verifiertest.MustNew(t, verifier.TrustConfig{Runners: []verifier.Runner{verifiertest.Runner("ci", runnerKey, "*")}}, logPriv.Priv.Public())

	for _, kind := range []evidence.Kind{evidence.KindBootstrap, evidence.KindTrustUpdated} {
		payload := verifiertest.PayloadOf(t, verifiertest.Transition(kind, "trust", evidence.Target{}))
		if _, err := v.Verify(verifiertest.Sign(t, runnerKey, payload)); !errors.Is(err, verifier.ErrOutOfScope) {
			t.Errorf("runner signing %s: err = %v, want ErrOutOfScope", kind, err)
		}
		got, err := v.Verify(verifiertest.Sign(t, logPriv, payload))
		if err != nil {
			t.Fatalf("log key signing %s: %v", kind, err)
		}
		if got.Signer != (verifier.Signer{Name: verifier.LogSigner, KeyID: logPriv.ID}) {
			t.Errorf("log record signer = %+v", got.Signer)
		}
	}
	// A runner with environment "*" still may not write a log-wide record
	// that names an environment.
	withEnv := verifiertest.Transition(evidence.KindTrustUpdated, "trust", verifiertest.Prod())
	if _, err := v.Verify(verifiertest.Sign(t, runnerKey, verifiertest.PayloadOf(t, withEnv))); !errors.Is(err, verifier.ErrOutOfScope) {
		t.Errorf("runner signing trust.updated with an environment: err = %v, want ErrOutOfScope", err)
	}
	// The log key signs nothing else.
	for _, kind := range []evidence.Kind{evidence.KindPlanCreated, evidence.KindSyncSucceeded, evidence.KindApplyCompleted} {
		if _, err := v.Verify(verifiertest.Sign(t, logPriv, verifiertest.PayloadOf(t, verifiertest.Transition(kind, "CHG-1", verifiertest.Prod())))); !errors.Is(err, verifier.ErrOutOfScope) {
			t.Errorf("log key signing %s: err = %v, want ErrOutOfScope", kind, err)
		}
	}
	// Without a log key, nobody may write log-wide records.
	noLog := verifiertest.MustNew(t, verifier.TrustConfig{Runners: []verifier.Runner{verifiertest.Runner("ci", runnerKey, "*")}}, nil)
	if _, err := noLog.Verify(verifiertest.Sign(t, logPriv, verifiertest.PayloadOf(t, verifiertest.Transition(evidence.KindBootstrap, "b", evidence.Target{})))); !errors.Is(err, verifier.ErrUntrusted) {
		t.Errorf("log key unknown to the verifier: err = %v, want ErrUntrusted", err)
	}
}

func TestNewRejects(t *testing.T) {
	a, b := verifiertest.NewKey(t, "ed25519"), verifiertest.NewKey(t, "ecdsa-p256")
	logKey := verifiertest.NewKey(t, "ed25519")
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pubPEM := func(k any) string {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	privPEM, _, _ := verifier.GenerateKey("ed25519")
	all := verifier.Scope{Environments: []string{"*"}}

	cases := []struct {
		name    string
		runners []verifier.Runner
		want    string
	}{
		{"duplicate key", []verifier.Runner{verifiertest.Runner("a", a, "*"), verifiertest.Runner("b", a, "*")}, "same public key"},
		{"duplicate key in another PEM encoding", []verifier.Runner{verifiertest.Runner("a", a, "*"), {Name: "b", PublicKey: "\n" + a.PubPEM + "\n", Scope: all}}, "same public key"},
		{"reserved name", []verifier.Runner{verifiertest.Runner(verifier.LogSigner, a, "*")}, "reserved"},
		{"empty name", []verifier.Runner{verifiertest.Runner("", a, "*")}, "name"},
		{"missing environments", []verifier.Runner{{Name: "a", PublicKey: a.PubPEM}}, "environments"},
		{"missing environments with stacks", []verifier.Runner{{Name: "a", PublicKey: a.PubPEM, Scope: verifier.Scope{Stacks: []string{"s"}}}}, "environments"},
		{"ECDSA P-384", []verifier.Runner{{Name: "a", PublicKey: pubPEM(&p384.PublicKey), Scope: all}}, "P-256"},
		{"RSA", []verifier.Runner{{Name: "a", PublicKey: pubPEM(&rsaKey.PublicKey), Scope: all}}, "unsupported"},
		{"private key PEM", []verifier.Runner{{Name: "a", PublicKey: string(privPEM), Scope: all}}, "PUBLIC KEY"},
		{"no PEM", []verifier.Runner{{Name: "a", PublicKey: "MCowBQYDK2VwAyEA", Scope: all}}, "PEM"},
		{"garbage DER", []verifier.Runner{{Name: "a", PublicKey: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", Scope: all}}, "public key"},
		{"runner holds the log key", []verifier.Runner{verifiertest.Runner("a", a, "*"), verifiertest.Runner("impostor", logKey, "*")}, "log"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := verifier.New(verifier.TrustConfig{Runners: c.runners}, logKey.Priv.Public())
			if err == nil {
				t.Fatalf("New accepted %+v", c.runners)
			}
			if v != nil {
				t.Error("New returned a verifier with its error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
	// The valid configuration the cases break.
	if _, err := verifier.New(verifier.TrustConfig{Runners: []verifier.Runner{verifiertest.Runner("a", a, "*"), verifiertest.Runner("b", b, "prod")}}, logKey.Priv.Public()); err != nil {
		t.Fatalf("New refused a valid configuration: %v", err)
	}
}

// TestLogKeyCannotSignAsRunner: even if a runner entry were given the log's
// key, the log key must not be able to sign change records.
func TestLogKeyCannotSignAsRunner(t *testing.T) {
	logKey := verifiertest.NewKey(t, "ed25519")
	v, err := verifier.New(verifier.TrustConfig{Runners: []verifier.Runner{verifiertest.Runner("impostor", logKey, "*")}}, logKey.Priv.Public())
	if err != nil {
		return // refused outright: fine
	}
	if _, err := v.Verify(verifiertest.Sign(t, logKey, verifiertest.Record(t, "CHG-1", verifiertest.Prod()))); err == nil {
		t.Fatal("the log key signed a change record")
	}
}

func TestTrustConfigCanonical(t *testing.T) {
	a := verifiertest.NewKey(t, "ed25519")
	cfg := verifier.TrustConfig{Runners: []verifier.Runner{{Name: "a", PublicKey: a.PubPEM, Scope: verifier.Scope{Environments: []string{"prod"}, Clusters: []string{"c"}}}}}
	b1, err := cfg.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := cfg.Canonical()
	if !bytes.Equal(b1, b2) || bytes.ContainsAny(b1, "\n") {
		t.Fatalf("Canonical is not stable compact JSON: %s", b1)
	}
	d, err := cfg.Digest()
	sum := sha256.Sum256(b1)
	if err != nil || d != hex.EncodeToString(sum[:]) {
		t.Errorf("Digest = %q, %v", d, err)
	}
	back, err := verifier.ParseTrustConfig(b1)
	if err != nil || !reflect.DeepEqual(back, cfg) {
		t.Errorf("ParseTrustConfig(Canonical()) = %+v, %v", back, err)
	}
	if _, err := verifier.ParseTrustConfig([]byte("{")); err == nil {
		t.Error("ParseTrustConfig accepted bad JSON")
	}
}

// TestCanonicalWithoutNamespaces pins the canonical encoding of a trust
// configuration written before scopes had namespaces: its digest, recorded in
// existing genesis entries, must not change.
func TestCanonicalWithoutNamespaces(t *testing.T) {
	c := verifier.TrustConfig{Runners: []verifier.Runner{{Name: "r", PublicKey: "k", Scope: verifier.Scope{Environments: []string{"prod"}, Clusters: []string{"c"}}}}}
	got, err := c.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"runners":[{"name":"r","publicKey":"k","scope":{"environments":["prod"],"clusters":["c"]}}]}`
	if string(got) != want {
		t.Errorf("canonical = %s, want %s", got, want)
	}
	c.Runners[0].Scope.Namespaces = []string{"orders"}
	got, _ = c.Canonical()
	if !strings.Contains(string(got), `"namespaces":["orders"]`) {
		t.Errorf("canonical with namespaces = %s", got)
	}
}
