package verifier

import (
	"cmp"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"evident.dev/evident/evidence"
)

// Finding codes of artifact admission.
const (
	FindingArtifactMutableTag         = "artifact.mutable-tag"
	FindingArtifactUnsigned           = "artifact.unsigned"
	FindingArtifactUnexpectedSigner   = "artifact.unexpected-signer"
	FindingArtifactNoProvenance       = "artifact.no-provenance"
	FindingArtifactUntrustedBuilder   = "artifact.untrusted-builder"
	FindingArtifactUnprotectedBranch  = "artifact.unprotected-branch"
	FindingArtifactCommitMismatch     = "artifact.commit-mismatch"
	provenancePredicateV1             = "https://slsa.dev/provenance/v1"
	provenancePredicateV02            = "https://slsa.dev/provenance/v0.2"
	maxArtifactSignersPerRepo         = 16
	artifactSignerRepositoryMaxLength = 512
)

// ArtifactTrust is what artifact admission trusts: who is expected to sign
// the images of each source repository, which SLSA builders, and which
// branches are protected.
type ArtifactTrust struct {
	Signers []ArtifactSigner `json:"signers,omitempty" yaml:"signers"`
	// Builders are trusted SLSA builder ids (provenance builder.id).
	Builders []string `json:"builders,omitempty" yaml:"builders"`
	// ProtectedBranches are branch names ("main") or full refs
	// ("refs/heads/main") images may be built from.
	ProtectedBranches []string `json:"protectedBranches,omitempty" yaml:"protectedBranches"`
}

// ArtifactSigner is the certificate identity expected to sign the images
// built from Repository (as the record's source.repository names it).
type ArtifactSigner struct {
	Repository string `json:"repository" yaml:"repository"`
	SAN        string `json:"san,omitempty" yaml:"san"`
	SANRegexp  string `json:"sanRegexp,omitempty" yaml:"sanRegexp"`
	Issuer     string `json:"issuer" yaml:"issuer"`
}

type artifactTrust struct {
	signers   map[string][]trustedIdentity
	builders  []string
	protected []string
}

func newArtifactTrust(cfg *ArtifactTrust) (*artifactTrust, error) {
	if cfg == nil {
		return &artifactTrust{}, nil
	}
	at := &artifactTrust{signers: map[string][]trustedIdentity{}, builders: cfg.Builders, protected: cfg.ProtectedBranches}
	for i, s := range cfg.Signers {
		where := fmt.Sprintf("trust.artifacts.signers[%d]", i)
		if s.Repository == "" || len(s.Repository) > artifactSignerRepositoryMaxLength || s.Issuer == "" || (s.SAN == "") == (s.SANRegexp == "") {
			return nil, fmt.Errorf("%s: repository, issuer and exactly one of san and sanRegexp are required", where)
		}
		id := trustedIdentity{name: s.Repository, san: s.SAN, issuer: s.Issuer}
		if s.SANRegexp != "" {
			re, err := regexp.Compile(`^(?:` + s.SANRegexp + `)$`)
			if err != nil {
				return nil, fmt.Errorf("%s: sanRegexp: %w", where, err)
			}
			id.sanRE = re
		}
		if len(at.signers[s.Repository]) >= maxArtifactSignersPerRepo {
			return nil, fmt.Errorf("%s: at most %d signers per repository", where, maxArtifactSignersPerRepo)
		}
		at.signers[s.Repository] = append(at.signers[s.Repository], id)
	}
	return at, nil
}

// AdmitArtifact computes the supply-chain findings of an artifact.admitted
// or sync.* record: pure, from the record and the trust configuration. An
// admission with no finding is an image referenced by digest, signed over
// that digest by the identity expected for its source repository (Sigstore,
// with a Rekor inclusion proof or signed timestamp as for keyless records),
// with a SLSA provenance attestation about that digest from a trusted
// builder, built from a protected branch at the commit the release names.
func (v *Verifier) AdmitArtifact(t evidence.Transition) []evidence.Finding {
	switch t.Kind {
	case evidence.KindSyncStarted, evidence.KindSyncSucceeded, evidence.KindSyncFailed:
		var out []evidence.Finding
		for _, a := range t.Artifacts {
			if mutableRef(a.URI) {
				out = append(out, finding(FindingArtifactMutableTag, evidence.SeverityError,
					fmt.Sprintf("%s is deployed by tag, not by digest", a.URI), map[string]string{"image": a.URI}))
			}
		}
		return out
	case evidence.KindArtifactAdmitted:
	default:
		return nil
	}
	a := t.ArtifactAdmission
	if a == nil {
		return nil
	}
	ev := func(more ...string) map[string]string {
		m := map[string]string{"image": a.Image, "digest": a.Digest}
		for i := 0; i+1 < len(more); i += 2 {
			m[more[i]] = more[i+1]
		}
		return m
	}
	var out []evidence.Finding
	add := func(code, msg string, more ...string) {
		out = append(out, finding(code, evidence.SeverityError, msg, ev(more...)))
	}
	if mutableRef(a.Image) {
		add(FindingArtifactMutableTag, fmt.Sprintf("%s names a tag; admit images by digest only", a.Image))
	}
	digest, err := hex.DecodeString(strings.TrimPrefix(a.Digest, "sha256:"))
	if err != nil || !strings.HasPrefix(a.Digest, "sha256:") {
		add(FindingArtifactUnsigned, "the digest is not a sha256 digest, so no signature can cover it")
		return out
	}

	// The image signature.
	switch san, issuer, err := v.verifyArtifactBundle(a.SignatureBundle, digest); {
	case len(a.SignatureBundle) == 0:
		add(FindingArtifactUnsigned, "no signature bundle")
	case err != nil:
		add(FindingArtifactUnsigned, "the signature bundle does not verify: "+err.Error())
	case !v.artifacts.expectedSigner(t.Source.Repository, san, issuer):
		add(FindingArtifactUnexpectedSigner, fmt.Sprintf("signed by %s (issuer %s), not the signer expected for %q", san, issuer, t.Source.Repository),
			"signer", san, "issuer", issuer, "repository", t.Source.Repository)
	}

	// The SLSA provenance.
	if len(a.ProvenanceBundle) == 0 {
		add(FindingArtifactNoProvenance, "no provenance attestation")
		return out
	}
	if _, _, err := v.verifyArtifactBundle(a.ProvenanceBundle, digest); err != nil {
		add(FindingArtifactNoProvenance, "the provenance bundle does not verify: "+err.Error())
		return out
	}
	prov, err := parseProvenance(a.ProvenanceBundle)
	if err != nil {
		add(FindingArtifactNoProvenance, "the provenance attestation is not SLSA provenance: "+err.Error())
		return out
	}
	if !slices.Contains(v.artifacts.builders, prov.builder) {
		add(FindingArtifactUntrustedBuilder, fmt.Sprintf("built by %q, not a trusted builder", prov.builder), "builder", prov.builder)
	}
	if !v.artifacts.protectedRef(prov.ref) {
		add(FindingArtifactUnprotectedBranch, fmt.Sprintf("built from %q, not a protected branch", prov.ref), "ref", prov.ref)
	}
	if prov.commit == "" || prov.commit != t.Source.CommitSHA {
		add(FindingArtifactCommitMismatch, fmt.Sprintf("built from commit %q, but the release names %q", prov.commit, t.Source.CommitSHA),
			"builtFrom", prov.commit, "releaseCommit", t.Source.CommitSHA)
	}
	return out
}

// verifyArtifactBundle verifies a Sigstore bundle whose signature covers the
// sha256 digest (a message signature over it, or a DSSE statement naming it
// as a subject) and returns the signer's certificate identity.
func (v *Verifier) verifyArtifactBundle(raw []byte, digest []byte) (san, issuer string, err error) {
	if len(raw) == 0 {
		return "", "", errors.New("empty")
	}
	if v.sigstore == nil {
		return "", "", errors.New("no Sigstore trusted root is configured (trust.sigstore)")
	}
	var b bundle.Bundle
	if err := b.UnmarshalJSON(raw); err != nil {
		return "", "", fmt.Errorf("not a Sigstore bundle: %w", err)
	}
	res, err := v.sigstore.Verify(&b, verify.NewPolicy(verify.WithArtifactDigest("sha256", digest), verify.WithoutIdentitiesUnsafe()))
	if err != nil {
		return "", "", err
	}
	if res.Signature == nil || res.Signature.Certificate == nil {
		return "", "", errors.New("signed with a key, not a certificate identity")
	}
	return res.Signature.Certificate.SubjectAlternativeName, res.Signature.Certificate.Issuer, nil
}

func (at *artifactTrust) expectedSigner(repo, san, issuer string) bool {
	for i := range at.signers[repo] {
		if at.signers[repo][i].matches(san, issuer) {
			return true
		}
	}
	return false
}

func (at *artifactTrust) protectedRef(ref string) bool {
	if ref == "" {
		return false
	}
	branch, isBranch := strings.CutPrefix(ref, "refs/heads/")
	for _, p := range at.protected {
		if p == ref || (isBranch && p == branch) {
			return true
		}
	}
	return false
}

// mutableRef reports whether an image reference names a tag and no digest:
// "registry/app:1.4" or "registry/app" (implicitly :latest), but not
// "registry/app@sha256:…". An empty reference or a bare repository name
// given alongside a digest field is not a reference by tag.
func mutableRef(ref string) bool {
	if ref == "" || strings.Contains(ref, "@") {
		return false
	}
	last := ref[strings.LastIndex(ref, "/")+1:]
	return strings.Contains(last, ":")
}

type provenance struct {
	builder, ref, commit string
}

// parseProvenance reads the builder, source ref and commit of a SLSA v1 or
// v0.2 provenance statement, the DSSE payload of the bundle.
func parseProvenance(raw []byte) (provenance, error) {
	var b struct {
		DSSE struct {
			Payload []byte `json:"payload"`
		} `json:"dsseEnvelope"`
	}
	if err := json.Unmarshal(raw, &b); err != nil || len(b.DSSE.Payload) == 0 {
		return provenance{}, errors.New("the bundle carries no DSSE statement")
	}
	var st struct {
		PredicateType string `json:"predicateType"`
		Predicate     struct {
			// SLSA v1
			BuildDefinition struct {
				ExternalParameters struct {
					Workflow struct {
						Ref        string `json:"ref"`
						Repository string `json:"repository"`
					} `json:"workflow"`
				} `json:"externalParameters"`
				ResolvedDependencies []struct {
					URI    string            `json:"uri"`
					Digest map[string]string `json:"digest"`
				} `json:"resolvedDependencies"`
			} `json:"buildDefinition"`
			RunDetails struct {
				Builder struct {
					ID string `json:"id"`
				} `json:"builder"`
			} `json:"runDetails"`
			// SLSA v0.2
			Builder struct {
				ID string `json:"id"`
			} `json:"builder"`
			Invocation struct {
				ConfigSource struct {
					URI    string            `json:"uri"`
					Digest map[string]string `json:"digest"`
				} `json:"configSource"`
			} `json:"invocation"`
		} `json:"predicate"`
	}
	if err := json.Unmarshal(b.DSSE.Payload, &st); err != nil {
		return provenance{}, fmt.Errorf("statement: %w", err)
	}
	p := st.Predicate
	switch st.PredicateType {
	case provenancePredicateV1:
		out := provenance{builder: p.RunDetails.Builder.ID, ref: p.BuildDefinition.ExternalParameters.Workflow.Ref}
		for _, d := range p.BuildDefinition.ResolvedDependencies {
			if !strings.HasPrefix(d.URI, "git+") {
				continue
			}
			out.commit = cmp.Or(d.Digest["gitCommit"], d.Digest["sha1"])
			if _, ref, ok := strings.Cut(d.URI, "@"); ok && out.ref == "" {
				out.ref = ref
			}
			break
		}
		return out, nil
	case provenancePredicateV02:
		cs := p.Invocation.ConfigSource
		out := provenance{builder: p.Builder.ID, commit: cmp.Or(cs.Digest["sha1"], cs.Digest["gitCommit"])}
		if _, ref, ok := strings.Cut(cs.URI, "@"); ok {
			out.ref = ref
		}
		return out, nil
	}
	return provenance{}, fmt.Errorf("predicateType %q is not SLSA provenance (v1 or v0.2)", st.PredicateType)
}

func finding(code, severity, msg string, ev map[string]string) evidence.Finding {
	return evidence.Finding{Code: code, Severity: severity, Message: msg, Evidence: ev}
}
