package ledger_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

// A runner's signed record is verified, appended, and then proved to be in
// the log under a signed checkpoint, with nothing but the log's verifier key.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "ledger-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	// The log and its checkpoint key.
	const origin = "evident.example.com/prod"
	_, logKey, _ := ed25519.GenerateKey(nil)
	signer, err := checkpoint.NewSigner(origin, logKey)
	if err != nil {
		panic(err)
	}
	log, err := ledger.Open(ledger.Config{Dir: dir, Origin: origin, Signer: signer})
	if err != nil {
		panic(err)
	}

	// A CI runner signs a record; the verifier checks it against the trust
	// configuration.
	private, public, _ := verifier.GenerateKey("ed25519")
	runnerKey, _ := verifier.ParsePrivateKey(private)
	v, err := verifier.New(verifier.TrustConfig{Runners: []verifier.Runner{{
		Name: "ci", PublicKey: string(public), Scope: verifier.Scope{Environments: []string{"prod"}},
	}}}, nil)
	if err != nil {
		panic(err)
	}
	payload, _ := json.Marshal(evidence.Statement{
		Type:          evidence.StatementType,
		Subject:       []evidence.Subject{{Name: "plan", Digest: map[string]string{"sha256": hexSum("plan")}}},
		PredicateType: evidence.PredicateType,
		Predicate: evidence.Transition{
			Kind:       evidence.KindPlanCreated,
			ChangeID:   "CHG-1",
			OccurredAt: time.Date(2026, 7, 3, 8, 52, 31, 0, time.UTC),
			Actor:      "repo:example/infra-live:pull_request",
			Source:     evidence.Source{Repository: "infra-live", CommitSHA: "8fb2d7e2705ca5b1f48ba233dc28daaccb8f5480"},
			Target:     evidence.Target{Environment: "prod", Stack: "rds-orders"},
			Plan:       &evidence.Plan{PlanSHA256: hexSum("plan")},
		},
	})
	envelope, _ := verifier.SignEnvelope(runnerKey, payload)
	verified, err := v.Verify(envelope)
	if err != nil {
		panic(err)
	}
	rec := ledger.Record{
		Envelope: envelope,
		Digest:   verified.Digest,
		Signer:   verified.Signer,
		Terms:    ledger.TermsFor(verified.Statement, evidence.EntryMeta{}),
	}

	receipt, err := log.Append(ctx, rec) // returns once the entry is durable
	if err != nil {
		panic(err)
	}
	fmt.Println("entry", receipt.Index)
	again, _ := log.Append(ctx, rec)
	fmt.Println("posted again: entry", again.Index, "duplicate", again.Duplicate)
	found, _ := log.Lookup(ctx, ledger.Query{Name: ledger.TermChange, Value: "CHG-1"})
	fmt.Println("entries of CHG-1:", found)

	// An auditor holding only the verifier key checks the checkpoint and the
	// entry's inclusion proof.
	signed, _ := log.Checkpoint()
	nv, _ := note.NewVerifier(log.VerifierKey())
	cp, err := checkpoint.Open(signed, origin, nv)
	if err != nil {
		panic(err)
	}
	path, _ := log.InclusionProof(ctx, receipt.Index, cp.Size)
	hashes := make([][]byte, len(path))
	for i := range path {
		hashes[i] = path[i][:]
	}
	err = proof.VerifyInclusion(rfc6962.DefaultHasher, receipt.Index, cp.Size, receipt.LeafHash[:], hashes, cp.Root[:])
	fmt.Println("checkpoint size", cp.Size, "inclusion verified:", err == nil)

	if err := log.Close(); err != nil {
		panic(err)
	}
	// Output:
	// entry 0
	// posted again: entry 0 duplicate true
	// entries of CHG-1: [0]
	// checkpoint size 1 inclusion verified: true
}
