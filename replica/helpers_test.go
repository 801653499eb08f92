package replica_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/client"
	"evident.dev/evident/evidence"
	"evident.dev/evident/internal/miniotest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/replica"
	"evident.dev/evident/verifier"
)

const origin = "evident.test/tiles"

var logKey = ed25519.NewKeyFromSeed(seed("tiles log key"))

func seed(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func noteSigner(t testing.TB) *checkpoint.Signer {
	t.Helper()
	s, err := checkpoint.NewSigner(origin, logKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openWriter opens a writer log in dir; closed when the test ends.
func openWriter(t testing.TB, dir string) *ledger.Log {
	t.Helper()
	l, err := ledger.Open(ledger.Config{Dir: dir, Origin: origin, Signer: noteSigner(t), CheckpointInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// openFollower opens a follower log in dir; closed when the test ends.
func openFollower(t testing.TB, dir string) *ledger.Log {
	t.Helper()
	l, err := ledger.Open(ledger.Config{Dir: dir, Origin: origin, VerifierKey: noteSigner(t).VerifierKey()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func openStore(t testing.TB, m *miniotest.Server, bucket string) *replica.S3 {
	t.Helper()
	s, err := replica.OpenS3(context.Background(), replica.S3Config{
		URL: miniotest.URL(bucket, "logs/prod"), Endpoint: m.Endpoint,
		AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// recordMaker signs and verifies records as ingest does.
type recordMaker struct {
	signer *client.Signer
	v      *verifier.Verifier
}

func newRecordMaker(t testing.TB) *recordMaker {
	t.Helper()
	priv, pub, err := verifier.GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	s, err := client.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(verifier.TrustConfig{Runners: []verifier.Runner{{
		Name: "ci", PublicKey: string(pub), Scope: verifier.Scope{Environments: []string{"*"}},
	}}}, logKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &recordMaker{signer: s, v: v}
}

func (m *recordMaker) record(t testing.TB, i int) ledger.Record {
	t.Helper()
	sum := sha256.Sum256(fmt.Append(nil, "record", i))
	env, err := m.signer.Sign(evidence.Transition{
		Kind:       evidence.KindPlanCreated,
		ChangeID:   fmt.Sprintf("CHG-%d", i%97),
		OccurredAt: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second),
		Actor:      fmt.Sprintf("ci-%d@example.com", i%5),
		Source:     evidence.Source{Repository: "infra-live", PullRequest: 4812, CommitSHA: fmt.Sprintf("%x", sum[:20]), Branch: "main"},
		Target:     evidence.Target{Environment: []string{"dev", "staging", "prod"}[i%3], Cloud: "aws", Account: "payments", Region: "eu-west-1", Stack: fmt.Sprintf("stack-%d", i%7)},
		RiskClass:  "high",
		Plan:       &evidence.Plan{PlanSHA256: fmt.Sprintf("%x", sum), Engine: "opentofu", Actions: evidence.ActionCounts{Update: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	vd, err := m.v.Verify(env)
	if err != nil {
		t.Fatal(err)
	}
	compact := jsontext.Value(env)
	if err := compact.Compact(); err != nil {
		t.Fatal(err)
	}
	return ledger.Record{Envelope: compact, Digest: vd.Digest, Signer: vd.Signer, Terms: ledger.TermsFor(vd.Statement, evidence.EntryMeta{})}
}

// appendN appends records [first, first+n) from 8 goroutines.
func appendN(t testing.TB, l interface {
	Append(context.Context, ledger.Record) (ledger.Receipt, error)
}, m *recordMaker, first, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range 8 {
		wg.Go(func() {
			for i := first + g; i < first+n; i += 8 {
				if _, err := l.Append(context.Background(), m.record(t, i)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or 30 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// run runs fn in the background until the test ends, and returns a function
// stopping it and returning its error.
func run(t testing.TB, fn func(ctx context.Context) error) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}
