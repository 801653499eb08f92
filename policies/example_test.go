package policies_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"time"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
	"evident.dev/evident/policies"
	"evident.dev/evident/verifier"
)

// The tracker tails a log and answers completeness per change and by
// environment and class, and lists exceptions close to expiry. The GraphQL
// and metrics sides read it like this.
func ExampleTracker() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "evident-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	seed := sha256.Sum256([]byte("example"))
	key := ed25519.NewKeyFromSeed(seed[:])
	signer, err := checkpoint.NewSigner("example/log", key)
	if err != nil {
		log.Fatal(err)
	}
	lg, err := ledger.Open(ledger.Config{Dir: dir, Origin: "example/log", Signer: signer, CacheMB: 8})
	if err != nil {
		log.Fatal(err)
	}
	defer lg.Close()

	tracker := policies.NewTracker(lg, nil, nil) // bundled contracts, default production environments
	go tracker.Run(ctx)                          // until the log closes

	at := time.Date(2026, 7, 3, 9, 0, 0, 0, time.UTC)
	for _, tr := range []evidence.Transition{
		{Kind: evidence.KindPlanCreated, Plan: &evidence.Plan{PlanSHA256: fmt.Sprintf("%x", seed)},
			Artifacts: []evidence.Artifact{{Name: "plan", Digest: fmt.Sprintf("sha256:%x", seed)}}},
		{Kind: evidence.KindApplyCompleted, Apply: &evidence.Apply{PlanSHA256: fmt.Sprintf("%x", seed)}},
		{Kind: evidence.KindExceptionGranted, Exception: &evidence.Exception{ID: "EXC-1", RuleID: "iac.storage.public-bucket.requires-exception",
			Scope: "repository=infra-live", Justification: "release assets", Owner: "carol@example.com",
			ApprovedBy: []string{"security@example.com"}, ExpiresAt: at.Add(72 * time.Hour)}},
	} {
		tr.ChangeID, tr.OccurredAt, tr.Actor = "CHG-1", at, "ci@example.com"
		tr.Source = evidence.Source{Repository: "infra-live", CommitSHA: "8fb2d7e2705ca5b1f48ba233dc28daaccb8f5480"}
		tr.Target = evidence.Target{Environment: "dev", Stack: "dev/aws/orders"}
		appendRecord(ctx, lg, key, tr)
	}
	if err := tracker.WaitFor(ctx, lg.Size()); err != nil {
		log.Fatal(err)
	}

	st, _ := tracker.Change("CHG-1")
	fmt.Printf("%s %s closed=%v missing=%v\n", st.ChangeID, st.Class, st.Closed, st.Missing)
	for _, r := range tracker.Rates() {
		fmt.Printf("%s/%s: %d of %d closed complete (rate %.2f)\n", r.Environment, r.Class, r.Complete, r.Closed, r.Rate)
	}
	for _, e := range tracker.Expiring(at, 7*24*time.Hour) {
		fmt.Printf("%s expires %s (owner %s)\n", e.ID, e.ExpiresAt.Format(time.RFC3339), e.Owner)
	}
	// Output:
	// CHG-1 non-production-infra-change closed=true missing=[policy.evaluated]
	// dev/non-production-infra-change: 0 of 1 closed complete (rate 0.00)
	// EXC-1 expires 2026-07-06T09:00:00Z (owner carol@example.com)
}

// appendRecord signs a record with key and appends it without judging it.
func appendRecord(ctx context.Context, lg *ledger.Log, key ed25519.PrivateKey, tr evidence.Transition) {
	payload, err := json.Marshal(evidence.Statement{Type: evidence.StatementType, PredicateType: evidence.PredicateType,
		Subject:   []evidence.Subject{{Name: "change", Digest: map[string]string{"sha256": fmt.Sprintf("%x", sha256.Sum256([]byte(tr.ChangeID)))}}},
		Predicate: tr})
	if err != nil {
		log.Fatal(err)
	}
	env, err := verifier.SignEnvelope(key, payload)
	if err != nil {
		log.Fatal(err)
	}
	_, body, err := verifier.DecodeEnvelope(env)
	if err != nil {
		log.Fatal(err)
	}
	st, err := evidence.Decode(body)
	if err != nil {
		log.Fatal(err)
	}
	digest := sha256.Sum256(env)
	if _, err := lg.Append(ctx, ledger.Record{Envelope: env, Digest: digest, Signer: evidence.Signer{Name: "ci"}, Terms: ledger.TermsFor(st, evidence.EntryMeta{})}); err != nil {
		log.Fatal(err)
	}
}
