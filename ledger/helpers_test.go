package ledger_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

// testOrigin is the origin of every test log.
const testOrigin = "evident.test/ledger"

// logKey and recordKey are fixed so that test logs are reproducible.
var (
	logKey    = ed25519.NewKeyFromSeed(seed("log key"))
	recordKey = ed25519.NewKeyFromSeed(seed("record key"))
)

func seed(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func testSigner(t testing.TB) *checkpoint.Signer {
	t.Helper()
	s, err := checkpoint.NewSigner(testOrigin, logKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// noteVerifier is the checkpoint verifier an auditor builds from the log's
// published verifier key.
func noteVerifier(t testing.TB) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(testSigner(t).VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// openLog opens the log in dir; mod, if not nil, adjusts the configuration.
// The log is closed when the test ends unless the test closed it.
func openLog(t testing.TB, dir string, mod func(*ledger.Config)) *ledger.Log {
	t.Helper()
	cfg := ledger.Config{Dir: dir, Origin: testOrigin, Signer: testSigner(t)}
	if mod != nil {
		mod(&cfg)
	}
	l, err := ledger.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// spec describes a test record. Zero fields get defaults; n makes the
// record unique.
type spec struct {
	n      int
	kind   evidence.Kind // plan.created or apply.started
	change string
	env    string
	stack  string
	actor  string
	at     time.Time
	pad    int // resource changes added to grow the record
}

var baseTime = time.Date(2026, 7, 3, 8, 0, 0, 0, time.UTC)

func hexSum(parts ...any) string {
	h := sha256.Sum256([]byte(fmt.Sprint(parts...)))
	return hex.EncodeToString(h[:])
}

// statement builds a valid transition statement.
func statement(s spec) evidence.Statement {
	if s.kind == "" {
		s.kind = evidence.KindPlanCreated
	}
	if s.change == "" {
		s.change = fmt.Sprintf("CHG-%d", s.n)
	}
	if s.env == "" {
		s.env = "prod"
	}
	if s.stack == "" {
		s.stack = "prod/aws/payments/orders"
	}
	if s.actor == "" {
		s.actor = "repo:example/infra-live:pull_request"
	}
	if s.at.IsZero() {
		s.at = baseTime.Add(time.Duration(s.n) * time.Second)
	}
	planSHA := hexSum("plan", s.n)
	tr := evidence.Transition{
		Kind:       s.kind,
		ChangeID:   s.change,
		OccurredAt: s.at,
		Actor:      s.actor,
		Source:     evidence.Source{Repository: "infra-live", CommitSHA: hexSum("commit", s.n)[:40]},
		Target:     evidence.Target{Environment: s.env, Stack: s.stack},
	}
	switch s.kind {
	case evidence.KindPlanCreated:
		tr.Plan = &evidence.Plan{PlanSHA256: planSHA, Engine: "opentofu"}
		for i := range s.pad {
			tr.Plan.ResourceChanges = append(tr.Plan.ResourceChanges, evidence.ResourceChange{
				Address: fmt.Sprintf("aws_db_instance.orders_%03d", i), Type: "aws_db_instance", Actions: []string{"update"},
			})
		}
		tr.Plan.Actions.Update = s.pad
	case evidence.KindApplyStarted:
		tr.Apply = &evidence.Apply{PlanSHA256: planSHA, Engine: "opentofu"}
	default:
		panic("statement: unsupported kind " + s.kind)
	}
	return evidence.Statement{
		Type:          evidence.StatementType,
		Subject:       []evidence.Subject{{Name: "plan", Digest: map[string]string{"sha256": planSHA}}},
		PredicateType: evidence.PredicateType,
		Predicate:     tr,
	}
}

// makeRecord builds a signed record the way ingest does: sign the statement
// into a DSSE envelope, then derive digest and terms from the decoded
// statement.
func makeRecord(t testing.TB, s spec) ledger.Record {
	t.Helper()
	r, err := buildRecord(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func buildRecord(s spec) (ledger.Record, error) {
	st := statement(s)
	payload, err := json.Marshal(st)
	if err != nil {
		return ledger.Record{}, err
	}
	decoded, err := evidence.Decode(payload)
	if err != nil {
		return ledger.Record{}, fmt.Errorf("test record %d is invalid: %w", s.n, err)
	}
	env, err := verifier.SignEnvelope(recordKey, payload)
	if err != nil {
		return ledger.Record{}, err
	}
	findings := []evidence.Finding{{Code: "test.finding", Severity: "info", Message: fmt.Sprint("record ", s.n)}}
	return ledger.Record{
		Envelope:  env,
		Digest:    sha256.Sum256(dsse.PAE(evidence.PayloadType, payload)),
		Signer:    evidence.Signer{Name: "ci", KeyID: "test"},
		Findings:  findings,
		Terms:     ledger.TermsFor(decoded, evidence.EntryMeta{Findings: findings}),
		Statement: decoded,
	}, nil
}

// makeRecords builds n records numbered from first, in parallel.
func makeRecords(t testing.TB, first, n int) []ledger.Record {
	t.Helper()
	recs := make([]ledger.Record, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				recs[i], errs[i] = buildRecord(spec{n: first + i})
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return recs
}

// appendAll appends records sequentially.
func appendAll(t testing.TB, l *ledger.Log, recs []ledger.Record) []ledger.Receipt {
	t.Helper()
	out := make([]ledger.Receipt, len(recs))
	for i, r := range recs {
		rc, err := l.Append(context.Background(), r)
		if err != nil {
			t.Fatalf("Append record %d: %v", i, err)
		}
		out[i] = rc
	}
	return out
}

// appendConcurrently appends records from the given number of goroutines;
// receipts are in the order of recs.
func appendConcurrently(t testing.TB, l *ledger.Log, recs []ledger.Record, goroutines int) []ledger.Receipt {
	t.Helper()
	out := make([]ledger.Receipt, len(recs))
	errs := make([]error, len(recs))
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := g; i < len(recs); i += goroutines {
				out[i], errs[i] = l.Append(context.Background(), recs[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Append: %v", err)
	}
	return out
}

// leaves reads every leaf of the log through Leaf.
func leaves(t testing.TB, l *ledger.Log) [][]byte {
	t.Helper()
	out := make([][]byte, l.Size())
	for i := range out {
		leaf, err := l.Leaf(context.Background(), uint64(i))
		if err != nil {
			t.Fatalf("Leaf(%d): %v", i, err)
		}
		out[i] = leaf
	}
	return out
}

// leafHashes are the RFC 6962 leaf hashes, computed independently of tlog.
func leafHashes(ls [][]byte) [][32]byte {
	out := make([][32]byte, len(ls))
	for i, leaf := range ls {
		copy(out[i][:], rfc6962.DefaultHasher.HashLeaf(leaf))
	}
	return out
}

// compactRoots returns the root of every prefix of the leaf hashes,
// roots[n] being the root of the first n leaves, computed with
// transparency-dev/merkle's compact ranges.
func compactRoots(t testing.TB, hashes [][32]byte) [][]byte {
	t.Helper()
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r := rf.NewEmptyRange(0)
	roots := [][]byte{rfc6962.DefaultHasher.EmptyRoot()}
	for _, h := range hashes {
		if err := r.Append(h[:], nil); err != nil {
			t.Fatal(err)
		}
		root, err := r.GetRootHash(nil)
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, root)
	}
	return roots
}

// checkChain checks every leaf parses canonically, carries its index, and
// links to the previous entry's hash.
func checkChain(t testing.TB, ls [][]byte) {
	t.Helper()
	var prev [32]byte
	for i, leaf := range ls {
		e, err := evidence.ParseLeaf(leaf)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if e.Index != uint64(i) || e.Origin != testOrigin {
			t.Fatalf("entry %d: leaf says index %d origin %q", i, e.Index, e.Origin)
		}
		if e.PrevHash != prev {
			t.Fatalf("entry %d: previous hash %x, want %x", i, e.PrevHash, prev)
		}
		prev = sha256.Sum256(leaf)
	}
}

// parseCheckpoint opens a signed checkpoint with transparency-dev/formats.
func parseCheckpoint(t testing.TB, signed []byte) *log.Checkpoint {
	t.Helper()
	cp, _, _, err := log.ParseCheckpoint(signed, testOrigin, noteVerifier(t))
	if err != nil {
		t.Fatalf("checkpoint does not verify: %v\n%s", err, signed)
	}
	return cp
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// segmentFiles lists the log's segment files in order.
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "entries", "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// frameOffsets returns where each frame of a segment file starts, walking
// the documented framing (length u32 | leaf | CRC-32C u32).
func frameOffsets(t testing.TB, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := 0; off+8 <= len(b); {
		n := int(binary.BigEndian.Uint32(b[off:]))
		if off+8+n > len(b) {
			break
		}
		offs = append(offs, int64(off))
		off += 8 + n
	}
	return offs
}

// copyDir copies a directory tree (a closed Badger directory).
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// mustContain fails unless err is non-nil and its text contains want.
func mustContain(t testing.TB, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want one containing %q", err, want)
	}
}
