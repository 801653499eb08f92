package verifier_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
)

// stackA is the stack the scoped runners of these tests may apply to.
const stackA = "prod/aws/payments/rds-orders"

// testKey is a signing key with the forms the tests need.
type testKey struct {
	priv   crypto.Signer
	pubPEM string
	id     string // hex SHA-256 of the PKIX DER, computed here independently
}

// newKey generates a key through the package's own API, as a runner would.
func newKey(t testing.TB, alg string) testKey {
	t.Helper()
	privPEM, pubPEM, err := verifier.GenerateKey(alg)
	if err != nil {
		t.Fatalf("GenerateKey(%q): %v", alg, err)
	}
	priv, err := verifier.ParsePrivateKey(privPEM)
	if err != nil {
		t.Fatalf("ParsePrivateKey: %v", err)
	}
	return keyOf(t, priv, string(pubPEM))
}

// fixedKey derives a key deterministically from a name, so fuzz workers and
// seed corpora agree on it.
func fixedKey(t testing.TB, alg, name string) testKey {
	t.Helper()
	seed := sha256.Sum256([]byte(name))
	var priv crypto.Signer
	switch alg {
	case "ed25519":
		priv = ed25519.NewKeyFromSeed(seed[:])
	case "ecdsa-p256":
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), seed[:])
		if err != nil {
			t.Fatalf("derive P-256 key: %v", err)
		}
		priv = k
	default:
		t.Fatalf("unknown alg %q", alg)
	}
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return keyOf(t, priv, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
}

func keyOf(t testing.TB, priv crypto.Signer, pubPEM string) testKey {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return testKey{priv: priv, pubPEM: pubPEM, id: hex.EncodeToString(sum[:])}
}

func runner(name string, k testKey, envs ...string) verifier.Runner {
	return verifier.Runner{Name: name, PublicKey: k.pubPEM, Scope: verifier.Scope{Environments: envs}}
}

var testTime = time.Date(2026, 7, 3, 8, 52, 31, 0, time.UTC)

const (
	testCommit = "8fb2d7e2705ca5b1f48ba233dc28daaccb8f5480"
	testPlan   = "9e4ae5643818e741d99a703defa2646920c1a300753ac914e144e98730fb50a1"
)

// transition returns a valid predicate of the kind for the target.
func transition(kind evidence.Kind, changeID string, tg evidence.Target) evidence.Transition {
	t := evidence.Transition{
		Kind:       kind,
		ChangeID:   changeID,
		OccurredAt: testTime,
		Actor:      "repo:example/infra-live:pull_request",
		Source:     evidence.Source{Repository: "infra-live", CommitSHA: testCommit, PullRequest: 4812},
		Target:     tg,
	}
	switch kind {
	case evidence.KindPlanCreated:
		t.Plan = &evidence.Plan{PlanSHA256: testPlan, Engine: "opentofu"}
	case evidence.KindSyncSucceeded:
		t.Sync = &evidence.Sync{Revision: testCommit}
	case evidence.KindVerificationCompleted:
		t.Verification = &evidence.Verification{Result: "pass"}
	case evidence.KindApplyCompleted:
		t.Apply = &evidence.Apply{PlanSHA256: testPlan}
	case evidence.KindBootstrap:
		t.Source, t.Target = evidence.Source{}, evidence.Target{}
		t.Bootstrap = &evidence.Bootstrap{
			Operator: "erin", LogOrigin: "evident.test/log", LogKey: "evident.test/log+00000000+AQ==",
			TrustDigest: testPlan, Trust: json.RawMessage(`{"runners":[]}`),
		}
	case evidence.KindTrustUpdated:
		t.Source, t.Target = evidence.Source{}, evidence.Target{}
		t.Trust = &evidence.Trust{Digest: testPlan, Config: json.RawMessage(`{"runners":[]}`)}
	default:
		panic("transition: no block for " + kind)
	}
	return t
}

// payloadOf encodes a statement carrying the predicate.
func payloadOf(t testing.TB, p evidence.Transition) []byte {
	t.Helper()
	st := evidence.Statement{
		Type:          evidence.StatementType,
		Subject:       []evidence.Subject{{Name: "plan", Digest: map[string]string{"sha256": testPlan}}},
		PredicateType: evidence.PredicateType,
		Predicate:     p,
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// record is a valid payload: a plan in the environment.
func record(t testing.TB, changeID string, tg evidence.Target) []byte {
	return payloadOf(t, transition(evidence.KindPlanCreated, changeID, tg))
}

func prod() evidence.Target { return evidence.Target{Environment: "prod"} }

func sign(t testing.TB, k testKey, payload []byte) []byte {
	t.Helper()
	env, err := verifier.SignEnvelope(k.priv, payload)
	if err != nil {
		t.Fatalf("SignEnvelope: %v", err)
	}
	return env
}

func decodeEnv(t testing.TB, raw []byte) dsse.Envelope {
	t.Helper()
	var env dsse.Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("decode envelope: %v", err)
	}
	return env
}

func encodeEnv(t testing.TB, env dsse.Envelope) []byte {
	t.Helper()
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// editEnv decodes an envelope, lets fn change it and encodes it again.
func editEnv(t testing.TB, raw []byte, fn func(*dsse.Envelope)) []byte {
	t.Helper()
	env := decodeEnv(t, raw)
	fn(&env)
	return encodeEnv(t, env)
}

func mustNew(t testing.TB, cfg verifier.TrustConfig, logKey crypto.PublicKey) *verifier.Verifier {
	t.Helper()
	v, err := verifier.New(cfg, logKey)
	if err != nil {
		t.Fatalf("verifier.New: %v", err)
	}
	return v
}

// pae is the DSSE pre-authentication encoding, written out from the spec.
func pae(payloadType string, payload []byte) []byte {
	return fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload)
}
