package verifier

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"evident.dev/evident/evidence"
)

// TrustConfig is the set of identities whose records the log accepts. Its
// canonical JSON is recorded in the genesis entry (and in every trust.updated
// entry), so an auditor rebuilds the trust in force at any point of the log
// from the log alone.
//
// Every field added after the first release is optional and omitted when
// empty, so a configuration that does not use it keeps its canonical bytes
// (and its digest in existing logs).
type TrustConfig struct {
	Runners []Runner `json:"runners"`
	// Identities are keyless signers: Sigstore certificate identities
	// (a CI workflow, a person's e-mail) verified against Sigstore.
	Identities []Identity `json:"identities,omitempty"`
	// Sigstore is the trusted root keyless bundles are verified against.
	// Required when Identities is not empty.
	Sigstore *SigstoreTrust `json:"sigstore,omitempty"`
	// Groups is the directory approvals are checked against: group name to
	// member identities (e-mails, or runner approver names).
	Groups map[string][]string `json:"groups,omitempty"`
	// Artifacts is what artifact admission trusts: expected image signers
	// per source repository, SLSA builders, protected branches.
	Artifacts *ArtifactTrust `json:"artifacts,omitempty"`
}

// Runner is one identity allowed to post records: a CI job, a bundled runner,
// a GitOps watcher, an approval service.
type Runner struct {
	Name      string `json:"name"`
	PublicKey string `json:"publicKey"` // PKIX PEM; in the YAML config, a path to the PEM file
	Scope     Scope  `json:"scope"`
	// Approver is the person this key belongs to (an e-mail): approvals it
	// signs count as that person's. Empty for machine identities.
	Approver string `json:"approver,omitempty"`
	// RevokedAt, when set, ends the key's trust: the log refuses records
	// it receives from that instant on, and an auditor re-checking the log
	// accepts only entries received before it. Entries received earlier stay
	// valid (the key was trusted when the log took them). Rotating a key is
	// a second runner with the same name and the new key, and RevokedAt on
	// the old one. Omitted when unset, so older trust digests are unchanged.
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

// Identity is a keyless signer: a certificate whose subject alternative name
// (exactly SAN, or matching SANRegexp) was issued for a token of Issuer.
type Identity struct {
	Name      string `json:"name" yaml:"name"`
	SAN       string `json:"san,omitempty" yaml:"san"`
	SANRegexp string `json:"sanRegexp,omitempty" yaml:"sanRegexp"` // RE2, anchored at both ends
	Issuer    string `json:"issuer" yaml:"issuer"`
	Scope     Scope  `json:"scope" yaml:"scope"`
}

// SigstoreTrust is the Sigstore instance keyless records are verified
// against: the public-good instance or a private one.
type SigstoreTrust struct {
	// TrustedRoot is the trusted_root.json document (Fulcio CAs, Rekor
	// logs, timestamp authorities). It is recorded in the log with the rest
	// of the trust, so an auditor re-verifies keyless entries offline.
	TrustedRoot json.RawMessage `json:"trustedRoot"`
	// AllowTimestampOnly accepts a bundle with an RFC 3161 signed timestamp
	// and no transparency-log entry. By default a Rekor inclusion proof is
	// required.
	AllowTimestampOnly bool `json:"allowTimestampOnly,omitempty"`
}

// Scope limits what a runner may report on. "*" matches anything. An empty
// Stacks, Clusters or Namespaces list places no limit on that dimension.
type Scope struct {
	Environments []string `json:"environments"`
	Stacks       []string `json:"stacks,omitempty"`
	Clusters     []string `json:"clusters,omitempty"`
	// RelayApprovals lets the signer post approvals on behalf of the
	// approvers they name: a trusted approval service (e.g. the code host's
	// review webhook relay).
	RelayApprovals bool `json:"relayApprovals,omitempty" yaml:"relayApprovals"`
	// Namespaces limits a GitOps watcher to the Kubernetes namespaces of its
	// tenants. Unlike stacks and clusters it is checked on its own: a
	// namespace-limited signer's records must name a namespace in scope.
	// Empty (the default, and every configuration written before the field
	// existed) encodes to nothing, so older trust digests are unchanged.
	Namespaces []string `json:"namespaces,omitempty"`
}

// Canonical returns the trust configuration as the JSON recorded in the log.
// encoding/json writes struct fields in declaration order, so equal
// configurations give equal bytes.
func (c TrustConfig) Canonical() ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode trust configuration: %w", err)
	}
	return b, nil
}

// Digest is the hex SHA-256 of the canonical trust configuration.
func (c TrustConfig) Digest() (string, error) {
	b, err := c.Canonical()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// ParseTrustConfig reads a canonical trust configuration back from the log.
func ParseTrustConfig(b []byte) (TrustConfig, error) {
	var c TrustConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return TrustConfig{}, fmt.Errorf("decode trust configuration: %w", err)
	}
	return c, nil
}

// allows reports whether the scope covers the record's target, and if not, why.
// A restricted dimension (stacks, clusters) must be named by the record and in
// scope, unless the scope restricts another dimension that the record names:
// a cluster-scoped watcher's sync record names no stack.
func (s Scope) allows(t evidence.Target) (bool, string) {
	if !matches(s.Environments, t.Environment) {
		return false, fmt.Sprintf("environment %q is outside the signer's scope", t.Environment)
	}
	restricted, named := 0, 0
	for _, d := range [...]struct {
		what    string
		allowed []string
		value   string
	}{{"stack", s.Stacks, t.Stack}, {"cluster", s.Clusters, t.Cluster}} {
		if len(d.allowed) == 0 {
			continue
		}
		restricted++
		if d.value == "" {
			continue
		}
		named++
		if !matches(d.allowed, d.value) {
			return false, fmt.Sprintf("%s %q is outside the signer's scope", d.what, d.value)
		}
	}
	if restricted > 0 && named == 0 {
		return false, "the signer's scope is limited to named stacks or clusters and the record names neither"
	}
	if len(s.Namespaces) > 0 && !matches(s.Namespaces, t.Namespace) {
		if t.Namespace == "" {
			return false, "the signer's scope is limited to named namespaces and the record names none"
		}
		return false, fmt.Sprintf("namespace %q is outside the signer's scope", t.Namespace)
	}
	return true, ""
}

func matches(allowed []string, v string) bool {
	return slices.Contains(allowed, "*") || (v != "" && slices.Contains(allowed, v))
}

// Environments lists the environments the trusted runners and identities
// are scoped to by name (not "*" or patterns), each once, in order.
func (c TrustConfig) Environments() []string {
	var out []string
	seen := map[string]bool{}
	add := func(envs []string) {
		for _, e := range envs {
			if e != "" && !strings.ContainsAny(e, "*?[") && !seen[e] {
				seen[e] = true
				out = append(out, e)
			}
		}
	}
	for _, r := range c.Runners {
		add(r.Scope.Environments)
	}
	for _, i := range c.Identities {
		add(i.Scope.Environments)
	}
	return out
}
