// Package verifiertest makes keys and signed records for the tests of the
// packages that verify them (verifier, audit): one set of helpers, so the
// two packages' tests build records the same way.
package verifiertest

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

	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
)

// StackA is the stack the scoped runners of these tests may apply to.
const StackA = "prod/aws/payments/rds-orders"

// Key is a signing key with the forms the tests need.
type Key struct {
	Priv   crypto.Signer
	PubPEM string
	ID     string // hex SHA-256 of the PKIX DER, computed here independently
}

// NewKey generates a key through the package's own API, as a runner would.
func NewKey(t testing.TB, alg string) Key {
	t.Helper()
	privPEM, pubPEM, err := verifier.GenerateKey(alg)
	if err != nil {
		t.Fatalf("GenerateKey(%q): %v", alg, err)
	}
	priv, err := verifier.ParsePrivateKey(privPEM)
	if err != nil {
		t.Fatalf("ParsePrivateKey: %v", err)
	}
	return KeyOf(t, priv, string(pubPEM))
}

// FixedKey derives a key deterministically from a name, so fuzz workers and
// seed corpora agree on it.
func FixedKey(t testing.TB, alg, name string) Key {
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
	return KeyOf(t, priv, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
}

func KeyOf(t testing.TB, priv crypto.Signer, pubPEM string) Key {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return Key{Priv: priv, PubPEM: pubPEM, ID: hex.EncodeToString(sum[:])}
}

func Runner(name string, k Key, envs ...string) verifier.Runner {
	return verifier.Runner{Name: name, PublicKey: k.PubPEM, Scope: verifier.Scope{Environments: envs}}
}

var Time = time.Date(2026, 7, 3, 8, 52, 31, 0, time.UTC)

const (
	Commit = "8fb2d7e2705ca5b1f48ba233dc28daaccb8f5480"
	Plan   = "9e4ae5643818e741d99a703defa2646920c1a300753ac914e144e98730fb50a1"
)

// Transition returns a valid predicate of the kind for the target.
func Transition(kind evidence.Kind, changeID string, tg evidence.Target) evidence.Transition {
	t := evidence.Transition{
		Kind:       kind,
		ChangeID:   changeID,
		OccurredAt: Time,
		Actor:      "repo:example/infra-live:pull_request",
		Source:     evidence.Source{Repository: "infra-live", CommitSHA: Commit, PullRequest: 4812},
		Target:     tg,
	}
	switch kind {
	case evidence.KindPlanCreated:
		t.Plan = &evidence.Plan{PlanSHA256: Plan, Engine: "opentofu"}
	case evidence.KindSyncSucceeded:
		t.Sync = &evidence.Sync{Revision: Commit}
	case evidence.KindVerificationCompleted:
		t.Verification = &evidence.Verification{Result: "pass"}
	case evidence.KindApplyCompleted:
		t.Apply = &evidence.Apply{PlanSHA256: Plan}
	case evidence.KindBootstrap:
		t.Source, t.Target = evidence.Source{}, evidence.Target{}
		t.Bootstrap = &evidence.Bootstrap{
			Operator: "erin", LogOrigin: "evident.test/log", LogKey: "evident.test/log+00000000+AQ==",
			TrustDigest: Plan, Trust: json.RawMessage(`{"runners":[]}`),
		}
	case evidence.KindTrustUpdated:
		t.Source, t.Target = evidence.Source{}, evidence.Target{}
		t.Trust = &evidence.Trust{Digest: Plan, Config: json.RawMessage(`{"runners":[]}`)}
	default:
		panic("transition: no block for " + kind)
	}
	return t
}

// PayloadOf encodes a statement carrying the predicate.
func PayloadOf(t testing.TB, p evidence.Transition) []byte {
	t.Helper()
	st := evidence.Statement{
		Type:          evidence.StatementType,
		Subject:       []evidence.Subject{{Name: "plan", Digest: map[string]string{"sha256": Plan}}},
		PredicateType: evidence.PredicateType,
		Predicate:     p,
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Record is a valid payload: a plan in the environment.
func Record(t testing.TB, changeID string, tg evidence.Target) []byte {
	return PayloadOf(t, Transition(evidence.KindPlanCreated, changeID, tg))
}

func Prod() evidence.Target { return evidence.Target{Environment: "prod"} }

func Sign(t testing.TB, k Key, payload []byte) []byte {
	t.Helper()
	env, err := verifier.SignEnvelope(k.Priv, payload)
	if err != nil {
		t.Fatalf("SignEnvelope: %v", err)
	}
	return env
}

// PAE is the DSSE pre-authentication encoding, written out from the spec.
func PAE(payloadType string, payload []byte) []byte {
	return fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload)
}

func MustNew(t testing.TB, cfg verifier.TrustConfig, logKey crypto.PublicKey) *verifier.Verifier {
	t.Helper()
	v, err := verifier.New(cfg, logKey)
	if err != nil {
		t.Fatalf("verifier.New: %v", err)
	}
	return v
}
