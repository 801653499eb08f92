package verifier_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"testing"

	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
	"evident.dev/evident/verifier/keylesstest"
	"evident.dev/evident/verifier/verifiertest"
)

const (
	releaseIdentity = "https://github.com/example/orders/.github/workflows/release.yml@refs/heads/main"
	slsaBuilder     = "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.1.0"
	ordersRepo      = "github.com/example/orders"
	ordersCommit    = "9d4c9b9355473afc8dad1fe284545e62953ba53a"
	ordersImage     = "registry.example.com/payments/orders"
)

// artifactFixture is a virtual Sigstore, a trust configuration expecting
// the orders release workflow to sign and the SLSA generator to build, and a
// verifier for it.
type artifactFixture struct {
	t      *testing.T
	s      *keylesstest.Sigstore
	runner verifiertest.Key
	v      *verifier.Verifier
	digest string // hex
}

func newArtifactFixture(t *testing.T) *artifactFixture {
	f := &artifactFixture{t: t, s: newSigstore(t), runner: verifiertest.NewKey(t, "ed25519")}
	root, err := f.s.TrustedRoot()
	if err != nil {
		t.Fatal(err)
	}
	f.v = verifiertest.MustNew(t, verifier.TrustConfig{
		Runners:  []verifier.Runner{verifiertest.Runner("supply-chain-gate", f.runner, "*")},
		Sigstore: &verifier.SigstoreTrust{TrustedRoot: root},
		Artifacts: &verifier.ArtifactTrust{
			Signers:           []verifier.ArtifactSigner{{Repository: ordersRepo, SANRegexp: `https://github\.com/example/orders/\.github/workflows/[a-z]+\.yml@refs/heads/main`, Issuer: ghIssuer}},
			Builders:          []string{slsaBuilder},
			ProtectedBranches: []string{"main"},
		},
	}, nil)
	sum := sha256.Sum256([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`))
	f.digest = hex.EncodeToString(sum[:])
	return f
}

// statementAbout is an in-toto statement about the image digest.
func (f *artifactFixture) statementAbout(digest, predicateType string, predicate any) []byte {
	b, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []map[string]any{{"name": ordersImage, "digest": map[string]string{"sha256": digest}}},
		"predicateType": predicateType,
		"predicate":     predicate,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

// signature is cosign's signature of the image digest, as a bundle.
func (f *artifactFixture) signature(identity, digest string) json.RawMessage {
	return bundleOf(f.t, f.s, identity, ghIssuer, f.statementAbout(digest, "https://sigstore.dev/cosign/sign/v1", map[string]any{}), keylesstest.Options{})
}

// provenance is a SLSA v1 provenance attestation of the image.
func (f *artifactFixture) provenance(builder, ref, commit string) json.RawMessage {
	pred := map[string]any{
		"buildDefinition": map[string]any{
			"buildType":          "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
			"externalParameters": map[string]any{"workflow": map[string]any{"ref": ref, "repository": "https://github.com/example/orders", "path": ".github/workflows/release.yml"}},
			"resolvedDependencies": []map[string]any{{
				"uri": "git+https://github.com/example/orders@" + ref, "digest": map[string]string{"gitCommit": commit},
			}},
		},
		"runDetails": map[string]any{"builder": map[string]any{"id": builder}},
	}
	return bundleOf(f.t, f.s, slsaBuilder, ghIssuer, f.statementAbout(f.digest, "https://slsa.dev/provenance/v1", pred), keylesstest.Options{})
}

// admit signs an artifact.admitted record with the gate runner's key,
// verifies it as ingest does, and returns the admission findings.
func (f *artifactFixture) admit(edit func(*evidence.Transition)) []string {
	f.t.Helper()
	p := evidence.Transition{
		Kind: evidence.KindArtifactAdmitted, ChangeID: "REL-orders-1.4.0", OccurredAt: verifiertest.Time, Actor: "supply-chain-gate",
		Source: evidence.Source{Repository: ordersRepo, CommitSHA: ordersCommit, Branch: "main"},
		Target: evidence.Target{Environment: "prod", Cluster: "prod-eu-1", Application: "orders"},
		ArtifactAdmission: &evidence.ArtifactAdmission{
			Image: ordersImage, Digest: "sha256:" + f.digest, Signed: true, Result: "admitted",
			SignatureBundle:  f.signature(releaseIdentity, f.digest),
			ProvenanceBundle: f.provenance(slsaBuilder, "refs/heads/main", ordersCommit),
		},
	}
	if edit != nil {
		edit(&p)
	}
	got, err := f.v.Verify(verifiertest.Sign(f.t, f.runner, verifiertest.PayloadOf(f.t, p)))
	if err != nil {
		f.t.Fatalf("Verify: %v", err)
	}
	var codes []string
	for _, fd := range f.v.AdmitArtifact(got.Statement.Predicate) {
		codes = append(codes, fd.Code)
	}
	return codes
}

func TestArtifactAdmission(t *testing.T) {
	f := newArtifactFixture(t)
	if got := f.admit(nil); len(got) != 0 {
		t.Fatalf("an image signed by the expected identity with trusted provenance: findings %v, want none", got)
	}
	other := sha256.Sum256([]byte("another image"))
	for _, tc := range []struct {
		name string
		edit func(*evidence.Transition)
		want []string
	}{
		{"mutable tag", func(p *evidence.Transition) { p.ArtifactAdmission.Image = ordersImage + ":1.4.0" },
			[]string{verifier.FindingArtifactMutableTag}},
		{"unsigned", func(p *evidence.Transition) { p.ArtifactAdmission.SignatureBundle = nil },
			[]string{verifier.FindingArtifactUnsigned}},
		{"signature of another image", func(p *evidence.Transition) {
			p.ArtifactAdmission.SignatureBundle = f.signature(releaseIdentity, hex.EncodeToString(other[:]))
		}, []string{verifier.FindingArtifactUnsigned}},
		{"signature from another Sigstore", func(p *evidence.Transition) {
			g := newArtifactFixture(t)
			g.digest = f.digest
			p.ArtifactAdmission.SignatureBundle = g.signature(releaseIdentity, f.digest)
		}, []string{verifier.FindingArtifactUnsigned}},
		{"unexpected signer", func(p *evidence.Transition) {
			p.ArtifactAdmission.SignatureBundle = f.signature("https://github.com/example/orders/.github/workflows/release.yml@refs/heads/feature", f.digest)
		}, []string{verifier.FindingArtifactUnexpectedSigner}},
		{"no signer configured for the repository", func(p *evidence.Transition) { p.Source.Repository = "github.com/example/other" },
			[]string{verifier.FindingArtifactUnexpectedSigner}},
		{"no provenance", func(p *evidence.Transition) { p.ArtifactAdmission.ProvenanceBundle = nil },
			[]string{verifier.FindingArtifactNoProvenance}},
		{"untrusted builder", func(p *evidence.Transition) {
			p.ArtifactAdmission.ProvenanceBundle = f.provenance("https://builder.example/laptop", "refs/heads/main", ordersCommit)
		}, []string{verifier.FindingArtifactUntrustedBuilder}},
		{"unprotected branch", func(p *evidence.Transition) {
			p.ArtifactAdmission.ProvenanceBundle = f.provenance(slsaBuilder, "refs/heads/feature-x", ordersCommit)
		}, []string{verifier.FindingArtifactUnprotectedBranch}},
		{"commit mismatch", func(p *evidence.Transition) { p.Source.CommitSHA = verifiertest.Commit },
			[]string{verifier.FindingArtifactCommitMismatch}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := f.admit(tc.edit)
			if !slices.Equal(got, tc.want) {
				t.Errorf("findings %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSyncMutableTag(t *testing.T) {
	f := newArtifactFixture(t)
	p := verifiertest.Transition(evidence.KindSyncSucceeded, "REL-orders-1.4.0", verifiertest.Prod())
	p.Artifacts = []evidence.Artifact{
		{Name: "orders", Digest: "sha256:" + f.digest, URI: ordersImage + "@sha256:" + f.digest},
	}
	got, err := f.v.Verify(verifiertest.Sign(t, f.runner, verifiertest.PayloadOf(t, p)))
	if err != nil {
		t.Fatal(err)
	}
	if fs := f.v.AdmitArtifact(got.Statement.Predicate); len(fs) != 0 {
		t.Errorf("sync by digest: %+v", fs)
	}
	p.Artifacts = append(p.Artifacts, evidence.Artifact{Name: "sidecar", Digest: "sha256:" + f.digest, URI: "registry.example.com/mesh/proxy:latest"})
	got, err = f.v.Verify(verifiertest.Sign(t, f.runner, verifiertest.PayloadOf(t, p)))
	if err != nil {
		t.Fatal(err)
	}
	fs := f.v.AdmitArtifact(got.Statement.Predicate)
	if len(fs) != 1 || fs[0].Code != verifier.FindingArtifactMutableTag || fs[0].Evidence["image"] != "registry.example.com/mesh/proxy:latest" {
		t.Errorf("sync by tag: %+v", fs)
	}
}
