package approvals_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	"evident.dev/evident/approvals"
	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
)

// The apply gate's approval half: a change by alice, its plan, and the
// gate asked before and after carol, a database owner, approved that exact
// plan of that exact commit. The entries come from a ChangeLog; here, a
// slice of signed entries. With no policy decision on the plan, the
// required group comes from the configured rule.
func ExampleApprovals_Decide() {
	const (
		commit = "8fb2d7e2705ca5b1f48ba233dc28daaccb8f5480"
		plan   = "1892634ae11ecdf378f85c86a9bc98e81f6003c34d0e999d9046d62c09f654cd"
	)
	start := time.Date(2026, 7, 3, 9, 0, 0, 0, time.UTC)
	keyOf := func(name string) ed25519.PrivateKey {
		seed := sha256.Sum256([]byte(name))
		return ed25519.NewKeyFromSeed(seed[:])
	}

	// Decide reads the entries as the log holds them: signatures checked,
	// and findings (such as approval.unauthorized-signer, see Judge) added
	// when the log took them.
	var log []*evidence.Entry
	record := func(signer string, p evidence.Transition) {
		p.ChangeID, p.Actor = "CHG-1001", signer
		p.Source = evidence.Source{Repository: "infra-live", PullRequest: 4812, CommitSHA: commit}
		p.Target = evidence.Target{Environment: "prod", Stack: "prod/rds-orders"}
		payload, _ := json.Marshal(evidence.Statement{
			Type: evidence.StatementType, PredicateType: evidence.PredicateType, Predicate: p,
			Subject: []evidence.Subject{{Name: "plan", Digest: map[string]string{"sha256": plan}}},
		})
		env, err := verifier.SignEnvelope(keyOf(signer), payload)
		if err != nil {
			panic(err)
		}
		log = append(log, &evidence.Entry{Index: uint64(len(log) + 1), ReceivedAt: p.OccurredAt, Envelope: env})
	}
	changes := approvals.ChangeLogFunc(func(_ context.Context, _ string) ([]*evidence.Entry, error) { return log, nil })

	gate, err := approvals.New(changes, approvals.Config{
		Groups: map[string][]string{"database-owners": {"carol@example.com"}},
		Rules:  []approvals.Rule{{Environment: "prod", Groups: []string{"database-owners"}}},
	})
	if err != nil {
		panic(err)
	}
	ask := func(now time.Time) {
		d, err := gate.Decide(context.Background(), approvals.GateRequest{
			ChangeID: "CHG-1001", CommitSHA: commit, PlanSHA256: plan,
			Target: evidence.Target{Environment: "prod", Stack: "prod/rds-orders"}, Actor: "ci",
		}, now)
		if err != nil {
			panic(err)
		}
		fmt.Println(d.Decision)
		for _, r := range d.Reasons {
			fmt.Println(" ", r)
		}
	}

	record("ci", evidence.Transition{Kind: evidence.KindChangeOpened, OccurredAt: start,
		Change: &evidence.Change{Author: "alice@example.com"}})
	record("ci", evidence.Transition{Kind: evidence.KindPlanCreated, OccurredAt: start.Add(time.Minute),
		Plan: &evidence.Plan{PlanSHA256: plan, Engine: "opentofu"}})
	ask(start.Add(2 * time.Minute))

	// carol approves this plan of this commit, with her own key.
	record("carol@example.com", evidence.Transition{Kind: evidence.KindApprovalGranted, OccurredAt: start.Add(3 * time.Minute),
		Approval: &evidence.Approval{CommitSHA: commit, PlanSHA256: plan, Approver: "carol@example.com",
			ApprovedAt: start.Add(3 * time.Minute), ExpiresAt: start.Add(4 * time.Hour)}})
	ask(start.Add(4 * time.Minute))
	// Output:
	// deny
	//   approval.missing: no approval of change CHG-1001
	//   approval.group-missing: no valid approval by a member of database-owners
	// allow
	//   approval by carol@example.com (database-owners), entry 3, bound to commit 8fb2d7e2705c and plan 1892634ae11e, fresh until 2026-07-03T13:00:00Z
	//   no counted approver is the author (alice@example.com)
	//   required groups database-owners covered (from config, membership dfdf67e410bb)
}
