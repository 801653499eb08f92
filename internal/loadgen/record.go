package loadgen

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"time"

	"evident.dev/evident/evidence"
)

// record is a plan.created record padded with resource changes to about
// size bytes once signed.
func record(run string, i int, env string, size, applyEvery int) evidence.Transition {
	sum := sha256.Sum256([]byte(run + strconv.Itoa(i)))
	changeID := fmt.Sprintf("LOAD-%s-%d", run, i)
	if applyEvery > 0 {
		changeID = fmt.Sprintf("LOAD-%s-c%d", run, i/applyEvery)
	}
	t := evidence.Transition{
		Kind:       evidence.KindPlanCreated,
		ChangeID:   changeID,
		OccurredAt: time.Now().UTC(),
		Actor:      "ci@example.com",
		Source:     evidence.Source{Repository: "infra-live", PullRequest: 4812 + i, CommitSHA: fmt.Sprintf("%x", sum[:20]), Branch: "main"},
		Target: evidence.Target{Environment: env, Cloud: "aws", Account: "account-payments-" + env, Region: "ap-southeast-1",
			Stack: fmt.Sprintf("stack-%d", i%50)},
		RiskClass: "high",
		Plan: &evidence.Plan{PlanSHA256: fmt.Sprintf("%x", sum), Engine: "opentofu",
			Actions: evidence.ActionCounts{Update: 2, Replace: 1}, RequiresManualApproval: true},
	}
	// The record above signs to about 1,500 bytes; each resource change adds
	// about 130.
	for n := 0; 1500+(n+1)*130 <= size; n++ {
		t.Plan.ResourceChanges = append(t.Plan.ResourceChanges, evidence.ResourceChange{
			Address: fmt.Sprintf("aws_db_parameter_group.orders_%d", n), Type: "aws_db_parameter_group", Actions: []string{"update"}})
	}
	if applyEvery > 0 && i%applyEvery == applyEvery-1 {
		// The change's first plan, applied: the judge reads the change.
		first := sha256.Sum256([]byte(run + strconv.Itoa(i-applyEvery+1)))
		t.Kind, t.Source.CommitSHA = evidence.KindApplyCompleted, fmt.Sprintf("%x", first[:20])
		t.Apply = &evidence.Apply{PlanSHA256: fmt.Sprintf("%x", first), Engine: "opentofu", ResourcesChanged: []string{"aws_db_parameter_group.orders"}}
		t.Plan = nil
	}
	return t
}
