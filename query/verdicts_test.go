package query_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"evident.dev/evident/api"
	"evident.dev/evident/approvals"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/policies"
	"evident.dev/evident/query"
	"evident.dev/evident/verifier"
)

// verdictRig is the whole judging side of a server: ingest with the
// approval judge and the bundled policies, the apply gate, and GraphQL, on
// a real ledger, with a clock the test moves.
type verdictRig struct {
	t     *testing.T
	clock atomic.Int64
	log   *ledger.Log
	url   string
	gate  policies.Gate
	gql   *query.GraphQL
	keys  map[string]ed25519.PrivateKey // signer name -> key
}

func (r *verdictRig) now() time.Time     { return time.Unix(0, r.clock.Load()).UTC() }
func (r *verdictRig) setNow(t time.Time) { r.clock.Store(t.UnixNano()) }

func newVerdictRig(t *testing.T, start time.Time) *verdictRig {
	r := &verdictRig{t: t, keys: map[string]ed25519.PrivateKey{}}
	r.setNow(start)
	logPriv := seededKey("log")
	signer, err := checkpoint.NewSigner(testOrigin, logPriv)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := ledger.Open(ledger.Config{Dir: t.TempDir(), Origin: testOrigin, Signer: signer, CacheMB: 16, Clock: r.now})
	if err != nil {
		t.Fatal(err)
	}
	r.log = lg
	// A runner that may relay approvals, one that may not, and approvers
	// signing their own; mallory is in no group of the directory.
	trust := verifier.TrustConfig{Groups: map[string][]string{
		"platform-infra": {"alice@example.com", "bob@example.com", "carol@example.com"},
		"security":       {"bob@example.com", "dave@example.com"},
	}}
	add := func(name, approver string, relay bool) {
		k := seededKey("verdicts-" + name)
		r.keys[name] = k
		trust.Runners = append(trust.Runners, verifier.Runner{Name: name, Approver: approver, PublicKey: pubPEM(t, k),
			Scope: verifier.Scope{Environments: []string{"*"}, RelayApprovals: relay}})
	}
	add("relay", "", true)
	add("ci", "", false)
	for _, who := range []string{"alice", "bob", "carol", "dave", "mallory"} {
		add(who, who+"@example.com", false)
	}
	set, err := policies.Load(context.Background(), policies.Source{})
	if err != nil {
		t.Fatal(err)
	}
	info := set.Info()
	if err := ingest.EnsureTrust(context.Background(), lg, logPriv, trust, ingest.Genesis{
		Operator: "test", Origin: testOrigin, LogKey: signer.VerifierKey(), Now: start, Policies: &info,
	}); err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(trust, logPriv.Public())
	if err != nil {
		t.Fatal(err)
	}
	approvalJudge, err := approvals.New(ingest.ChangeLog(lg), approvals.Config{Groups: trust.Groups})
	if err != nil {
		t.Fatal(err)
	}
	tracker := policies.NewTracker(lg, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- tracker.Run(ctx) }()
	judge, err := policies.NewJudge(policies.JudgeConfig{Set: set, Log: lg, Exceptions: tracker, Approvals: approvalJudge, Clock: r.now})
	if err != nil {
		t.Fatal(err)
	}
	r.gate = policies.Gate{Approvals: approvalJudge, Policies: judge}
	auth, err := query.NewAuthenticator(query.AccessConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if r.gql, err = query.NewGraphQL(query.GraphQLConfig{Store: lg, Auth: auth, Approvals: approvalJudge, Clock: r.now}); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	ingest.New(ingest.Config{Log: lg, Verifier: v, Clock: r.now,
		Judges: []ingest.Judge{ingest.ApprovalJudge{Approvals: approvalJudge}, policyJudge{judge}}}).Register(mux)
	srv := httptest.NewServer(mux)
	r.url = srv.URL
	t.Cleanup(func() {
		srv.Close()
		cancel()
		if err := <-stopped; err != nil && err != context.Canceled {
			t.Errorf("tracker: %v", err)
		}
		if err := lg.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

type policyJudge struct{ j *policies.Judge }

func (p policyJudge) Judge(ctx context.Context, v *verifier.Verified) (ingest.Judgement, error) {
	out, err := p.j.Judge(ctx, v)
	return ingest.Judgement{Findings: out.Findings, Decision: out.Decision}, err
}

// post signs tr as signer and posts it at the rig's time.
func (r *verdictRig) post(signer string, tr evidence.Transition) api.Receipt {
	r.t.Helper()
	payload, err := json.Marshal(evidence.Statement{Type: evidence.StatementType, PredicateType: evidence.PredicateType,
		Subject: []evidence.Subject{{Name: "change:" + tr.ChangeID, Digest: map[string]string{"sha256": sha(tr.ChangeID)}}}, Predicate: tr})
	if err != nil {
		r.t.Fatal(err)
	}
	env, err := verifier.SignEnvelope(r.keys[signer], payload)
	if err != nil {
		r.t.Fatal(err)
	}
	resp, err := http.Post(r.url+"/v1/records", "application/json", bytes.NewReader(env))
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	if _, err := body.ReadFrom(resp.Body); err != nil {
		r.t.Fatal(err)
	}
	var rc api.Receipt
	if err := json.Unmarshal(body.Bytes(), &rc); err != nil || resp.StatusCode != http.StatusCreated {
		r.t.Fatalf("post %s by %s: %d %v %s", tr.Kind, signer, resp.StatusCode, err, body.String())
	}
	return rc
}

func sha(s string) string { return fmt.Sprintf("%064x", []byte(s))[:64] }

// TestVerdictsNeverDisagree generates many random change histories
// (approvals by directory members and by someone who only claims a group,
// relayed by a signer allowed to relay and by one that is not, revoked,
// expired, bound to another policy decision, self-approved, applies
// delivered two days late, exceptions before and after their expiry) and
// checks that, for every apply, the approval findings, the policies'
// approval rules, the apply gate asked at the apply's time and GraphQL's
// answers all say the same.
func TestVerdictsNeverDisagree(t *testing.T) {
	n := 200
	if testing.Short() {
		n = 40
	}
	base := time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC)
	r := newVerdictRig(t, base)
	rng := rand.New(rand.NewPCG(18, 2026))
	counts := map[string]int{}
	for i := range n {
		t0 := base.Add(time.Duration(i) * 12 * time.Hour)
		r.setNow(t0)
		id := fmt.Sprintf("CHG-V-%03d", i)
		risk := []string{"medium", "high"}[rng.IntN(2)]
		stack := fmt.Sprintf("prod/aws/account-orders-prod/eu-west-1/topics-%03d", i)
		target := evidence.Target{Environment: "prod", Cloud: "aws", Account: "account-orders-prod", Region: "eu-west-1", Stack: stack}
		src := evidence.Source{Repository: "infra-live", PullRequest: 5000 + i, CommitSHA: sha(id)[:40], Branch: "main"}
		plan := sha("plan " + id)
		base := func(kind evidence.Kind, at time.Time, actor string) evidence.Transition {
			return evidence.Transition{Kind: kind, ChangeID: id, OccurredAt: at, Actor: actor, Source: src, Target: target, RiskClass: risk}
		}
		opened := base(evidence.KindChangeOpened, t0, "alice@example.com")
		opened.Change = &evidence.Change{Author: "alice@example.com", Title: "topics"}
		r.post("ci", opened)

		// An exception waiving the approval rule, in force at the apply or
		// expired by then.
		// Some plans also make a bucket public, which only an exception
		// allows (approvals cannot).
		public := rng.IntN(3) == 0
		rule := "change.prod.approvals.risk-class"
		if public {
			rule = "iac.storage.public-bucket.requires-exception"
		}
		exception := rng.IntN(3) == 0
		if exception {
			ex := base(evidence.KindExceptionGranted, t0.Add(time.Minute), "security@example.com")
			expires := t0.Add([]time.Duration{90 * time.Minute, 8 * time.Hour}[rng.IntN(2)])
			ex.Exception = &evidence.Exception{ID: "EXC-" + id, RuleID: rule, Scope: "stack=" + stack,
				Justification: "automated rotation", Owner: "carol@example.com", ApprovedBy: []string{"security@example.com"}, ExpiresAt: expires}
			r.setNow(t0.Add(time.Minute))
			r.post("ci", ex)
			counts["exception"]++
		}
		pl := base(evidence.KindPlanCreated, t0.Add(2*time.Minute), "ci")
		pl.Plan = &evidence.Plan{PlanSHA256: plan, Engine: "opentofu", Actions: evidence.ActionCounts{Update: 1},
			ResourceChanges: []evidence.ResourceChange{{Address: "aws_sns_topic.orders", Type: "aws_sns_topic", Actions: []string{"update"}}}}
		if public {
			pl.Plan.ResourceChanges = append(pl.Plan.ResourceChanges, evidence.ResourceChange{Address: "aws_s3_bucket_acl.assets",
				Type: "aws_s3_bucket_acl", Actions: []string{"create"}, Attributes: map[string]string{"acl": "public-read"}})
			counts["public bucket"]++
		}
		r.setNow(t0.Add(2 * time.Minute))
		planRC := r.post("ci", pl)

		// What the test itself expects of each approval, from the rules of
		// docs/approvals.md, independently of the judge.
		type given struct {
			approver, signer string
			bound            bool
			expires          time.Time
		}
		var gotApprovals []given
		for k := range 1 + rng.IntN(4) {
			at := t0.Add(time.Duration(10+k) * time.Minute)
			who := []string{"alice", "bob", "carol", "dave", "mallory", "bob", "carol"}[rng.IntN(7)]
			signer := []string{who, who, "relay", "ci"}[rng.IntN(4)]
			claimed := [][]string{{"platform-infra"}, {"security"}, {"platform-infra", "security"}}[rng.IntN(3)]
			digest := planRC.PolicyDecisionSHA256
			if rng.IntN(8) == 0 {
				digest = sha("another decision")
			}
			a := base(evidence.KindApprovalGranted, at, who+"@example.com")
			a.Approval = &evidence.Approval{PullRequest: src.PullRequest, CommitSHA: src.CommitSHA, PlanSHA256: plan,
				PolicyDecisionSHA256: digest, Approver: who + "@example.com", Groups: claimed, ApprovedAt: at,
				ExpiresAt: at.Add([]time.Duration{time.Hour, 6 * time.Hour}[rng.IntN(2)])}
			r.setNow(at)
			r.post(signer, a)
			gotApprovals = append(gotApprovals, given{who, signer, digest == planRC.PolicyDecisionSHA256, a.Approval.ExpiresAt})
			counts["approval by "+signer]++
		}
		revoked := ""
		if rng.IntN(6) == 0 {
			who := gotApprovals[rng.IntN(len(gotApprovals))].approver
			revoked = who
			at := t0.Add(20 * time.Minute)
			rv := base(evidence.KindApprovalRevoked, at, who+"@example.com")
			rv.Approval = &evidence.Approval{PullRequest: src.PullRequest, CommitSHA: src.CommitSHA, PlanSHA256: plan,
				Approver: who + "@example.com", Groups: []string{"platform-infra"}, ApprovedAt: at, Reason: "withdrawn"}
			r.setNow(at)
			r.post(who, rv)
			counts["revocation"]++
		}

		// The apply runs at T; the gate is asked then. Its record may arrive
		// two days later (a spool draining).
		T := t0.Add([]time.Duration{30 * time.Minute, 2 * time.Hour}[rng.IntN(2)])
		gd, err := r.gate.Decide(context.Background(), approvals.GateRequest{ChangeID: id, CommitSHA: src.CommitSHA, PlanSHA256: plan,
			Target: evidence.Target{Environment: "prod", Stack: stack}, Actor: "ci"}, T)
		if err != nil {
			t.Fatal(err)
		}
		late := rng.IntN(3) == 0
		r.setNow(T)
		if late {
			r.setNow(T.Add(48 * time.Hour))
			counts["late apply"]++
		}
		ap := base(evidence.KindApplyCompleted, T, "ci")
		ap.Apply = &evidence.Apply{PlanSHA256: plan, Engine: "opentofu", StartedAt: T.Add(-time.Minute), CompletedAt: T}
		applyRC := r.post("ci", ap)

		// The test's own expectation: counted approvals are signed by the
		// approver or a relay, bound to the plan's decision, not revoked,
		// fresh at T and not by the author; their directory groups must
		// cover the groups the plan's decision requires.
		directory := map[string][]string{"alice": {"platform-infra"}, "bob": {"platform-infra", "security"},
			"carol": {"platform-infra"}, "dave": {"security"}}
		covered0, counted0 := map[string]bool{}, 0
		for _, a := range gotApprovals {
			if (a.signer == a.approver || a.signer == "relay") && a.bound && a.approver != revoked && T.Before(a.expires) && a.approver != "alice" {
				counted0++
				for _, g := range directory[a.approver] {
					covered0[g] = true
				}
			}
		}
		var required0 []string
		for _, d := range planRC.Decision.Decisions {
			for _, g := range d.RequiredApprovers {
				if !slices.Contains(required0, g) {
					required0 = append(required0, g)
				}
			}
		}
		expectOK := counted0 > 0 && !slices.ContainsFunc(required0, func(g string) bool { return !covered0[g] })

		approvalProblems := slices.ContainsFunc(applyRC.Findings, func(f evidence.Finding) bool {
			return strings.HasPrefix(f.Code, "approval.") && f.Severity == evidence.SeverityError
		})
		policyNeedsApproval := applyRC.Decision != nil && slices.ContainsFunc(applyRC.Decision.Decisions, func(d evidence.Decision) bool {
			return d.Result == "deny" && len(d.RequiredApprovers) > 0
		})
		waived := applyRC.Decision != nil && slices.ContainsFunc(applyRC.Decision.Decisions, func(d evidence.Decision) bool {
			return d.ExceptionID != ""
		})
		what := fmt.Sprintf("%s (risk %s, public bucket %v, %d approvals, exception %v, late %v): findings %v, decision %+v, gate %s %v",
			id, risk, public, len(gotApprovals), exception, late, applyRC.Findings, applyRC.Decision, gd.Decision, gd.Reasons)

		// 0. The approval judge is right.
		if expectOK == approvalProblems {
			t.Errorf("the approval findings contradict the rules (expected approved: %v): %s", expectOK, what)
		}
		// 1. The approval findings and the policies agree on whether the
		// approvals suffice (an exception in force waives the rule; the
		// approval requirement then is the approval judge's alone).
		if !waived && approvalProblems != policyNeedsApproval {
			t.Errorf("approval findings and policies disagree: %s", what)
		}
		// 2. The gate asked at the apply's time agrees with the log's
		// judgement of that apply, and never allows what the policies deny.
		applyDenied := applyRC.Decision != nil && applyRC.Decision.Result == "deny"
		if (gd.Decision == approvals.Allow) != (!approvalProblems && !applyDenied) {
			t.Errorf("the gate and the apply's judgement disagree: %s", what)
		}
		// 3. GraphQL reads the same judgement.
		res := r.gql.Execute(context.Background(), &query.Identity{Subject: "auditor", Role: query.RoleAuditor}, query.Request{Query: fmt.Sprintf(
			`{ unapproved: changes(filter: {changeId: %q}, appliedWithoutFreshApproval: true) { nodes { id } }
			   change(id: %q) { approvals { index counts notCountedBecause directoryGroups } } }`, id, id)})
		if len(res.Errors) > 0 {
			t.Fatalf("%s: %v", id, res.Errors)
		}
		b, _ := json.Marshal(res.Data)
		var ans struct {
			Unapproved struct{ Nodes []struct{ ID string } }
			Change     struct {
				Approvals []struct {
					Counts            *bool
					NotCountedBecause *string
					DirectoryGroups   []string
				}
			}
		}
		if err := json.Unmarshal(b, &ans); err != nil {
			t.Fatal(err)
		}
		if (len(ans.Unapproved.Nodes) == 1) != approvalProblems {
			t.Errorf("appliedWithoutFreshApproval says %v: %s", ans.Unapproved.Nodes, what)
		}
		covered, counted := map[string]bool{}, 0
		for _, a := range ans.Change.Approvals {
			if a.Counts == nil {
				continue // a revocation
			}
			if *a.Counts {
				counted++
				for _, g := range a.DirectoryGroups {
					covered[g] = true
				}
			} else if a.NotCountedBecause == nil {
				t.Errorf("%s: an approval that does not count says no reason", id)
			}
		}
		required := []string{"platform-infra"}
		if risk == "high" {
			required = append(required, "security")
		}
		enough := counted > 0 && !slices.ContainsFunc(required, func(g string) bool { return !covered[g] })
		if enough == approvalProblems {
			t.Errorf("GraphQL's counted approvals (%d, groups %v) and the findings disagree: %s", counted, covered, what)
		}
		if approvalProblems {
			counts["apply flagged"]++
		} else {
			counts["apply approved"]++
		}
	}
	t.Logf("%d changes: %v", n, counts)
	// A generator that never produced both outcomes tests nothing.
	if counts["apply flagged"] == 0 || counts["apply approved"] == 0 || counts["approval by ci"] == 0 || counts["late apply"] == 0 ||
		counts["public bucket"] == 0 || counts["exception"] == 0 {
		t.Fatalf("the generated histories miss a case: %v", counts)
	}
}
