package verifier_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
	"evident.dev/evident/verifier/keylesstest"
	"evident.dev/evident/verifier/verifiertest"
)

const (
	ciIdentity = "https://github.com/example/infra-live/.github/workflows/apply.yml@refs/heads/main"
	ghIssuer   = "https://token.actions.githubusercontent.com"
	carol      = "carol@example.com"
	googleIss  = "https://accounts.google.com"
)

func newSigstore(t testing.TB) *keylesstest.Sigstore {
	t.Helper()
	s, err := keylesstest.New()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func keylessTrust(t testing.TB, s *keylesstest.Sigstore) verifier.TrustConfig {
	t.Helper()
	root, err := s.TrustedRoot()
	if err != nil {
		t.Fatal(err)
	}
	return verifier.TrustConfig{
		Identities: []verifier.Identity{
			{Name: "apply-workflow", SANRegexp: `https://github\.com/example/infra-live/\.github/workflows/[a-z]+\.yml@refs/heads/main`,
				Issuer: ghIssuer, Scope: verifier.Scope{Environments: []string{"prod"}}},
			{Name: "carol", SAN: carol, Issuer: googleIss, Scope: verifier.Scope{Environments: []string{"*"}}},
		},
		Sigstore: &verifier.SigstoreTrust{TrustedRoot: root},
	}
}

func bundleOf(t testing.TB, s *keylesstest.Sigstore, identity, issuer string, payload []byte, o keylesstest.Options) []byte {
	t.Helper()
	b, err := s.Bundle(identity, issuer, payload, o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKeylessBundleVerifies(t *testing.T) {
	s := newSigstore(t)
	v := verifiertest.MustNew(t, keylessTrust(t, s), nil)
	payload := verifiertest.Record(t, "CHG-1", verifiertest.Prod())
	raw := bundleOf(t, s, ciIdentity, ghIssuer, payload, keylesstest.Options{})
	got, err := v.Verify(raw)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Signer.Name != ciIdentity || got.Signer.Issuer != ghIssuer {
		t.Errorf("signer = %+v, want the certificate identity", got.Signer)
	}
	// KeyID is the hex SHA-256 of the leaf certificate's DER, computed here
	// from the bundle independently.
	var b struct {
		VerificationMaterial struct {
			Certificate struct {
				RawBytes string `json:"rawBytes"`
			} `json:"certificate"`
		} `json:"verificationMaterial"`
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	der, err := base64.StdEncoding.DecodeString(b.VerificationMaterial.Certificate.RawBytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParseCertificate(der); err != nil {
		t.Fatalf("bundle certificate: %v", err)
	}
	sum := sha256.Sum256(der)
	if got.Signer.KeyID != hex.EncodeToString(sum[:]) {
		t.Errorf("keyId = %s, want sha256 of the certificate", got.Signer.KeyID)
	}
	if got.Digest != sha256.Sum256(verifiertest.PAE(evidence.PayloadType, payload)) {
		t.Error("digest is not SHA-256 of the PAE")
	}
	if !bytes.Equal(got.Payload, payload) || got.Statement.Predicate.ChangeID != "CHG-1" || !got.Keyless {
		t.Errorf("verified = %+v", got)
	}
	// The statement reads back from the stored form (the bundle itself).
	e := &evidence.Entry{Envelope: raw}
	st, err := e.Statement()
	if err != nil || st.Predicate.ChangeID != "CHG-1" {
		t.Fatalf("Entry.Statement of a bundle: %v, %+v", err, st)
	}

	// A person's e-mail identity is its own approver.
	ap := bundleOf(t, s, carol, googleIss, payload, keylesstest.Options{})
	got, err = v.Verify(ap)
	if err != nil {
		t.Fatal(err)
	}
	if got.Approver != carol || got.Signer.Name != carol {
		t.Errorf("approver = %q, signer = %+v", got.Approver, got.Signer)
	}
}

func TestKeylessRefusals(t *testing.T) {
	s := newSigstore(t)
	other := newSigstore(t)
	trust := keylessTrust(t, s)
	v := verifiertest.MustNew(t, trust, nil)
	payload := verifiertest.Record(t, "CHG-1", verifiertest.Prod())
	good := bundleOf(t, s, ciIdentity, ghIssuer, payload, keylesstest.Options{})

	tamper := func(raw []byte) []byte {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		env := m["dsseEnvelope"].(map[string]any)
		p := bytes.Replace(payload, []byte("CHG-1"), []byte("CHG-2"), 1)
		env["payload"] = base64.StdEncoding.EncodeToString(p)
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	tsOnly := trust
	tsOnly.Sigstore = &verifier.SigstoreTrust{TrustedRoot: trust.Sigstore.TrustedRoot, AllowTimestampOnly: true}
	vTS := verifiertest.MustNew(t, tsOnly, nil)

	for _, tc := range []struct {
		name string
		v    *verifier.Verifier
		raw  []byte
		want error
		msg  string
	}{
		{"wrong identity", v, bundleOf(t, s, "https://github.com/example/other/.github/workflows/x.yml@refs/heads/main", ghIssuer, payload, keylesstest.Options{}), verifier.ErrUntrusted, "not in the trust configuration"},
		{"regexp is anchored", v, bundleOf(t, s, ciIdentity+".evil", ghIssuer, payload, keylesstest.Options{}), verifier.ErrUntrusted, "not in the trust configuration"},
		{"wrong issuer", v, bundleOf(t, s, ciIdentity, "https://issuer.example", payload, keylesstest.Options{}), verifier.ErrUntrusted, "issuer"},
		{"tampered payload", v, tamper(good), verifier.ErrUntrusted, "payload"},
		{"no tlog entry", v, bundleOf(t, s, ciIdentity, ghIssuer, payload, keylesstest.Options{NoTlog: true}), verifier.ErrUntrusted, "transparency log"},
		{"certificate expired when logged, no timestamp", v, bundleOf(t, s, ciIdentity, ghIssuer, payload,
			keylesstest.Options{NoTimestamp: true, LoggedAt: time.Now().Add(30 * time.Minute)}), verifier.ErrUntrusted, "certificate"},
		{"no timestamp at all", vTS, bundleOf(t, s, ciIdentity, ghIssuer, payload, keylesstest.Options{NoTlog: true, NoTimestamp: true}), verifier.ErrUntrusted, "timestamp"},
		{"untrusted root", v, bundleOf(t, other, ciIdentity, ghIssuer, payload, keylesstest.Options{}), verifier.ErrUntrusted, ""},
		{"out of scope", v, bundleOf(t, s, ciIdentity, ghIssuer, verifiertest.Record(t, "CHG-1", evidence.Target{Environment: "dev"}), keylesstest.Options{}), verifier.ErrOutOfScope, "dev"},
		{"no keyless trust", verifiertest.MustNew(t, verifier.TrustConfig{}, nil), good, verifier.ErrUntrusted, "no keyless identities"},
		{"not a bundle", v, []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","bogus":1}`), verifier.ErrMalformed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.v.Verify(tc.raw)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}

	// With timestamps allowed instead of the log, a bundle with a signed
	// timestamp and no tlog entry verifies.
	if _, err := vTS.Verify(bundleOf(t, s, ciIdentity, ghIssuer, payload, keylesstest.Options{NoTlog: true})); err != nil {
		t.Errorf("timestamp-only bundle with allowTimestampOnly: %v", err)
	}
}

func TestKeylessTrustConfig(t *testing.T) {
	s := newSigstore(t)
	good := keylessTrust(t, s)
	// Old configurations keep their canonical bytes: new fields are omitted.
	old := verifier.TrustConfig{Runners: []verifier.Runner{}}
	b, err := old.Canonical()
	if err != nil || string(b) != `{"runners":[]}` {
		t.Errorf("canonical of a runners-only config = %s, %v", b, err)
	}
	// The keyless trust round-trips through its canonical form (as CheckLog
	// rebuilds it from the log).
	b, err = good.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	back, err := verifier.ParseTrustConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	v := verifiertest.MustNew(t, back, nil)
	if _, err := v.Verify(bundleOf(t, s, carol, googleIss, verifiertest.Record(t, "C", verifiertest.Prod()), keylesstest.Options{})); err != nil {
		t.Errorf("verify with the re-parsed trust: %v", err)
	}
	for name, edit := range map[string]func(*verifier.TrustConfig){
		"no root": func(c *verifier.TrustConfig) { c.Sigstore = nil },
		"bad root": func(c *verifier.TrustConfig) {
			c.Sigstore = &verifier.SigstoreTrust{TrustedRoot: json.RawMessage(`{}`)}
		},
		"no issuer":     func(c *verifier.TrustConfig) { c.Identities[0].Issuer = "" },
		"both sans":     func(c *verifier.TrustConfig) { c.Identities[1].SANRegexp = ".*" },
		"bad regexp":    func(c *verifier.TrustConfig) { c.Identities[0].SANRegexp = "(" },
		"no scope":      func(c *verifier.TrustConfig) { c.Identities[0].Scope = verifier.Scope{} },
		"reserved name": func(c *verifier.TrustConfig) { c.Identities[0].Name = verifier.LogSigner },
	} {
		c := keylessTrust(t, s)
		edit(&c)
		if _, err := verifier.New(c, nil); err == nil {
			t.Errorf("%s: New accepted the configuration", name)
		}
	}
}

// BenchmarkVerifyBundle is the cost of authenticating one keyless record
// (ingest, and evident verify re-checking a log offline).
func BenchmarkVerifyBundle(b *testing.B) {
	s := newSigstore(b)
	v := verifiertest.MustNew(b, keylessTrust(b, s), nil)
	raw := bundleOf(b, s, carol, googleIss, verifiertest.Record(b, "CHG-1", verifiertest.Prod()), keylesstest.Options{})
	for b.Loop() {
		if _, err := v.Verify(raw); err != nil {
			b.Fatal(err)
		}
	}
}
