package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/policies"
	"evident.dev/evident/query"
	"evident.dev/evident/verifier"
)

// PoliciesConfig is the policies section of the server's configuration.
type PoliciesConfig struct {
	// Enabled turns policy evaluation off when false. A compliance ledger
	// judges with its bundled policies unless the operator says otherwise,
	// so unset means on; with policies on, the gate requires the approvals
	// the plan's decision names, bound to that decision's digest.
	Enabled *bool `yaml:"enabled"`
	// Dir is a directory of operators' Rego modules; Bundle an OPA bundle
	// (.tar.gz or directory). Both add to the bundled rules.
	Dir    string `yaml:"dir"`
	Bundle string `yaml:"bundle"`
	// Contracts is an evidence contracts YAML file replacing the bundled one.
	Contracts string `yaml:"contracts"`
	// ProductionEnvironments are names or globs; default prod, prod-*,
	// production, production-*.
	ProductionEnvironments []string `yaml:"productionEnvironments"`
	// MaxExceptionLifetime bounds how long an exception may run; default 180 days.
	MaxExceptionLifetime time.Duration `yaml:"maxExceptionLifetime"`
}

// enabled reports whether the policies judge: yes unless set to false.
func (pc PoliciesConfig) enabled() bool { return pc.Enabled == nil || *pc.Enabled }

// serverPolicies is the policy set and its judge and tracker, as the
// server wires them.
type serverPolicies struct {
	set       *policies.Set
	contracts *policies.Contracts
	prod      policies.Environments
	tracker   *policies.Tracker // from start on
	judge     *policies.Judge   // from start on
}

// loadPolicies loads the policy set and the contracts (before the log
// records the set).
func loadPolicies(ctx context.Context, c *Config) (*serverPolicies, error) {
	pc := c.Policies
	if !pc.enabled() {
		return nil, nil
	}
	set, err := policies.Load(ctx, policies.Source{Dir: c.path(pc.Dir), Bundle: c.path(pc.Bundle)})
	if err != nil {
		return nil, err
	}
	contracts := policies.DefaultContracts()
	if pc.Contracts != "" {
		b, err := os.ReadFile(c.path(pc.Contracts))
		if err != nil {
			return nil, fmt.Errorf("policies.contracts: %w", err)
		}
		if contracts, err = policies.ParseContracts(b); err != nil {
			return nil, fmt.Errorf("policies.contracts %s: %w", pc.Contracts, err)
		}
	}
	prod := policies.Environments(pc.ProductionEnvironments)
	if len(prod) == 0 {
		prod = policies.DefaultProduction()
	}
	return &serverPolicies{set: set, contracts: contracts, prod: prod}, nil
}

// info is the policy set the genesis or a trust.updated entry records.
func (p *serverPolicies) info() *evidence.PolicySet {
	if p == nil {
		return nil
	}
	i := p.set.Info()
	return &i
}

// start makes the judge over the open log and starts the tracker, which
// stops when the log closes.
func (p *serverPolicies) start(ctx context.Context, c *Config, lg *ledger.Log, approvals policies.ApprovalAssessor, logger *slog.Logger) ([]ingest.Judge, error) {
	if p == nil {
		return nil, nil
	}
	p.tracker = policies.NewTracker(lg, p.contracts, p.prod)
	j, err := policies.NewJudge(policies.JudgeConfig{
		Set: p.set, Log: lg, Contracts: p.contracts, Exceptions: p.tracker, Approvals: approvals,
		Production: p.prod, MaxExceptionLifetime: c.Policies.MaxExceptionLifetime, MaxBackfill: c.Limits.MaxBackfill,
	})
	if err != nil {
		return nil, err
	}
	p.judge = j
	go func() {
		if err := p.tracker.Run(context.WithoutCancel(ctx)); err != nil {
			logger.Error("the completeness tracker stopped", "err", err)
		}
	}()
	logger.Info("policies active", "bundleSha256", p.set.Digest(), "modules", len(p.set.Info().Modules))
	return []ingest.Judge{policyJudge{j}}, nil
}

// projection is what GraphQL's completeness fields and expiring exceptions
// read: the tracker, or nil with the policies off.
func (p *serverPolicies) projection(lg *ledger.Log) *query.PolicyCompleteness {
	if p == nil || p.tracker == nil {
		return nil
	}
	return &query.PolicyCompleteness{Tracker: p.tracker, Log: lg, Summaries: &query.EnvironmentSummaries{MaxAge: 2 * time.Second}}
}

// policyJudge makes a policies.Judge an ingest.Judge (policies sits below
// ingest and does not import it).
type policyJudge struct{ j *policies.Judge }

func (p policyJudge) Judge(ctx context.Context, v *verifier.Verified) (ingest.Judgement, error) {
	r, err := p.j.Judge(ctx, v)
	return ingest.Judgement{Findings: r.Findings, Decision: r.Decision}, err
}
