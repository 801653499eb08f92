package replica_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"golang.org/x/mod/sumdb/tlog"
	"k8s.io/client-go/kubernetes/fake"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/client"
	"evident.dev/evident/evidence"
	"evident.dev/evident/internal/miniotest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/replica"
	"evident.dev/evident/verifier"
)

const leaseOrigin = "evident.test/failover"

var leaseLogKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))

// writer is what the leader runs, as `serve --lease` does: restore the
// bucket's log into its own data directory, then open it as the writer and
// export it. It appends n records and stays leader until ctx ends.
func writer(t *testing.T, store replica.Store, dir string, first, n int, logs chan<- *ledger.Log) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		signer, err := checkpoint.NewSigner(leaseOrigin, leaseLogKey)
		if err != nil {
			return err
		}
		f, err := ledger.Open(ledger.Config{Dir: dir, Origin: leaseOrigin, VerifierKey: signer.VerifierKey()})
		if err != nil {
			return err
		}
		if _, err := replica.Restore(ctx, f, store, nil); err != nil {
			return errors.Join(err, f.Close())
		}
		if err := f.Close(); err != nil {
			return err
		}
		l, err := ledger.Open(ledger.Config{Dir: dir, Origin: leaseOrigin, Signer: signer, CheckpointInterval: 100 * time.Millisecond})
		if err != nil {
			return err
		}
		defer l.Close()
		exp, err := replica.NewExporter(replica.ExporterConfig{Log: l, Store: store, Poll: 20 * time.Millisecond})
		if err != nil {
			return err
		}
		expDone := make(chan error, 1)
		go func() { expDone <- exp.Run(ctx) }()
		durable := replica.DurableAppender{Log: l, Exporter: exp}
		for i := first; i < first+n; i++ {
			if _, err := durable.Append(ctx, record(t, i)); err != nil {
				return fmt.Errorf("record %d: %w", i, err)
			}
		}
		logs <- l
		<-ctx.Done()
		if err := <-expDone; !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}
}

var runnerKey, runnerPub, _ = verifier.GenerateKey("ed25519")

func record(t *testing.T, i int) ledger.Record {
	s, err := client.NewSigner(runnerKey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(verifier.TrustConfig{Runners: []verifier.Runner{{
		Name: "ci", PublicKey: string(runnerPub), Scope: verifier.Scope{Environments: []string{"*"}},
	}}}, leaseLogKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(fmt.Append(nil, i))
	env, err := s.Sign(evidence.Transition{
		Kind: evidence.KindPlanCreated, ChangeID: fmt.Sprintf("CHG-%d", i), OccurredAt: time.Now().UTC(),
		Actor:  "ci@example.com",
		Source: evidence.Source{Repository: "infra-live", PullRequest: 1, CommitSHA: fmt.Sprintf("%x", sum[:20]), Branch: "main"},
		Target: evidence.Target{Environment: "prod", Cloud: "aws", Account: "a", Region: "eu-west-1", Stack: "s"},
		Plan:   &evidence.Plan{PlanSHA256: fmt.Sprintf("%x", sum), Engine: "opentofu"},
	})
	if err != nil {
		t.Fatal(err)
	}
	vd, err := v.Verify(env)
	if err != nil {
		t.Fatal(err)
	}
	c := jsontext.Value(env)
	if err := c.Compact(); err != nil {
		t.Fatal(err)
	}
	return ledger.Record{Envelope: c, Digest: vd.Digest, Signer: vd.Signer, Terms: ledger.TermsFor(vd.Statement, evidence.EntryMeta{})}
}

// Two writers contend for one Lease. No Kubernetes API server can run here,
// so the Lease lives in client-go's fake clientset (its object tracker runs
// the same create/update/conflict logic the election relies on); the object
// storage is a real MinIO. The first leader writes and crashes without
// releasing the lease; once the lease expires the standby leads, resumes
// from the tiles into its own empty data directory, and continues the same
// log: every acknowledged record is there and the trees are consistent.
func TestStandbyTakesOverFromTiles(t *testing.T) {
	m := miniotest.Start(t)
	m.Bucket(t, "evident")
	store, err := replica.OpenS3(context.Background(), replica.S3Config{
		URL: miniotest.URL("evident", "ha"), Endpoint: m.Endpoint, AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	k8s := fake.NewClientset()
	cfg := func(id string) replica.LeaseConfig {
		return replica.LeaseConfig{
			Leases: k8s.CoordinationV1(), Namespace: "evident", Name: "evident-writer", Identity: id,
			LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond,
		}
	}
	logsA, logsB := make(chan *ledger.Log, 1), make(chan *ledger.Log, 1)

	// A leads and writes 300 records, acknowledged in object storage.
	ctxA, crashA := context.WithCancel(context.Background())
	doneA := make(chan error, 1)
	go func() { doneA <- replica.Lead(ctxA, cfg("writer-a"), writer(t, store, t.TempDir(), 0, 300, logsA)) }()
	var a *ledger.Log
	select {
	case a = <-logsA:
	case err := <-doneA:
		t.Fatalf("writer a: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("writer a did not lead")
	}
	rootA, err := a.RootHash(context.Background(), 300)
	if err != nil {
		t.Fatal(err)
	}
	leavesA := make([][]byte, 300)
	for i := range leavesA {
		if leavesA[i], err = a.Leaf(context.Background(), uint64(i)); err != nil {
			t.Fatal(err)
		}
	}

	// B stands by while A holds the lease.
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	doneB := make(chan error, 1)
	go func() { doneB <- replica.Lead(ctxB, cfg("writer-b"), writer(t, store, t.TempDir(), 300, 50, logsB)) }()
	select {
	case <-logsB:
		t.Fatal("the standby led while the leader held the lease")
	case <-time.After(500 * time.Millisecond):
	}

	// A crashes: its process stops renewing. Simulated by cancelling its
	// context after emptying the lease's release (a crash releases nothing).
	lease, err := k8s.CoordinationV1().Leases("evident").Get(context.Background(), "evident-writer", metav1GetOptions)
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "writer-a" {
		t.Fatalf("lease before the crash: %+v %v", lease, err)
	}
	k8s.PrependReactor("update", "leases", crashedWriterCannotRelease("writer-a"))
	crashA()
	if err := <-doneA; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("writer a: %v", err)
	}

	var b *ledger.Log
	select {
	case b = <-logsB:
	case err := <-doneB:
		t.Fatalf("writer b: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the standby did not take over")
	}
	if b.Size() != 350 {
		t.Fatalf("the new writer holds %d entries, want 300 restored + 50", b.Size())
	}
	rootB, err := b.RootHash(context.Background(), 300)
	if err != nil || rootB != rootA {
		t.Fatalf("the new writer's first 300 entries have root %x, the old writer's %x (%v)", rootB, rootA, err)
	}
	for i, la := range leavesA {
		lb, err := b.Leaf(context.Background(), uint64(i))
		if err != nil || !bytes.Equal(la, lb) {
			t.Fatalf("entry %d differs after the takeover", i)
		}
	}
	waitExported(t, store, 350)
	proof, err := b.ConsistencyProof(context.Background(), 300, 350)
	if err != nil {
		t.Fatal(err)
	}
	rootB350, _ := b.RootHash(context.Background(), 350)
	hs := make([]tlog.Hash, len(proof))
	for i := range proof {
		hs[i] = proof[i]
	}
	if err := tlog.CheckTree(hs, 350, rootB350, 300, rootA); err != nil {
		t.Fatalf("the new writer's tree does not extend the old one: %v", err)
	}
	stopB()
	if err := <-doneB; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("writer b: %v", err)
	}
}

func waitExported(t *testing.T, store replica.Store, size uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		raw, err := store.Get(context.Background(), replica.CheckpointPath)
		if err == nil && bytes.Contains(raw, fmt.Appendf(nil, "\n%d\n", size)) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no checkpoint of %d entries in the bucket", size)
}
