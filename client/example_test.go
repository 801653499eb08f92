package client_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"evident.dev/evident/audit"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/client"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/query"
	"evident.dev/evident/verifier"
)

// A runner signs a plan record and posts it; an auditor who pinned the
// log's key then proves the entry is in the log under a signed checkpoint,
// trusting nothing the server says.
func Example() {
	srv := startExampleServer() // a real ledger behind the real handlers, on 127.0.0.1
	defer srv.close()
	ctx := context.Background()

	// The runner: its key is in the server's trust configuration.
	signer, err := client.NewSigner(srv.runnerKey)
	if err != nil {
		panic(err)
	}
	envelope, err := signer.Sign(evidence.Transition{
		Kind:       evidence.KindPlanCreated,
		ChangeID:   "CHG-2026-07-03-0001",
		OccurredAt: time.Now().UTC().Truncate(time.Second),
		Actor:      "repo:example/infra-live:pull_request",
		Source:     evidence.Source{Repository: "infra-live", CommitSHA: "8fb2d7e2705ca5b1f48ba233dc28daaccb8f5480"},
		Target:     evidence.Target{Environment: "dev", Stack: "orders"},
		Plan:       &evidence.Plan{PlanSHA256: sum("plan")},
	})
	if err != nil {
		panic(err)
	}
	c := client.New(srv.URL)
	receipt, err := c.Post(ctx, envelope) // answers once the entry is durable
	if err != nil {
		panic(err)
	}
	fmt.Println("entry", receipt.Index, receipt.Kind, receipt.ChangeID)

	// The auditor: the pinned key is all it trusts. Prove waits for a
	// checkpoint covering the entry and checks its signature and the
	// inclusion proof.
	bundle, err := c.Prove(ctx, receipt.Index, srv.logKey)
	if err != nil {
		panic(err)
	}
	fmt.Println("included in the signed tree:", bundle.TreeSize > receipt.Index)
	// Output:
	// entry 1 plan.created CHG-2026-07-03-0001
	// included in the signed tree: true
}

// An auditor fetches the evidence pack of one change: every record of it
// with its inclusion proof under one signed checkpoint. Pack checks it
// against the pinned log key before returning it, so the pack can be handed
// on and checked again offline (audit.CheckPack) by whoever pinned that key.
func ExampleClient_Pack() {
	srv := startExampleServer()
	defer srv.close()
	ctx := context.Background()
	signer, err := client.NewSigner(srv.runnerKey)
	if err != nil {
		panic(err)
	}
	c := client.New(srv.URL)
	var last uint64
	for _, kind := range []evidence.Kind{evidence.KindPlanCreated, evidence.KindPlanCreated} {
		envelope, err := signer.Sign(evidence.Transition{
			Kind:       kind,
			ChangeID:   "CHG-2026-07-03-0002",
			OccurredAt: time.Now().UTC().Truncate(time.Second),
			Actor:      "repo:example/infra-live:pull_request",
			Source:     evidence.Source{Repository: "infra-live", CommitSHA: "8fb2d7e2705ca5b1f48ba233dc28daaccb8f5480"},
			Target:     evidence.Target{Environment: "dev", Stack: "orders"},
			Plan:       &evidence.Plan{PlanSHA256: sum(fmt.Sprint("plan ", last))},
		})
		if err != nil {
			panic(err)
		}
		receipt, err := c.Post(ctx, envelope)
		if err != nil {
			panic(err)
		}
		last = receipt.Index
	}
	// A pack holds what a signed checkpoint covers: wait for one.
	if _, err := c.Prove(ctx, last, srv.logKey); err != nil {
		panic(err)
	}
	pack, report, err := c.Pack(ctx, "CHG-2026-07-03-0002", srv.logKey)
	if err != nil {
		panic(err)
	}
	fmt.Println(report.Change, report.Records, "records, signatures re-verified:", report.Signatures)
	again, err := audit.CheckPack(pack, srv.logKey) // offline, later, elsewhere
	fmt.Println("still verifies offline:", err == nil && again.Records == report.Records)
	// Output:
	// CHG-2026-07-03-0002 2 records, signatures re-verified: 2
	// still verifies offline: true
}

// exampleServer is a log, its genesis, the verifier and the ingest and
// proof handlers, as evident serve assembles them.
type exampleServer struct {
	URL       string
	runnerKey []byte // PEM
	logKey    string // the note verifier key auditors pin
	close     func()
}

func startExampleServer() *exampleServer {
	dir, err := os.MkdirTemp("", "client-example-")
	if err != nil {
		panic(err)
	}
	const origin = "evident.example.com/dev"
	_, edKey, _ := ed25519.GenerateKey(nil) // the log's key
	runnerPEM, runnerPub, _ := verifier.GenerateKey("ed25519")
	trust := verifier.TrustConfig{Runners: []verifier.Runner{{
		Name: "ci", PublicKey: string(runnerPub), Scope: verifier.Scope{Environments: []string{"*"}},
	}}}
	signer, err := checkpoint.NewSigner(origin, edKey)
	if err != nil {
		panic(err)
	}
	lg, err := ledger.Open(ledger.Config{Dir: dir, Origin: origin, Signer: signer, CheckpointInterval: 10 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	if err := ingest.EnsureTrust(context.Background(), lg, edKey, trust, ingest.Genesis{
		Operator: "ops@example.com", Origin: origin, LogKey: signer.VerifierKey(), Now: time.Now(),
	}); err != nil {
		panic(err)
	}
	v, err := verifier.New(trust, edKey.Public())
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	ingest.New(ingest.Config{Log: lg, Verifier: v}).Register(mux)
	query.NewProofHandler(lg, nil).Register(mux)
	open, err := query.NewAuthenticator(query.AccessConfig{}) // no access configured: open, as serve's default
	if err != nil {
		panic(err)
	}
	gql, err := query.NewGraphQL(query.GraphQLConfig{Store: lg, Auth: open})
	if err != nil {
		panic(err)
	}
	gql.Register(mux)
	hs := httptest.NewServer(mux)
	return &exampleServer{URL: hs.URL, runnerKey: runnerPEM, logKey: signer.VerifierKey(), close: func() {
		hs.Close()
		_ = lg.Close()
		_ = os.RemoveAll(dir)
	}}
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
