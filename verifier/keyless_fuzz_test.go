package verifier_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
	"evident.dev/evident/verifier/keylesstest"
	"evident.dev/evident/verifier/verifiertest"
)

// FuzzVerifyBundle: Verify never panics on a Sigstore bundle, every refusal
// wraps a documented error, and an accepted bundle is the trusted identity's.
func FuzzVerifyBundle(f *testing.F) {
	s := newSigstore(f)
	v := verifiertest.MustNew(f, keylessTrust(f, s), nil)
	good := bundleOf(f, s, carol, googleIss, verifiertest.Record(f, "CHG-1", verifiertest.Prod()), keylesstest.Options{})
	f.Add(good)
	f.Add(bundleOf(f, s, carol, googleIss, verifiertest.Record(f, "CHG-1", verifiertest.Prod()), keylesstest.Options{NoTlog: true}))
	f.Add(bundleOf(f, s, ciIdentity, ghIssuer, verifiertest.Record(f, "CHG-1", verifiertest.Prod()), keylesstest.Options{NoTimestamp: true}))
	f.Add(good[:len(good)/2])
	f.Add(bytes.Replace(good, []byte(`"mediaType"`), []byte(`"mediaType":"x","m"`), 1))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{},"dsseEnvelope":{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"AAAA"}]}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := v.Verify(raw)
		if err != nil {
			var invalid *evidence.ValidationError
			if !errors.Is(err, verifier.ErrMalformed) && !errors.Is(err, verifier.ErrUntrusted) &&
				!errors.Is(err, verifier.ErrOutOfScope) && !errors.As(err, &invalid) && !errors.Is(err, evidence.ErrMalformed) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		if got.Keyless && got.Signer.Name != carol && got.Signer.Name != ciIdentity {
			t.Fatalf("accepted a bundle by %+v", got.Signer)
		}
	})
}

// FuzzAdmitArtifact: arbitrary signature and provenance bundles never panic
// the admission and never pass for a good one.
func FuzzAdmitArtifact(f *testing.F) {
	s := newSigstore(f)
	root, err := s.TrustedRoot()
	if err != nil {
		f.Fatal(err)
	}
	v := verifiertest.MustNew(f, verifier.TrustConfig{Sigstore: &verifier.SigstoreTrust{TrustedRoot: root},
		Artifacts: &verifier.ArtifactTrust{Builders: []string{"b"}, ProtectedBranches: []string{"main"}}}, nil)
	sig := bundleOf(f, s, ciIdentity, ghIssuer, verifiertest.Record(f, "CHG-1", verifiertest.Prod()), keylesstest.Options{})
	f.Add(sig, sig)
	f.Add([]byte(`{}`), []byte(`{"dsseEnvelope":{"payload":"e30="}}`))
	f.Add([]byte(`{"mediaType":1}`), []byte(`[]`))
	f.Fuzz(func(t *testing.T, sigBundle, provBundle []byte) {
		p := evidence.Transition{Kind: evidence.KindArtifactAdmitted, Source: evidence.Source{Repository: "r", CommitSHA: verifiertest.Commit},
			ArtifactAdmission: &evidence.ArtifactAdmission{Image: "registry.example.com/app", Digest: "sha256:" + verifiertest.Plan, Result: "admitted",
				SignatureBundle: json.RawMessage(sigBundle), ProvenanceBundle: json.RawMessage(provBundle)}}
		if fs := v.AdmitArtifact(p); len(fs) == 0 {
			t.Fatal("arbitrary bundles admitted an image with no finding")
		}
	})
}
