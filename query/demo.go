package query

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"evident.dev/evident/evidence"
)

// DemoClock is the time the demo data set is read at: docs/audit-queries.md
// shows every answer as of this instant ("last month" is June 2026). The
// data set's last week of June lies within a default server's backfill
// window (limits.maxBackfill, 7 days) of it, so a server with its default
// configuration judges every record at the time it happened.
var DemoClock = time.Date(2026, 7, 1, 6, 0, 0, 0, time.UTC)

// DemoStatements is the data set of docs/audit-queries.md: ten changes to
// production and staging, each with the records a real platform would post,
// chosen so that every audit question has an answer and a non-answer.
// `evident demo` signs and posts them (DemoStatementsAt); the docs test
// does the same.
func DemoStatements() []evidence.Statement { return DemoStatementsAt(DemoClock) }

// DemoStatementsAt is the data set posted at now: the same records, every
// time moved by now - DemoClock, so that the week of history ends where it
// does in the docs relative to DemoClock. A server judges each record at
// the time it happened only within its backfill window (limits.maxBackfill),
// and refuses an exception that has already expired, so records dated June
// 2026 could not be posted for long.
func DemoStatementsAt(now time.Time) []evidence.Statement {
	var out []evidence.Statement
	shift := now.Sub(DemoClock).Truncate(time.Second)
	day := func(d, h int) time.Time { return time.Date(2026, 6, d, h, 0, 0, 0, time.UTC).Add(shift) }
	prodDB := evidence.Target{Environment: "prod", Cloud: "aws", Account: "account-payments-prod", Region: "ap-southeast-1",
		Stack: "prod/aws/account-payments-prod/ap-southeast-1/rds-orders", Service: "orders", DataClass: "restricted"}
	stagingDB := evidence.Target{Environment: "staging", Cloud: "aws", Account: "account-payments-staging", Region: "ap-southeast-1",
		Stack: "staging/aws/account-payments-staging/ap-southeast-1/rds-orders", Service: "orders", DataClass: "internal"}
	prodWeb := evidence.Target{Environment: "prod", Cloud: "aws", Account: "account-web-prod", Region: "eu-west-1",
		Cluster: "prod-eu-1", Namespace: "web", Application: "storefront", Service: "storefront"}
	prodNet := evidence.Target{Environment: "prod", Cloud: "aws", Account: "account-network-prod", Region: "eu-west-1",
		Stack: "prod/aws/account-network-prod/eu-west-1/edge"}

	add := func(t evidence.Transition) {
		out = append(out, evidence.Statement{
			Type: evidence.StatementType, PredicateType: evidence.PredicateType,
			Subject: demoSubjects(t), Predicate: t,
		})
	}
	src := func(pr int) evidence.Source {
		return evidence.Source{Repository: "infra-live", PullRequest: pr, CommitSHA: demoHash("commit", pr)[:40], Branch: "main"}
	}
	type change struct {
		id, author string
		pr         int
		target     evidence.Target
		risk       string
	}
	opened := func(c change, at time.Time, title string, approvers ...string) {
		add(evidence.Transition{Kind: evidence.KindChangeOpened, ChangeID: c.id, OccurredAt: at, Actor: c.author, Source: src(c.pr),
			Target: c.target, RiskClass: c.risk, Change: &evidence.Change{Title: title, Author: c.author, TargetBranch: "main",
				MutationType: "update", RequiresApprovalFrom: approvers, EvidenceRequired: []string{"plan", "policy", "approval", "apply", "verification"}}})
	}
	planOf := func(c change) string { return demoHash("plan", c.pr) }
	plan := func(c change, at time.Time, rcs ...evidence.ResourceChange) {
		add(evidence.Transition{Kind: evidence.KindPlanCreated, ChangeID: c.id, OccurredAt: at, Actor: "runner:infra-live", Source: src(c.pr),
			Target: c.target, RiskClass: c.risk, Plan: &evidence.Plan{PlanSHA256: planOf(c), Engine: "opentofu", EngineVersion: "1.10.6",
				Stack: c.target.Stack, Actions: evidence.ActionCounts{Update: len(rcs)}, ResourceChanges: rcs, RequiresManualApproval: c.risk == "high"}})
	}
	policy := func(c change, at time.Time, result string, rules ...evidence.Decision) {
		add(evidence.Transition{Kind: evidence.KindPolicyEvaluated, ChangeID: c.id, OccurredAt: at, Actor: "runner:policy", Source: src(c.pr),
			Target: c.target, RiskClass: c.risk, Policy: &evidence.Policy{Result: result, BundleSHA256: demoHash("bundle", 1), Decisions: rules}})
	}
	approve := func(c change, at time.Time, who string, expires time.Time, groups ...string) {
		add(evidence.Transition{Kind: evidence.KindApprovalGranted, ChangeID: c.id, OccurredAt: at, Actor: who, Source: src(c.pr),
			Target: c.target, RiskClass: c.risk, Approval: &evidence.Approval{PullRequest: c.pr, CommitSHA: src(c.pr).CommitSHA,
				PlanSHA256: planOf(c), Approver: who, Groups: groups, ApprovedAt: at, ExpiresAt: expires}})
	}
	apply := func(c change, at time.Time, emergency bool) {
		add(evidence.Transition{Kind: evidence.KindApplyCompleted, ChangeID: c.id, OccurredAt: at, Actor: "runner:infra-live", Source: src(c.pr),
			Target: c.target, RiskClass: c.risk, Emergency: emergency, Apply: &evidence.Apply{PlanSHA256: planOf(c), Engine: "opentofu",
				StartedAt: at.Add(-4 * time.Minute), CompletedAt: at}})
	}
	verify := func(c change, at time.Time) {
		add(evidence.Transition{Kind: evidence.KindVerificationCompleted, ChangeID: c.id, OccurredAt: at, Actor: "runner:infra-live", Source: src(c.pr),
			Target: c.target, RiskClass: c.risk, Verification: &evidence.Verification{Result: "pass", Method: "post-apply-checks"}})
	}
	allow := evidence.Decision{Result: "allow", RuleID: "prod-requires-approval", Severity: "high", RequiredApprovers: []string{"dba"}}

	// 1. A production database change, approved by a DBA: the normal path.
	c1 := change{"CHG-2026-06-24-0101", "alice@example.com", 4801, prodDB, "high"}
	opened(c1, day(24, 8), "Raise max_connections on orders", "dba")
	plan(c1, day(24, 9), evidence.ResourceChange{Address: "aws_db_instance.orders", Type: "aws_db_instance", Actions: []string{"update"}})
	policy(c1, day(24, 9).Add(time.Minute), "allow", allow)
	approve(c1, day(24, 10), "bob@example.com", day(25, 10), "dba", "prod-approvers")
	apply(c1, day(24, 11), false)
	verify(c1, day(24, 11).Add(5*time.Minute))

	// 2. A production database change its author approved herself (with a
	// second, independent approval).
	c2 := change{"CHG-2026-06-25-0202", "carol@example.com", 4812, prodDB, "high"}
	opened(c2, day(25, 8), "Rotate the payments KMS key", "dba")
	plan(c2, day(25, 9), evidence.ResourceChange{Address: "aws_db_instance.payments", Type: "aws_db_instance", Actions: []string{"update"}})
	policy(c2, day(25, 9).Add(time.Minute), "allow", allow)
	approve(c2, day(25, 10), "carol@example.com", day(26, 10), "dba")
	approve(c2, day(25, 10).Add(30*time.Minute), "dave@example.com", day(26, 10), "dba")
	apply(c2, day(25, 12), false)

	// 3. Public ingress: a GitOps sync that changes an Ingress, and a
	// plan that changes a public load balancer listener.
	c3 := change{"CHG-2026-06-26-0303", "erin@example.com", 4820, prodWeb, "medium"}
	opened(c3, day(26, 8), "Expose /api/v2 on the public storefront ingress", "web-leads")
	approve(c3, day(26, 9), "frank@example.com", day(27, 9), "web-leads")
	add(evidence.Transition{Kind: evidence.KindSyncSucceeded, ChangeID: c3.id, OccurredAt: day(26, 10), Actor: "argocd:prod-eu-1", Source: src(c3.pr),
		Target: c3.target, RiskClass: "medium", Sync: &evidence.Sync{Application: "storefront", Revision: src(c3.pr).CommitSHA,
			Resources: []evidence.SyncedObject{{Group: "networking.k8s.io", Kind: "Ingress", Namespace: "web", Name: "storefront-public", Status: "Synced"}}}})
	c3b := change{"CHG-2026-06-27-0313", "erin@example.com", 4821, prodNet, "high"}
	opened(c3b, day(27, 8), "Open 443 on the edge listener", "network")
	plan(c3b, day(27, 9), evidence.ResourceChange{Address: "aws_lb_listener.public_https", Type: "aws_lb_listener", Actions: []string{"update"}},
		evidence.ResourceChange{Address: "aws_security_group_rule.edge_https", Type: "aws_security_group_rule", Actions: []string{"create"},
			Attributes: map[string]string{"type": "ingress", "from_port": "443", "cidr_blocks": `["0.0.0.0/0"]`}},
		evidence.ResourceChange{Address: "aws_security_group_rule.edge_admin", Type: "aws_security_group_rule", Actions: []string{"create"},
			Attributes: map[string]string{"type": "ingress", "from_port": "22", "cidr_blocks": `["10.40.0.0/16"]`}})
	approve(c3b, day(27, 10), "grace@example.com", day(28, 10), "network")
	apply(c3b, day(27, 11), false)

	// 4. An emergency change under break-glass, applied with no approval.
	c4 := change{"CHG-2026-06-28-0404", "heidi@example.com", 4830, prodDB, "high"}
	add(evidence.Transition{Kind: evidence.KindBreakglassOpened, ChangeID: c4.id, OccurredAt: day(28, 2), Actor: "heidi@example.com", Target: c4.target,
		Emergency: true, Breakglass: &evidence.Breakglass{Incident: "INC-7781", Reason: "orders database out of connections", ApprovedBy: []string{"oncall-lead@example.com"}, ExpiresAt: day(28, 6)}})
	plan(c4, day(28, 2).Add(10*time.Minute), evidence.ResourceChange{Address: "aws_db_instance.orders", Type: "aws_db_instance", Actions: []string{"update"}})
	apply(c4, day(28, 2).Add(20*time.Minute), true)
	add(evidence.Transition{Kind: evidence.KindBreakglassClosed, ChangeID: c4.id, OccurredAt: day(28, 9), Actor: "heidi@example.com", Target: c4.target,
		Emergency: true, Breakglass: &evidence.Breakglass{Incident: "INC-7781", ReviewedBy: "ivan@example.com"}})

	// 5. A production change the policies denied (it was never applied).
	c5 := change{"CHG-2026-06-29-0505", "judy@example.com", 4840, prodDB, "high"}
	opened(c5, day(29, 8), "Drop the legacy orders replica", "dba")
	plan(c5, day(29, 9), evidence.ResourceChange{Address: "aws_db_instance.orders_replica", Type: "aws_db_instance", Actions: []string{"delete"}})
	policy(c5, day(29, 9).Add(time.Minute), "deny",
		evidence.Decision{Result: "deny", RuleID: "prod-db-deletion-protection", Severity: "critical", Message: "production databases must not be deleted"})

	// 6. A deployment of an image built from an unprotected branch.
	c6 := change{"CHG-2026-06-29-0606", "mallory@example.com", 4850, prodWeb, "medium"}
	add(evidence.Transition{Kind: evidence.KindArtifactAdmitted, ChangeID: c6.id, OccurredAt: day(29, 9), Actor: "admission:prod-eu-1", Target: c6.target,
		RiskClass: "medium", ArtifactAdmission: &evidence.ArtifactAdmission{Image: "registry.example.com/storefront", Digest: "sha256:" + demoHash("image", 6),
			Signed: true, SignerIdentity: "ci@example.com", SourceBranch: "feature/quick-fix", ProtectedBranch: false, Result: "admitted"}})
	add(evidence.Transition{Kind: evidence.KindRolloutPromoted, ChangeID: c6.id, OccurredAt: day(29, 10), Actor: "argo-rollouts:prod-eu-1", Target: c6.target,
		RiskClass: "medium", Rollout: &evidence.Rollout{Revision: "storefront-7f9c", Strategy: "canary", ImageDigest: "sha256:" + demoHash("image", 6)}})
	c6b := change{"CHG-2026-06-30-0616", "erin@example.com", 4851, prodWeb, "medium"}
	add(evidence.Transition{Kind: evidence.KindArtifactAdmitted, ChangeID: c6b.id, OccurredAt: day(30, 9), Actor: "admission:prod-eu-1", Target: c6b.target,
		RiskClass: "medium", ArtifactAdmission: &evidence.ArtifactAdmission{Image: "registry.example.com/storefront", Digest: "sha256:" + demoHash("image", 7),
			Signed: true, SignerIdentity: "ci@example.com", SourceBranch: "main", ProtectedBranch: true, Result: "admitted"}})

	// 7. Drift on the edge stack, detected and reverted.
	c7 := change{"CHG-2026-06-30-0707", "drift-bot", 0, prodNet, "medium"}
	add(evidence.Transition{Kind: evidence.KindDriftDetected, ChangeID: c7.id, OccurredAt: day(30, 3), Actor: "runner:drift", Target: c7.target,
		Drift: &evidence.Drift{Resources: []string{"aws_security_group_rule.edge_ssh"}, DetectedBy: "tofu plan -detailed-exitcode", Summary: "port 22 opened by hand"}})
	add(evidence.Transition{Kind: evidence.KindDriftReconciled, ChangeID: c7.id, OccurredAt: day(30, 7), Actor: "runner:drift", Target: c7.target,
		Drift: &evidence.Drift{Resources: []string{"aws_security_group_rule.edge_ssh"}, Method: "revert", Summary: "re-applied the declared rule"}})

	// 8. Exceptions: one expires within 30 days of the demo clock, one later.
	// At DemoClock: granted on 29 June, expiring on 15 July and 20 September.
	c8 := change{"CHG-2026-06-29-0808", "judy@example.com", 4860, prodDB, "high"}
	now = now.UTC()
	granted := now.Add(-2 * 24 * time.Hour)
	for _, e := range []evidence.Exception{
		{ID: "EXC-12", RuleID: "prod-db-deletion-protection", Scope: "stack=" + c8.target.Stack, Justification: "replica decommissioning window",
			Owner: "judy@example.com", ApprovedBy: []string{"ciso@example.com"}, ExpiresAt: now.Add(14*24*time.Hour + 15*time.Hour)},
		{ID: "EXC-13", RuleID: "prod-requires-approval", Scope: "stack=" + c8.target.Stack, Justification: "automated minor-version patching",
			Owner: "judy@example.com", ApprovedBy: []string{"ciso@example.com"}, ExpiresAt: now.Add(81*24*time.Hour + 15*time.Hour)},
	} {
		add(evidence.Transition{Kind: evidence.KindExceptionGranted, ChangeID: c8.id, OccurredAt: granted, Actor: "ciso@example.com", Target: c8.target, Exception: &e})
	}

	// 9. A staging database change applied after its approval expired.
	c9 := change{"CHG-2026-06-30-0909", "alice@example.com", 4870, stagingDB, "medium"}
	opened(c9, day(30, 8), "Resize the staging orders database", "dba")
	plan(c9, day(30, 9), evidence.ResourceChange{Address: "aws_db_instance.orders", Type: "aws_db_instance", Actions: []string{"update"}})
	approve(c9, day(30, 10), "bob@example.com", day(30, 12), "dba")
	apply(c9, day(30, 15), false)
	return out
}

// DemoGroups is the approver directory of the demo data set. The bundled
// policies ask production changes of risk class high for platform-infra and
// security on top of the groups a change names.
func DemoGroups() map[string][]string {
	return map[string][]string{
		"dba":            {"bob@example.com", "carol@example.com", "dave@example.com"},
		"prod-approvers": {"bob@example.com"},
		"web-leads":      {"frank@example.com"},
		"network":        {"grace@example.com"},
		"platform-infra": {"bob@example.com", "dave@example.com", "frank@example.com", "grace@example.com"},
		"security":       {"bob@example.com", "dave@example.com", "grace@example.com"},
	}
}

// DemoDecisions binds the demo's approvals to the policy decisions the log
// stores on their plans, as an approver's tool does from the plan's
// receipt (policyDecisionSha256): the digest depends on the server's
// policies, so the data set cannot carry it. Plan SHA-256 to digest.
type DemoDecisions map[string]string

// Bind fills in the policy decision an approval in st binds, if it names
// none, before st is signed.
func (d DemoDecisions) Bind(st *evidence.Statement) {
	if a := st.Predicate.Approval; a != nil && a.PolicyDecisionSHA256 == "" {
		a.PolicyDecisionSHA256 = d[a.PlanSHA256]
	}
}

// Posted notes the policy decision digest of a posted plan's receipt.
func (d DemoDecisions) Posted(st evidence.Statement, policyDecisionSHA256 string) {
	if p := st.Predicate.Plan; p != nil && st.Predicate.Kind == evidence.KindPlanCreated && policyDecisionSHA256 != "" {
		d[p.PlanSHA256] = policyDecisionSHA256
	}
}

// demoHash is a stable fake digest: sha256(label/n), 64 hex.
func demoHash(label string, n int) string {
	sum := sha256.Sum256([]byte(label + "/" + string(rune('a'+n%26)) + hex.EncodeToString([]byte{byte(n >> 8), byte(n)})))
	return hex.EncodeToString(sum[:])
}

func demoSubjects(t evidence.Transition) []evidence.Subject {
	switch {
	case t.Plan != nil:
		return []evidence.Subject{{Name: "plan", Digest: map[string]string{"sha256": t.Plan.PlanSHA256}}}
	case t.Apply != nil:
		return []evidence.Subject{{Name: "plan", Digest: map[string]string{"sha256": t.Apply.PlanSHA256}}}
	case t.Approval != nil:
		return []evidence.Subject{{Name: "plan", Digest: map[string]string{"sha256": t.Approval.PlanSHA256}}}
	case t.Source.CommitSHA != "":
		return []evidence.Subject{{Name: t.Source.Repository, Digest: map[string]string{"gitCommit": t.Source.CommitSHA}}}
	}
	sum := sha256.Sum256([]byte(t.ChangeID + "/" + string(t.Kind)))
	return []evidence.Subject{{Name: t.ChangeID, Digest: map[string]string{"sha256": hex.EncodeToString(sum[:])}}}
}
