package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"evident.dev/evident/audit"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
	"evident.dev/evident/verifier/verifiertest"
)

const testOrigin = "evident.test/log"

const clusterC = "prod-eu-1"

// logFixture is a real log in a temporary directory: genesis written by
// ingest.EnsureTrust, records appended through the verifier and the ledger,
// as the server does.
type logFixture struct {
	t      testing.TB
	dir    string
	logKey verifiertest.Key
	signer *checkpoint.Signer
	vkey   string
	keys   map[string]verifiertest.Key // runner name -> key
	trust  verifier.TrustConfig
	clock  atomic.Int64
	log    *ledger.Log
	snaps  []*ledger.Snapshot // of log, closed before it (Close waits for them)
}

// newLogFixture makes the keys (deterministic, so fuzz workers agree) and an
// empty log. Runners: ci (ed25519, every environment), apply (ECDSA P-256,
// prod, one stack) and argocd (ed25519, prod, one cluster).
func newLogFixture(t testing.TB) *logFixture {
	t.Helper()
	f := &logFixture{t: t, dir: t.TempDir(), keys: map[string]verifiertest.Key{}}
	f.logKey = verifiertest.FixedKey(t, "ed25519", "log")
	var err error
	f.signer, err = checkpoint.NewSigner(testOrigin, f.logKey.Priv.(ed25519.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	f.vkey = f.signer.VerifierKey()
	f.keys["ci"] = verifiertest.FixedKey(t, "ed25519", "ci")
	f.keys["apply"] = verifiertest.FixedKey(t, "ecdsa-p256", "apply")
	f.keys["argocd"] = verifiertest.FixedKey(t, "ed25519", "argocd")
	f.keys["newcomer"] = verifiertest.FixedKey(t, "ecdsa-p256", "newcomer")
	f.trust = verifier.TrustConfig{Runners: []verifier.Runner{
		verifiertest.Runner("ci", f.keys["ci"], "*"),
		{Name: "apply", PublicKey: f.keys["apply"].PubPEM, Scope: verifier.Scope{Environments: []string{"prod"}, Stacks: []string{verifiertest.StackA}}},
		{Name: "argocd", PublicKey: f.keys["argocd"].PubPEM, Scope: verifier.Scope{Environments: []string{"prod"}, Clusters: []string{clusterC}}},
	}}
	f.clock.Store(verifiertest.Time.UnixNano())
	return f
}

func (f *logFixture) now() time.Time {
	return time.Unix(0, f.clock.Add(int64(time.Millisecond))).UTC()
}

// open opens the log. Checkpoints come with the first batch and at Close
// only, so most entries are covered by a checkpoint some entries later.
func (f *logFixture) open() {
	f.t.Helper()
	lg, err := ledger.Open(ledger.Config{
		Dir: f.dir, Origin: testOrigin, Signer: f.signer, Clock: f.now,
		CheckpointInterval: time.Hour, CacheMB: 8,
	})
	if err != nil {
		f.t.Fatalf("ledger.Open: %v", err)
	}
	f.log = lg
	f.t.Cleanup(func() {
		if f.log == lg {
			f.close()
		}
	})
}

func (f *logFixture) close() {
	f.t.Helper()
	for _, s := range f.snaps {
		s.Close()
	}
	f.snaps = nil
	if err := f.log.Close(); err != nil {
		f.t.Fatalf("close log: %v", err)
	}
	f.log = nil
}

func (f *logFixture) ensureTrust(trust verifier.TrustConfig) {
	f.t.Helper()
	err := ingest.EnsureTrust(context.Background(), f.log, f.logKey.Priv, trust, ingest.Genesis{
		Operator: "erin@example.com", Origin: testOrigin, LogKey: f.vkey,
		Versions: map[string]string{"evident": "test"}, Now: f.now(),
	})
	if err != nil {
		f.t.Fatalf("EnsureTrust: %v", err)
	}
}

// verifierFor is the verifier a server running with trust would use.
func (f *logFixture) verifierFor(trust verifier.TrustConfig) *verifier.Verifier {
	return verifiertest.MustNew(f.t, trust, f.logKey.Priv.Public())
}

// post verifies an envelope with v and appends it, as ingest does.
func (f *logFixture) post(v *verifier.Verifier, env []byte) ledger.Receipt {
	f.t.Helper()
	vd, err := v.Verify(env)
	if err != nil {
		f.t.Fatalf("Verify: %v", err)
	}
	return f.appendVerified(env, vd.Digest, vd.Signer, ledger.TermsFor(vd.Statement, evidence.EntryMeta{}))
}

func (f *logFixture) appendVerified(env []byte, digest [32]byte, signer evidence.Signer, terms []ledger.Term) ledger.Receipt {
	f.t.Helper()
	r, err := f.log.Append(context.Background(), ledger.Record{Envelope: env, Digest: digest, Signer: signer, Terms: terms})
	if err != nil {
		f.t.Fatalf("Append: %v", err)
	}
	if r.Duplicate {
		f.t.Fatalf("Append: unexpected duplicate of entry %d", r.Index)
	}
	return r
}

// postAs signs a record of the kind with the runner's key and appends it.
func (f *logFixture) postAs(v *verifier.Verifier, name string, kind evidence.Kind, tg evidence.Target) ledger.Receipt {
	f.t.Helper()
	changeID := fmt.Sprintf("CHG-%d", f.clock.Load())
	return f.post(v, verifiertest.Sign(f.t, f.keys[name], verifiertest.PayloadOf(f.t, verifiertest.Transition(kind, changeID, tg))))
}

// buildStandardLog writes nine entries in two runs of the log, with
// checkpoints at sizes 1, 5, 6 and 9 (each run checkpoints its first batch and
// its close):
//
//	0 bootstrap (log) | 1 ci | 2 apply | 3 argocd | 4 ci || 5 ci | 6 apply | 7 argocd | 8 ci
//
// and leaves the log open.
func buildStandardLog(t testing.TB) *logFixture {
	t.Helper()
	return buildLogAt(t, verifiertest.Time)
}

// buildLogAt builds the standard log with its clock starting at start.
func buildLogAt(t testing.TB, start time.Time) *logFixture {
	t.Helper()
	f := newLogFixture(t)
	f.clock.Store(start.UnixNano())
	f.open()
	f.ensureTrust(f.trust)
	v := f.verifierFor(f.trust)
	batch := func() {
		f.postAs(v, "ci", evidence.KindPlanCreated, evidence.Target{Environment: "staging"})
		f.postAs(v, "apply", evidence.KindApplyCompleted, evidence.Target{Environment: "prod", Stack: verifiertest.StackA})
		f.postAs(v, "argocd", evidence.KindSyncSucceeded, evidence.Target{Environment: "prod", Cluster: clusterC})
		f.postAs(v, "ci", evidence.KindVerificationCompleted, verifiertest.Prod())
	}
	batch()
	f.close()
	f.open()
	batch()
	f.close()
	f.open()
	if f.log.Size() != 9 || f.log.CheckpointSize() != 9 {
		t.Fatalf("fixture: size %d, checkpoint %d; want 9, 9", f.log.Size(), f.log.CheckpointSize())
	}
	if cps, err := f.snapshot().Checkpoints(context.Background()); err != nil || len(cps) != 4 {
		t.Fatalf("fixture: %d checkpoints, %v; want 4", len(cps), err)
	}
	return f
}

func (f *logFixture) opts(signatures bool) audit.CheckOptions {
	return audit.CheckOptions{Origin: testOrigin, LogKey: f.vkey, Signatures: signatures, Workers: 2}
}

// snapshot returns a snapshot closed with the log, or at the end of the
// test.
func (f *logFixture) snapshot() *ledger.Snapshot {
	f.t.Helper()
	s, err := f.log.Snapshot()
	if err != nil {
		f.t.Fatal(err)
	}
	f.snaps = append(f.snaps, s)
	f.t.Cleanup(s.Close)
	return s
}

func (f *logFixture) export() []byte {
	f.t.Helper()
	var b bytes.Buffer
	if err := audit.WriteExport(context.Background(), &b, f.snapshot(), testOrigin, f.vkey); err != nil {
		f.t.Fatalf("WriteExport: %v", err)
	}
	return b.Bytes()
}

// checkExport reads an export and checks it.
func checkExport(data []byte, opts audit.CheckOptions) (*audit.CheckReport, error) {
	ex, err := audit.OpenExport(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	return audit.CheckLog(context.Background(), ex, opts)
}

// exportLines is an export split into lines, for editing.
type exportLines struct {
	t      testing.TB
	header audit.ExportHeader
	lines  [][]byte // without newlines; 0 = header, then checkpoints, then entries
}

func splitExport(t testing.TB, data []byte) *exportLines {
	t.Helper()
	if !bytes.HasSuffix(data, []byte("\n")) {
		t.Fatal("export does not end with a newline")
	}
	e := &exportLines{t: t}
	for _, l := range bytes.Split(data[:len(data)-1], []byte("\n")) {
		e.lines = append(e.lines, bytes.Clone(l))
	}
	if err := json.Unmarshal(e.lines[0], &e.header); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *exportLines) bytes() []byte {
	var b bytes.Buffer
	for _, l := range e.lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func (e *exportLines) entryLine(i int) int { return 1 + e.header.Checkpoints + i }

func (e *exportLines) leaf(i int) []byte {
	e.t.Helper()
	var l struct {
		Index uint64 `json:"index"`
		Leaf  []byte `json:"leaf"`
	}
	if err := json.Unmarshal(e.lines[e.entryLine(i)], &l); err != nil || l.Index != uint64(i) {
		e.t.Fatalf("entry line %d: %v (index %d)", i, err, l.Index)
	}
	return l.Leaf
}

func (e *exportLines) setLeaf(i int, leaf []byte) {
	e.lines[e.entryLine(i)] = fmt.Appendf(nil, `{"index":%d,"leaf":"%s"}`, i, base64.StdEncoding.EncodeToString(leaf))
}

func (e *exportLines) entry(i int) *evidence.Entry {
	e.t.Helper()
	en, err := evidence.ParseLeaf(e.leaf(i))
	if err != nil {
		e.t.Fatalf("entry %d: %v", i, err)
	}
	return en
}

func (e *exportLines) setEntry(i int, en *evidence.Entry) {
	e.t.Helper()
	leaf, err := en.Leaf()
	if err != nil {
		e.t.Fatal(err)
	}
	e.setLeaf(i, leaf)
}

func (e *exportLines) checkpoints() [][]byte {
	var out [][]byte
	for i := range e.header.Checkpoints {
		var cp struct {
			Checkpoint string `json:"checkpoint"`
		}
		if err := json.Unmarshal(e.lines[1+i], &cp); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, []byte(cp.Checkpoint))
	}
	return out
}

// setCheckpoints replaces the checkpoint lines.
func (e *exportLines) setCheckpoints(cps [][]byte) {
	entries := e.lines[1+e.header.Checkpoints:]
	e.header.Checkpoints = len(cps)
	h, err := json.Marshal(e.header)
	if err != nil {
		e.t.Fatal(err)
	}
	lines := [][]byte{h}
	for _, cp := range cps {
		l, _ := json.Marshal(map[string]string{"checkpoint": string(cp)})
		lines = append(lines, l)
	}
	e.lines = append(lines, entries...)
}

// rechain makes an edited export consistent again as only the log key's
// holder could: every previous-hash recomputed and every checkpoint signed
// anew over the edited tree. What is left for CheckLog to find is what
// signatures of records prove.
func (e *exportLines) rechain(signer note.Signer) {
	e.t.Helper()
	var prev [32]byte
	var leaves [][]byte
	for i := range int(e.header.Size) {
		en := e.entry(i)
		en.PrevHash = prev
		e.setEntry(i, en)
		leaf := e.leaf(i)
		prev = sha256.Sum256(leaf)
		leaves = append(leaves, leaf)
	}
	var cps [][]byte
	for _, old := range e.checkpoints() {
		size := checkpointSize(e.t, old)
		cps = append(cps, signCheckpoint(e.t, signer, size, merkleRoot(leaves[:size])))
	}
	e.setCheckpoints(cps)
}

func checkpointSize(t testing.TB, signed []byte) int {
	t.Helper()
	lines := strings.SplitN(string(signed), "\n", 3)
	size, err := strconv.Atoi(lines[1])
	if err != nil || lines[0] != testOrigin {
		t.Fatalf("checkpoint %q: %v", signed, err)
	}
	return size
}

func signCheckpoint(t testing.TB, signer note.Signer, size int, root [32]byte) []byte {
	t.Helper()
	text := fmt.Sprintf("%s\n%d\n%s\n", testOrigin, size, base64.StdEncoding.EncodeToString(root[:]))
	signed, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// merkleRoot is RFC 6962's Merkle tree hash, written out from section 2.1
// independently of the code under test.
func merkleRoot(leaves [][]byte) [32]byte {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return sha256.Sum256(append([]byte{0}, leaves[0]...))
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	l, r := merkleRoot(leaves[:k]), merkleRoot(leaves[k:])
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

// badIndex returns the entry a *BadEntryError names.
func badIndex(t testing.TB, err error) uint64 {
	t.Helper()
	var bad *audit.BadEntryError
	if !errors.As(err, &bad) {
		t.Fatalf("err = %v, want a *audit.BadEntryError", err)
	}
	return bad.Index
}
