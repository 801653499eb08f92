package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"evident.dev/evident/approvals"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/query"
	"evident.dev/evident/verifier"
)

// keylessTrust is the YAML of the trust configuration's keyless part and
// group directory:
//
//	trust:
//	  identities:
//	    - {name: apply-workflow, sanRegexp: 'https://github\.com/example/infra-live/.*', issuer: https://token.actions.githubusercontent.com, scope: {environments: [prod]}}
//	    - {name: carol, san: carol@example.com, issuer: https://accounts.google.com, scope: {environments: ["*"]}}
//	  sigstore:
//	    trustedRoot: trusted_root.json   # a path; its content is recorded in the log
//	    allowTimestampOnly: false
//	  groups:
//	    database-owners: [carol@example.com]
//	  artifacts:
//	    signers:
//	      - {repository: github.com/example/orders, sanRegexp: 'https://github\.com/example/orders/.*', issuer: https://token.actions.githubusercontent.com}
//	    builders: [https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.1.0]
//	    protectedBranches: [main]
type keylessTrust struct {
	Identities []verifier.Identity `yaml:"identities"`
	Sigstore   *struct {
		TrustedRoot        string `yaml:"trustedRoot"`
		AllowTimestampOnly bool   `yaml:"allowTimestampOnly"`
	} `yaml:"sigstore"`
	Groups    map[string][]string     `yaml:"groups"`
	Artifacts *verifier.ArtifactTrust `yaml:"artifacts"` // expected image signers, SLSA builders, protected branches
}

// apply adds the keyless identities, the trusted root and the groups to t.
func (k keylessTrust) apply(c *Config, t *verifier.TrustConfig) error {
	for i, id := range k.Identities {
		if id.Name == "" {
			return fmt.Errorf("trust.identities[%d]: name is required", i)
		}
	}
	t.Identities, t.Groups, t.Artifacts = k.Identities, k.Groups, k.Artifacts
	if k.Sigstore == nil {
		return nil
	}
	if k.Sigstore.TrustedRoot == "" {
		return errors.New("trust.sigstore.trustedRoot: a path to trusted_root.json is required")
	}
	root, err := os.ReadFile(c.path(k.Sigstore.TrustedRoot))
	if err != nil {
		return fmt.Errorf("trust.sigstore.trustedRoot: %w", err)
	}
	// Compact, so the trusted root recorded in the log does not depend on
	// how the file is indented.
	var compact bytes.Buffer
	if err := json.Compact(&compact, root); err != nil {
		return fmt.Errorf("trust.sigstore.trustedRoot %s: not JSON: %w", k.Sigstore.TrustedRoot, err)
	}
	t.Sigstore = &verifier.SigstoreTrust{TrustedRoot: compact.Bytes(), AllowTimestampOnly: k.Sigstore.AllowTimestampOnly}
	return nil
}

// trust reads the runners' public keys into the trust configuration.
func (c *Config) trust() (verifier.TrustConfig, error) {
	var t verifier.TrustConfig
	for i, r := range c.Trust.Runners {
		if r.PublicKey == "" {
			return t, fmt.Errorf("trust.runners[%d] (%s): publicKey is required", i, r.Name)
		}
		pem, err := os.ReadFile(c.path(r.PublicKey))
		if err != nil {
			return t, fmt.Errorf("trust.runners[%d] (%s): %w", i, r.Name, err)
		}
		t.Runners = append(t.Runners, verifier.Runner{Name: r.Name, PublicKey: string(pem), Scope: r.Scope, Approver: r.Approver, RevokedAt: r.RevokedAt})
	}
	return t, c.Trust.keylessTrust.apply(c, &t)
}

// writerTrust is the trust a writer judges records with: the configured
// one, or with no runner and no identity configured, the development key's.
func (c *Config) writerTrust(logger *slog.Logger) (verifier.TrustConfig, error) {
	trust, err := c.trust()
	if err != nil || len(trust.Runners) > 0 || len(trust.Identities) > 0 {
		return trust, err
	}
	groups := trust.Groups
	if trust, err = devTrust(c.Data, logger); err != nil {
		return trust, err
	}
	trust.Groups = groups
	if len(groups) == 0 {
		// A development server judges approvals as a configured one
		// does, against a directory: the demo data set's, whose
		// approvers are example.com addresses.
		trust.Groups = query.DemoGroups()
		logger.Warn("no approver directory configured: using the demo's (example.com approvers only)")
	}
	return trust, nil
}

// devTrust trusts one generated key for every environment, so that a server
// started with no configuration accepts records at once. It says so loudly.
// The key also relays approvals: on a development machine it stands in for
// the code host's review webhook as well as for the runners.
func devTrust(dataDir string, logger *slog.Logger) (verifier.TrustConfig, error) {
	keyPath := filepath.Join(dataDir, "dev-runner.key")
	pubPath := filepath.Join(dataDir, "dev-runner.pub")
	if _, err := os.Stat(pubPath); errors.Is(err, fs.ErrNotExist) {
		priv, pub, err := verifier.GenerateKey("ed25519")
		if err != nil {
			return verifier.TrustConfig{}, err
		}
		if err := os.WriteFile(keyPath, priv, 0o600); err != nil {
			return verifier.TrustConfig{}, err
		}
		if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
			return verifier.TrustConfig{}, err
		}
	}
	pub, err := os.ReadFile(pubPath)
	if err != nil {
		return verifier.TrustConfig{}, err
	}
	logger.Warn("no trusted runners configured: trusting the development key for every environment, and to relay approvals", "key", keyPath)
	return verifier.TrustConfig{Runners: []verifier.Runner{{
		Name: "dev-runner", PublicKey: string(pub), Scope: verifier.Scope{Environments: []string{"*"}, RelayApprovals: true},
	}}}, nil
}

// approvalsConfig is the YAML of the approval policy:
//
//	approvals:
//	  rules:                       # fallback when the plan's policy decision names no approvers
//	    - {environment: prod, riskClass: high, groups: [platform-infra, database-owners]}
//	    - {environment: prod, groups: [platform-infra]}
//	    - {environment: sandbox, minApprovals: 0}
//	  maxApprovalAge: 24h
//	  maxPlanAge: 24h
//	  maxPolicyAge: 24h
//	  requirePolicyDecision: false
//	  breakglassReview: 24h
type approvalsConfig struct {
	Rules                 []approvals.Rule `yaml:"rules"`
	MaxApprovalAge        time.Duration    `yaml:"maxApprovalAge"`
	MaxPlanAge            time.Duration    `yaml:"maxPlanAge"`
	MaxPolicyAge          time.Duration    `yaml:"maxPolicyAge"`
	RequirePolicyDecision bool             `yaml:"requirePolicyDecision"`
	BreakglassReview      time.Duration    `yaml:"breakglassReview"`
}

// build makes the approval checker the judge and the gate share.
func (a approvalsConfig) build(lg *ledger.Log, trust verifier.TrustConfig) (*approvals.Approvals, error) {
	return approvals.New(ingest.ChangeLog(lg), approvals.Config{
		Groups:                trust.Groups,
		Rules:                 a.Rules,
		MaxApprovalAge:        a.MaxApprovalAge,
		MaxPlanAge:            a.MaxPlanAge,
		MaxPolicyAge:          a.MaxPolicyAge,
		RequirePolicyDecision: a.RequirePolicyDecision,
		BreakglassReview:      a.BreakglassReview,
	})
}
