package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"evident.dev/evident/approvals"
	"evident.dev/evident/client"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
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

// runGate is `evident gate check`: ask the apply gate whether a plan may be
// applied. Exit status 0 means allow, 1 deny, 2 the gate could not decide
// (do not apply).
func runGate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		return usageErrorf("usage: evident gate check --change ID --commit SHA (--plan FILE | --plan-sha256 HEX) --env ENV --actor ID [--stack S] [--server URL] [-o json]")
	}
	fs := newFlags("gate check", stderr)
	server := fs.String("server", defaultServer(), "server URL")
	tlsFlags := addClientTLSFlags(fs)
	tokenEnv := fs.String("token-env", "", "environment variable holding a runner's bearer token (needed once the server's access is configured; default $EVIDENT_TOKEN)")
	changeID := fs.String("change", "", "change id")
	commit := fs.String("commit", "", "Git commit SHA the plan was made from")
	planFile := fs.String("plan", "", "the plan file to apply (its SHA-256 is sent)")
	planSHA := fs.String("plan-sha256", "", "or: the plan file's SHA-256, hex")
	actor := fs.String("actor", "", "who asks (the runner's identity)")
	var tg evidence.Target
	fs.StringVar(&tg.Environment, "env", "", "target environment")
	fs.StringVar(&tg.Stack, "stack", "", "target stack")
	fs.StringVar(&tg.Cluster, "cluster", "", "target cluster")
	fs.StringVar(&tg.Namespace, "namespace", "", "target namespace")
	fs.StringVar(&tg.Application, "application", "", "target application")
	asJSON := fs.Bool("json", false, "print the whole answer as JSON (as -o json)")
	out := addOutputFlag(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if err := out.check(); err != nil {
		return err
	}
	*asJSON = *asJSON || out.json()
	if (*planFile == "") == (*planSHA == "") {
		return usageErrorf("gate check: give exactly one of --plan and --plan-sha256")
	}
	if *planFile != "" {
		b, err := os.ReadFile(*planFile)
		if err != nil {
			return fmt.Errorf("gate check: %w", err)
		}
		sum := sha256.Sum256(b)
		*planSHA = hex.EncodeToString(sum[:])
	}
	req := client.GateRequest{ChangeID: *changeID, CommitSHA: *commit, PlanSHA256: strings.ToLower(*planSHA), Target: tg, Actor: *actor}
	if err := req.Check(); err != nil {
		return usageErrorf("gate check: %w", err)
	}
	c := client.New(*server)
	token, err := tokenFromEnv(*tokenEnv)
	if err != nil {
		return fmt.Errorf("gate check: %w", err)
	}
	c.Token = token
	if err := tlsFlags.apply(c); err != nil {
		return fmt.Errorf("gate check: %w", err)
	}
	d, err := c.AskGate(ctx, req)
	if err != nil {
		return fmt.Errorf("gate check: %w (do not apply)", err)
	}
	if *asJSON {
		if err := writeIndented(stdout, d); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "%s: change %s, plan %s, recorded as entry %d\n", strings.ToUpper(d.Decision), req.ChangeID, req.PlanSHA256, d.Entry.Index)
		if len(d.RequiredApprovers) > 0 {
			fmt.Fprintf(stdout, "required approvers: %s\n", strings.Join(d.RequiredApprovers, ", "))
		}
		for _, r := range d.Reasons {
			fmt.Fprintf(stdout, "  - %s\n", r)
		}
	}
	if d.Decision != client.Allow {
		return &exitError{1, fmt.Errorf("the gate denied applying plan %s of change %s", req.PlanSHA256, req.ChangeID)}
	}
	return nil
}
