package policies_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"evident.dev/evident/approvals"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
	"evident.dev/evident/policies"
)

const (
	dbRule      = "iac.prod.database.replacement.requires-db-owner"
	destructive = "iac.prod.destructive.requires-security"
	iamRule     = "iac.iam.wildcard-action.requires-exception"
	bucketRule  = "iac.storage.public-bucket.requires-exception"
	riskRule    = "change.prod.approvals.risk-class"
	mutableTag  = "supply-chain.prod.image.mutable-tag"
	unsigned    = "supply-chain.prod.image.unsigned"
	emergency   = "change.emergency.post-hoc-review"
)

func dbReplacement(change, env string) evidence.Transition {
	tr := record(evidence.KindPlanCreated, change, env)
	tr.RiskClass = "high"
	tr.Plan.Actions = evidence.ActionCounts{Update: 1, Replace: 1}
	tr.Plan.ResourceChanges = []evidence.ResourceChange{
		{Address: "aws_db_instance.orders", Type: "aws_db_instance", Actions: []string{"update"}},
		{Address: "aws_db_parameter_group.orders", Type: "aws_db_parameter_group", Actions: []string{"create", "delete"}},
	}
	return tr
}

// A production database replacement is denied until database owners
// approve; the decision is stored with the entry, its digest is what
// approvals bind to, and the deny is a finding.
func TestDatabaseReplacementNeedsDatabaseOwners(t *testing.T) {
	s := newServer(t, policies.Source{},
		approver{"dana", "dana@example.com", []string{"database-owners"}},
		approver{"sam", "sam@example.com", []string{"platform-infra", "security"}},
		approver{"mallory", "mallory@example.com", []string{"platform-infra"}})
	rc := s.mustPost(dbReplacement("CHG-DB-1", "prod"))
	planDecision := rc.PolicyDecisionSHA256
	d := decision(t, rc, dbRule)
	if d.Result != "deny" || d.Severity != "high" || !slices.Equal(d.RequiredApprovers, []string{"database-owners"}) ||
		!slices.Equal(d.Evidence, []string{"plan.action.replace.aws_db_parameter_group.orders"}) {
		t.Fatalf("decision = %+v", d)
	}
	// Approvals lift every deny of this plan: its result is warn, and the
	// gate requires the approvals.
	if rc.Decision.Result != "warn" || rc.Decision.BundleSHA256 != s.set.Digest() {
		t.Fatalf("policy = %+v, want warn by bundle %s", rc.Decision, s.set.Digest())
	}
	e := s.entry(rc.Index)
	if e.Meta.Decision == nil || e.Meta.Decision.Digest() != rc.PolicyDecisionSHA256 || rc.PolicyDecisionSHA256 != rc.Decision.Digest() {
		t.Fatalf("stored decision digest %v, receipt %s", e.Meta.Decision, rc.PolicyDecisionSHA256)
	}
	if f, ok := finding(rc, "policy.approval-required"); !ok || f.Evidence["requiredApprovers"] == "" {
		t.Fatalf("findings = %+v", rc.Findings)
	}
	if f, ok := finding(rc, "policy.deny"); ok {
		t.Fatalf("a deny that approvals lift is a policy.deny finding on the plan: %+v", f)
	}

	// Not in production: no such rule fires.
	if rc := s.mustPost(dbReplacement("CHG-DB-2", "staging")); hasRule(rc, dbRule) || rc.Decision.Result != "allow" {
		t.Fatalf("staging decision = %+v", rc.Decision)
	}

	// The apply of the same plan: denied without approvals, lifted once
	// database owners, platform-infra and security approved this plan.
	apply := record(evidence.KindApplyStarted, "CHG-DB-1", "prod")
	rc = s.mustPost(apply)
	if d := decision(t, rc, dbRule); d.Result != "deny" || rc.Decision.Result != "deny" {
		t.Fatalf("apply without approvals: %+v", rc.Decision)
	}
	if _, ok := finding(rc, "policy.deny"); !ok {
		t.Fatalf("apply without approvals: findings %+v", rc.Findings)
	}
	// Claiming a group is not being in it: the directory says who is.
	s.mustPost(bind(approval("CHG-DB-1", "mallory@example.com", "database-owners"), planDecision))
	s.mustPost(bind(approval("CHG-DB-1", "sam@example.com", "platform-infra", "security"), planDecision))
	apply.OccurredAt = t0.Add(30 * time.Second)
	if d := decision(t, s.mustPost(apply), dbRule); d.Result != "deny" {
		t.Fatalf("apply approved by someone who only claims database-owners: %+v", d)
	}
	s.mustPost(bind(approval("CHG-DB-1", "dana@example.com", "database-owners"), planDecision))
	apply.OccurredAt = t0.Add(time.Minute)
	rc = s.mustPost(apply)
	if d := decision(t, rc, dbRule); d.Result != "allow" || !strings.Contains(d.Message, "Approved by database-owners") {
		t.Fatalf("approved apply: %+v", d)
	}
	if rc.Decision.Result != "allow" {
		t.Fatalf("approved apply policy = %+v", rc.Decision)
	}
}

// Production applies need the approvals the risk class names; an approval
// of another plan, an expired one or the author's own does not count.
func TestApprovalsByRiskClass(t *testing.T) {
	s := newServer(t, policies.Source{},
		approver{"alice", "alice@example.com", []string{"platform-infra"}},
		approver{"bob", "bob@example.com", []string{"platform-infra"}})
	opened := record(evidence.KindChangeOpened, "CHG-R-1", "prod")
	opened.RiskClass = "medium"
	s.mustPost(opened)
	rc := s.mustPost(record(evidence.KindPlanCreated, "CHG-R-1", "prod"))
	planDecision := rc.PolicyDecisionSHA256
	if d := decision(t, rc, riskRule); d.Result != "deny" || !slices.Equal(d.RequiredApprovers, []string{"platform-infra"}) {
		t.Fatalf("plan decision = %+v", d)
	}
	// The author approving their own change does not count.
	s.mustPost(bind(approval("CHG-R-1", "alice@example.com", "platform-infra"), planDecision))
	// An approval of another plan does not count.
	other := bind(approval("CHG-R-1", "bob@example.com", "platform-infra"), planDecision)
	other.Approval.PlanSHA256 = sha("another plan")
	s.mustPost(other)
	apply := record(evidence.KindApplyCompleted, "CHG-R-1", "prod")
	if d := decision(t, s.mustPost(apply), riskRule); d.Result != "deny" {
		t.Fatalf("apply with only the author's and another plan's approvals: %+v", d)
	}
	s.mustPost(bind(approval("CHG-R-1", "bob@example.com", "platform-infra"), planDecision))
	apply.OccurredAt = t0.Add(time.Minute)
	if d := decision(t, s.mustPost(apply), riskRule); d.Result != "allow" {
		t.Fatalf("approved apply: %+v", d)
	}
	// A day later the approval has expired.
	s.setNow(t0.Add(25 * time.Hour))
	apply.OccurredAt = t0.Add(25 * time.Hour)
	if d := decision(t, s.mustPost(apply), riskRule); d.Result != "deny" {
		t.Fatalf("apply after the approval expired: %+v", d)
	}
}

func TestDestructiveProductionChangeNeedsSecurity(t *testing.T) {
	s := newServer(t, policies.Source{})
	tr := record(evidence.KindPlanCreated, "CHG-D-1", "prod")
	tr.Plan.Destructive = true
	tr.Plan.ResourceChanges = []evidence.ResourceChange{{Address: "aws_s3_bucket.logs", Type: "aws_s3_bucket", Actions: []string{"delete"}}}
	d := decision(t, s.mustPost(tr), destructive)
	if d.Result != "deny" || !slices.Equal(d.RequiredApprovers, []string{"security"}) || !slices.Equal(d.Evidence, []string{"plan.action.delete.aws_s3_bucket.logs"}) {
		t.Fatalf("decision = %+v", d)
	}
	tr.ChangeID, tr.Target.Environment = "CHG-D-2", "dev"
	if rc := s.mustPost(tr); hasRule(rc, destructive) {
		t.Fatalf("dev decision = %+v", rc.Decision)
	}
}

func publicBucket(change, env string) evidence.Transition {
	tr := record(evidence.KindPlanCreated, change, env)
	tr.Target.Stack = "prod/aws/account-shared-prod/ap-southeast-1/public-artifacts"
	tr.Plan.ResourceChanges = []evidence.ResourceChange{{Address: "aws_s3_bucket_acl.artifacts", Type: "aws_s3_bucket_acl",
		Actions: []string{"create"}, Attributes: map[string]string{"acl": "public-read"}}}
	return tr
}

// A public bucket needs an exception: denied without, waived (a warning
// naming the exception) with one whose scope covers the change, denied
// again once it expires, naming the expired exception.
func TestPublicBucketExceptionAndExpiry(t *testing.T) {
	s := newServer(t, policies.Source{})
	rc0 := s.mustPost(publicBucket("CHG-B-1", "prod"))
	if d := decision(t, rc0, bucketRule); d.Result != "deny" || d.ExceptionID != "" || rc0.Decision.Result != "deny" {
		t.Fatalf("without exception: %+v", rc0.Decision)
	}
	expires := t0.Add(30 * 24 * time.Hour)
	s.mustPost(exception("CHG-B-1", "EXC-2026-071", bucketRule, "infra-live:prod/aws/account-shared-prod/*", expires))
	again := publicBucket("CHG-B-1", "prod")
	again.OccurredAt = t0.Add(time.Minute)
	rc := s.mustPost(again)
	d := decision(t, rc, bucketRule)
	if d.Result != "warn" || d.ExceptionID != "EXC-2026-071" || !strings.Contains(d.Message, "Waived by exception EXC-2026-071") {
		t.Fatalf("with exception: %+v", d)
	}
	if f, ok := finding(rc, "policy.exception-used"); !ok || f.Evidence["exceptionId"] != "EXC-2026-071" {
		t.Fatalf("findings = %+v", rc.Findings)
	}
	// Another stack is outside the exception's scope.
	out := publicBucket("CHG-B-2", "prod")
	out.Target.Stack = "prod/aws/account-payments-prod/ap-southeast-1/orders"
	s.sync()
	if d := decision(t, s.mustPost(out), bucketRule); d.Result != "deny" {
		t.Fatalf("out of scope: %+v", d)
	}
	// Another change on the same stack uses the standing exception, which
	// the tracker has read.
	s.sync()
	if d := decision(t, s.mustPost(publicBucket("CHG-B-3", "prod")), bucketRule); d.ExceptionID != "EXC-2026-071" {
		t.Fatalf("standing exception not used by another change: %+v", d)
	}
	// Past its expiry the exception fails closed.
	s.setNow(expires.Add(time.Second))
	late := publicBucket("CHG-B-1", "prod")
	late.OccurredAt = expires.Add(time.Second)
	rc = s.mustPost(late)
	d = decision(t, rc, bucketRule)
	if d.Result != "deny" || d.ExceptionID != "" || !slices.Contains(d.Evidence, "exception.expired.EXC-2026-071") {
		t.Fatalf("after expiry: %+v", d)
	}
	if f, ok := finding(rc, "policy.exception-expired"); !ok || f.Evidence["exceptionId"] != "EXC-2026-071" {
		t.Fatalf("findings after expiry = %+v", rc.Findings)
	}
	// A record claiming an earlier time does not revive it.
	s.mustPost(exception("CHG-B-4", "EXC-2026-090", bucketRule, "repository=infra-live,stack=*public-artifacts", expires.Add(48*time.Hour)))
	early := publicBucket("CHG-B-4", "prod")
	early.OccurredAt = t0
	s.setNow(expires.Add(49 * time.Hour))
	if d := decision(t, s.mustPost(early), bucketRule); d.Result != "deny" {
		t.Fatalf("backdated record used an expired exception: %+v", d)
	}
}

// An exception.expired record ends an exception before its expiry.
func TestExceptionEndedEarly(t *testing.T) {
	s := newServer(t, policies.Source{})
	s.mustPost(exception("CHG-E-1", "EXC-5", bucketRule, "repository=infra-live", t0.Add(30*24*time.Hour)))
	if d := decision(t, s.mustPost(publicBucket("CHG-E-1", "prod")), bucketRule); d.ExceptionID != "EXC-5" {
		t.Fatalf("active exception not used: %+v", d)
	}
	end := exception("CHG-E-1", "EXC-5", "", "", time.Time{})
	end.Kind = evidence.KindExceptionExpired
	end.Exception = &evidence.Exception{ID: "EXC-5"}
	s.mustPost(end)
	tr := publicBucket("CHG-E-1", "prod")
	tr.OccurredAt = t0.Add(time.Minute)
	if d := decision(t, s.mustPost(tr), bucketRule); d.Result != "deny" {
		t.Fatalf("ended exception still used: %+v", d)
	}
}

func TestWildcardIAMNeedsException(t *testing.T) {
	s := newServer(t, policies.Source{})
	tr := record(evidence.KindPlanCreated, "CHG-I-1", "dev")
	tr.Plan.ResourceChanges = []evidence.ResourceChange{{Address: "aws_iam_policy.deploy", Type: "aws_iam_policy", Actions: []string{"create"},
		Attributes: map[string]string{"policy": `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}`}}}
	d := decision(t, s.mustPost(tr), iamRule)
	if d.Result != "deny" || !slices.Equal(d.Evidence, []string{"plan.resource.aws_iam_policy.deploy.policy.action.s3:*"}) {
		t.Fatalf("decision = %+v", d)
	}
	s.mustPost(exception("CHG-I-1", "EXC-IAM-1", iamRule, "change=CHG-I-1", t0.Add(7*24*time.Hour)))
	tr.OccurredAt = t0.Add(time.Minute)
	if d := decision(t, s.mustPost(tr), iamRule); d.Result != "warn" || d.ExceptionID != "EXC-IAM-1" {
		t.Fatalf("with exception: %+v", d)
	}
	tr.ChangeID = "CHG-I-2"
	tr.Plan.ResourceChanges[0].Attributes["policy"] = `{"Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":"*"}]}`
	if rc := s.mustPost(tr); hasRule(rc, iamRule) {
		t.Fatalf("specific actions denied: %+v", rc.Decision)
	}
}

func admission(change, image string, signed bool) evidence.Transition {
	tr := record(evidence.KindPlanCreated, change, "prod")
	tr.Kind, tr.Plan, tr.Artifacts = evidence.KindArtifactAdmitted, nil, nil
	tr.ArtifactAdmission = &evidence.ArtifactAdmission{Image: image, Digest: "sha256:" + planSHA, Signed: signed, Result: "admitted"}
	return tr
}

func TestProductionImages(t *testing.T) {
	s := newServer(t, policies.Source{})
	pinned := "registry.example.com/payments/orders@sha256:" + planSHA
	rc := s.mustPost(admission("CHG-A-1", "registry.example.com/payments/orders:latest", true))
	if d := decision(t, rc, mutableTag); d.Result != "deny" || hasRule(rc, unsigned) {
		t.Fatalf("mutable tag: %+v", rc.Decision)
	}
	rc = s.mustPost(admission("CHG-A-2", pinned, false))
	if d := decision(t, rc, unsigned); d.Result != "deny" || d.Severity != "critical" || hasRule(rc, mutableTag) {
		t.Fatalf("unsigned: %+v", rc.Decision)
	}
	if rc := s.mustPost(admission("CHG-A-3", pinned, true)); rc.Decision.Result != "allow" || len(rc.Decision.Decisions) != 0 {
		t.Fatalf("signed, pinned: %+v", rc.Decision)
	}
	staging := admission("CHG-A-4", "registry.example.com/payments/orders:latest", false)
	staging.Target.Environment = "staging"
	if rc := s.mustPost(staging); rc.Decision.Result != "allow" {
		t.Fatalf("staging: %+v", rc.Decision)
	}
}

func TestEmergencyChangeNeedsPostHocReview(t *testing.T) {
	s := newServer(t, policies.Source{})
	s.mustPost(record(evidence.KindBreakglassOpened, "CHG-X-1", "prod"))
	apply := record(evidence.KindApplyCompleted, "CHG-X-1", "dev")
	if d := decision(t, s.mustPost(apply), emergency); d.Result != "warn" {
		t.Fatalf("emergency apply: %+v", d)
	}
	closed := record(evidence.KindBreakglassClosed, "CHG-X-1", "prod")
	rc := s.mustPost(closed)
	if d := decision(t, rc, emergency); d.Result != "deny" || !slices.Equal(d.RequiredApprovers, []string{"change-review"}) {
		t.Fatalf("closed without review: %+v", d)
	}
	closed.Breakglass.ReviewedBy = "dave@example.com"
	if rc := s.mustPost(closed); hasRule(rc, emergency) {
		t.Fatalf("reviewed close: %+v", rc.Decision)
	}
}

// Every exception invariant is enforced at ingest: a grant without owner,
// expiry, scope or justification, or with an expiry that is past, before
// the grant or too far away, or a scope that does not parse, is refused
// with the field named, and nothing is appended.
func TestExceptionInvariants(t *testing.T) {
	s := newServer(t, policies.Source{})
	valid := func() evidence.Transition {
		return exception("CHG-V-1", "EXC-V", bucketRule, "infra-live:prod/*", t0.Add(30*24*time.Hour))
	}
	for _, c := range []struct {
		name  string
		mut   func(*evidence.Exception)
		field string
	}{
		{"no owner", func(e *evidence.Exception) { e.Owner = "" }, "predicate.exception.owner"},
		{"no expiry", func(e *evidence.Exception) { e.ExpiresAt = time.Time{} }, "predicate.exception.expiresAt"},
		{"no scope", func(e *evidence.Exception) { e.Scope = "" }, "predicate.exception.scope"},
		{"no justification", func(e *evidence.Exception) { e.Justification = "" }, "predicate.exception.justification"},
		{"no approvers", func(e *evidence.Exception) { e.ApprovedBy = nil }, "predicate.exception.approvedBy"},
		{"no rule", func(e *evidence.Exception) { e.RuleID = "" }, "predicate.exception.ruleId"},
		{"scope without a stack", func(e *evidence.Exception) { e.Scope = "infra-live" }, "predicate.exception.scope"},
		{"unknown scope key", func(e *evidence.Exception) { e.Scope = "team=payments" }, "predicate.exception.scope"},
		{"expiry before the grant", func(e *evidence.Exception) { e.ExpiresAt = t0.Add(-time.Hour) }, "predicate.exception.expiresAt"},
		{"expiry already past", func(e *evidence.Exception) { e.ExpiresAt = t0.Add(30 * time.Minute) }, "predicate.exception.expiresAt"},
		{"expiry too far", func(e *evidence.Exception) { e.ExpiresAt = t0.Add(400 * 24 * time.Hour) }, "predicate.exception.expiresAt"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := s.log.Size()
			tr := valid()
			c.mut(tr.Exception)
			a := s.post(tr)
			if a.status != http.StatusBadRequest || a.refusal.Code != "invalid_record" {
				t.Fatalf("answer %d %+v", a.status, a.refusal)
			}
			if !slices.ContainsFunc(a.refusal.Fields, func(f evidence.FieldError) bool { return f.Field == c.field }) {
				t.Fatalf("refusal %+v does not name %s", a.refusal, c.field)
			}
			if s.log.Size() != before {
				t.Fatal("a refused exception was appended")
			}
		})
	}
	if a := s.post(valid()); a.status != http.StatusCreated {
		t.Fatalf("valid exception: %d %+v", a.status, a.refusal)
	}
}

// Exceptions close to expiry are listed, soonest first.
func TestExpiringExceptions(t *testing.T) {
	s := newServer(t, policies.Source{})
	s.mustPost(exception("CHG-L-1", "EXC-LATER", bucketRule, "repository=infra-live", t0.Add(20*24*time.Hour)))
	s.mustPost(exception("CHG-L-2", "EXC-SOON", iamRule, "repository=infra-live", t0.Add(3*24*time.Hour)))
	s.mustPost(exception("CHG-L-3", "EXC-SOONER", iamRule, "repository=infra-live", t0.Add(2*24*time.Hour)))
	s.sync()
	got := s.tracker.Expiring(s.now(), 7*24*time.Hour)
	ids := []string{}
	for _, e := range got {
		ids = append(ids, e.ID)
	}
	if !slices.Equal(ids, []string{"EXC-SOONER", "EXC-SOON"}) {
		t.Fatalf("expiring within 7 days = %v", ids)
	}
	if got := s.tracker.Expiring(t0.Add(10*24*time.Hour), 30*24*time.Hour); len(got) != 1 || got[0].ID != "EXC-LATER" {
		t.Fatalf("expiring after 10 days = %+v", got)
	}
}

// A production infra change is tracked as it goes; closing it without the
// apply log is a finding on the closing entry, and the rates count it.
func TestCompleteness(t *testing.T) {
	s := newServer(t, policies.Source{})
	full := func(change string, withLog bool) {
		s.mustPost(record(evidence.KindChangeOpened, change, "prod"))
		s.mustPost(record(evidence.KindPlanCreated, change, "prod"))
		s.mustPost(approval(change, "bob@example.com", "platform-infra", "security"))
		apply := record(evidence.KindApplyCompleted, change, "prod")
		if withLog {
			apply.Artifacts = []evidence.Artifact{{Name: "apply-log", Digest: "sha256:" + sha("log")}}
		}
		s.mustPost(apply)
	}
	full("CHG-C-1", true)
	s.sync()
	st, ok := s.tracker.Change("CHG-C-1")
	if !ok || st.Class != "production-infra-change" || st.Closed || !slices.Equal(st.Missing, []string{"verification.completed"}) {
		t.Fatalf("open change = %+v", st)
	}
	rc := s.mustPost(record(evidence.KindVerificationCompleted, "CHG-C-1", "prod"))
	if _, ok := finding(rc, "completeness.missing"); ok {
		t.Fatalf("complete change got a completeness finding: %+v", rc.Findings)
	}
	full("CHG-C-2", false)
	rc = s.mustPost(record(evidence.KindVerificationCompleted, "CHG-C-2", "prod"))
	f, ok := finding(rc, "completeness.missing")
	if !ok || f.Evidence["missing"] != "artifact:apply-log" || f.Evidence["class"] != "production-infra-change" {
		t.Fatalf("findings = %+v", rc.Findings)
	}
	s.mustPost(record(evidence.KindPlanCreated, "CHG-C-3", "dev"))
	s.sync()
	st, _ = s.tracker.Change("CHG-C-2")
	if !st.Closed || st.Complete() {
		t.Fatalf("CHG-C-2 = %+v", st)
	}
	incomplete := s.tracker.Changes(func(st policies.Status) bool { return st.Closed && !st.Complete() })
	if len(incomplete) != 1 || incomplete[0].ChangeID != "CHG-C-2" {
		t.Fatalf("closed incomplete changes = %+v", incomplete)
	}
	if all := s.tracker.Changes(nil); len(all) != 3 {
		t.Fatalf("changes = %+v", all)
	}
	rates := s.tracker.Rates()
	want := []policies.Rate{
		{Environment: "dev", Class: "non-production-infra-change", Changes: 1, Rate: 1},
		{Environment: "prod", Class: "production-infra-change", Changes: 2, Closed: 2, Complete: 1, Rate: 0.5},
	}
	if !slices.Equal(rates, want) {
		t.Fatalf("rates = %+v, want %+v", rates, want)
	}
	// The aggregates follow each change as it moves: CHG-C-1 counted open,
	// then closed and complete; only CHG-C-2 still lacks evidence.
	if m := s.tracker.Missing(); len(m) != 1 || !maps.Equal(m["prod"], map[string]int{"artifact:apply-log": 1}) {
		t.Fatalf("missing = %v", m)
	}
}

// Operators' Rego in a directory joins the bundled rules and changes the
// set's digest; the server records the active set in a trust.updated entry.
func TestOperatorPoliciesAndTrustRecord(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/payments.rego", `package evident.rules.payments

deny contains {"ruleId": "payments.restricted-data.requires-dpo", "severity": "high",
	"message": "Changes to restricted data need the data protection officer.", "requiredApprovers": ["dpo"]} if {
	input.change.dataClass == "restricted"
	input.record.phase == "plan"
}
`)
	s := newServer(t, policies.Source{Dir: dir})
	bundledOnly, err := policies.Load(context.Background(), policies.Source{})
	if err != nil {
		t.Fatal(err)
	}
	if s.set.Digest() == bundledOnly.Digest() {
		t.Fatal("an operator module did not change the digest")
	}
	tr := record(evidence.KindPlanCreated, "CHG-O-1", "staging")
	tr.Target.DataClass = "restricted"
	if d := decision(t, s.mustPost(tr), "payments.restricted-data.requires-dpo"); d.Result != "deny" {
		t.Fatalf("operator rule: %+v", d)
	}
	// The genesis names the active set, with files to recompute its digest.
	genesis, err := s.entry(0).Statement()
	if err != nil {
		t.Fatal(err)
	}
	ps := genesis.Predicate.Bootstrap.Policies
	if ps == nil || ps.BundleSHA256 != s.set.Digest() || !slices.ContainsFunc(ps.Modules, func(m evidence.PolicyModule) bool {
		return m.Path == "operator/payments.rego"
	}) {
		t.Fatalf("recorded policy set = %+v", ps)
	}
	var lines strings.Builder
	for _, m := range ps.Modules {
		lines.WriteString(m.SHA256 + "  " + m.Path + "\n")
	}
	if sha(lines.String()) != ps.BundleSHA256 {
		t.Fatal("bundleSha256 is not the digest of the module list")
	}

	// A restart with another set records it once in a trust.updated entry.
	for range 2 {
		s.restartTrust(bundledOnly)
	}
	es, err := s.log.Entries(context.Background(), ledger.Query{Name: ledger.TermKind, Value: string(evidence.KindTrustUpdated)})
	if err != nil || len(es) != 1 {
		t.Fatalf("trust.updated entries: %d, %v", len(es), err)
	}
	st, err := es[0].Statement()
	if err != nil {
		t.Fatal(err)
	}
	if p := st.Predicate.Trust.Policies; p == nil || p.BundleSHA256 != bundledOnly.Digest() {
		t.Fatalf("trust.updated policies = %+v", p)
	}
}

// Records judged concurrently get the decision each would get alone (the
// memo is shared), and the tracker counts every change.
func TestConcurrentJudging(t *testing.T) {
	s := newServer(t, policies.Source{})
	const workers, each = 6, 15
	digests := make(chan string, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				tr := dbReplacement(fmt.Sprintf("CHG-P-%d-%d", w, i), "prod")
				a := s.post(tr)
				if a.status != http.StatusCreated || a.receipt.Decision == nil {
					t.Errorf("post: %d %+v", a.status, a.refusal)
					return
				}
				digests <- a.receipt.PolicyDecisionSHA256
			}
		}()
	}
	wg.Wait()
	close(digests)
	seen := map[string]int{}
	for d := range digests {
		seen[d]++
	}
	if len(seen) != 1 {
		t.Fatalf("records of one shape got %d different decisions", len(seen))
	}
	s.sync()
	rates := s.tracker.Rates()
	if len(rates) != 1 || rates[0].Changes != workers*each {
		t.Fatalf("rates = %+v", rates)
	}
}

// With the policies on, the apply gate takes the required approvers from
// the plan's decision: approvals by those groups, bound to the decision's
// digest, let the apply through; without security's it is denied.
func TestGateUsesThePlanDecision(t *testing.T) {
	s := newServer(t, policies.Source{},
		approver{"dana", "dana@example.com", []string{"database-owners"}},
		approver{"sam", "sam@example.com", []string{"platform-infra"}},
		approver{"sue", "sue@example.com", []string{"security"}})
	gate, err := approvals.New(approvals.ChangeLogFunc(func(ctx context.Context, id string) ([]*evidence.Entry, error) {
		return s.log.Entries(ctx, ledger.Query{Name: ledger.TermChange, Value: id, Limit: 10000})
	}), approvals.Config{Groups: s.trust.Groups})
	if err != nil {
		t.Fatal(err)
	}
	plan := s.mustPost(dbReplacement("CHG-G-1", "prod"))
	if plan.Decision.Result != "warn" {
		t.Fatalf("plan decision %+v", plan.Decision)
	}
	approve := func(email, group string) {
		a := approval("CHG-G-1", email, group)
		a.Approval.PolicyDecisionSHA256 = plan.PolicyDecisionSHA256
		s.mustPost(a)
	}
	ask := func() *approvals.GateDecision {
		d, err := gate.Decide(context.Background(), approvals.GateRequest{ChangeID: "CHG-G-1", CommitSHA: commit, PlanSHA256: planSHA,
			Target: evidence.Target{Environment: "prod", Stack: stack}, Actor: "ci"}, s.now())
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	approve("dana@example.com", "database-owners")
	approve("sam@example.com", "platform-infra")
	if d := ask(); d.Decision != approvals.Deny || !slices.Contains(d.RequiredApprovers, "security") {
		t.Fatalf("gate without security: %+v", d)
	}
	approve("sue@example.com", "security")
	if d := ask(); d.Decision != approvals.Allow {
		t.Fatalf("gate with every required group: %+v", d)
	}
}
