package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

const changeID = "CHG-2026-07-03-1421"

// bundle is what `evident proof` prints.
type bundle struct {
	Index      uint64   `json:"index"`
	Leaf       []byte   `json:"leaf"`
	TreeSize   uint64   `json:"treeSize"`
	Proof      [][]byte `json:"proof"`
	Checkpoint string   `json:"checkpoint"`
	LogKey     string   `json:"logKey"`
}

// verifyBundle checks an inclusion bundle with standard tlog tooling only:
// the checkpoint note against the pinned key, the RFC 6962 proof against its
// root.
func verifyBundle(t *testing.T, b bundle, logKey, origin string) *log.Checkpoint {
	t.Helper()
	v, err := note.NewVerifier(logKey)
	if err != nil {
		t.Fatalf("note.NewVerifier(%q): %v", logKey, err)
	}
	cp, _, _, err := log.ParseCheckpoint([]byte(b.Checkpoint), origin, v)
	if err != nil {
		t.Fatalf("the bundle's checkpoint does not verify with the pinned key: %v\n%s", err, b.Checkpoint)
	}
	if cp.Size != b.TreeSize || b.Index >= cp.Size {
		t.Fatalf("bundle: index %d, tree size %d, checkpoint size %d", b.Index, b.TreeSize, cp.Size)
	}
	leafHash := rfc6962.DefaultHasher.HashLeaf(b.Leaf)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, b.Index, cp.Size, leafHash, b.Proof, cp.Hash); err != nil {
		t.Fatalf("inclusion proof of entry %d in tree %d: %v", b.Index, cp.Size, err)
	}
	// The check is not vacuous: one flipped bit of the leaf fails it.
	bad := append([]byte(nil), b.Leaf...)
	bad[len(bad)/2] ^= 1
	if proof.VerifyInclusion(rfc6962.DefaultHasher, b.Index, cp.Size, rfc6962.DefaultHasher.HashLeaf(bad), b.Proof, cp.Hash) == nil {
		t.Fatal("an altered leaf verifies")
	}
	return cp
}

// TestQuickStart is the README's first five minutes: serve with no
// configuration, post a record with the generated development key, prove it
// with standard transparency-log tooling.
func TestQuickStart(t *testing.T) {
	work := t.TempDir()
	srv := startServe(t, work, "--listen", "127.0.0.1:0")
	data := filepath.Join(work, "evident-data")

	// First start: a log key and a dev runner key, both private.
	for _, f := range []string{"log.key", "dev-runner.key"} {
		st, err := os.Stat(filepath.Join(data, f))
		if err != nil {
			t.Fatalf("serve with no configuration did not create %s: %v", f, err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	if srv.Origin != "evident.local/log" {
		t.Errorf("default origin %q", srv.Origin)
	}
	mustContain(t, "serve's log", srv.stderr.String(), "trusting the development key for every environment")
	if got := strings.TrimSpace(string(srv.get("/v1/log-key", http.StatusOK))); got != srv.LogKey {
		t.Errorf("GET /v1/log-key = %q, serve printed %q", got, srv.LogKey)
	}
	if n := srv.size(); n != 1 {
		t.Fatalf("a new log holds %d entries, want 1 (the bootstrap record)", n)
	}

	// record post: the predicate file has no occurredAt; it is filled in.
	before := time.Now().Add(-2 * time.Second)
	devKey := filepath.Join(data, "dev-runner.key")
	predicate, err := filepath.Abs("testdata/plan.created.json")
	if err != nil {
		t.Fatal(err)
	}
	r := evident(t, work, "record", "post", "--key", devKey, "--file", predicate, "--server", srv.URL)
	var rc receipt
	if err := json.Unmarshal([]byte(r.stdout), &rc); err != nil {
		t.Fatalf("record post printed no receipt: %v\n%s", err, r)
	}
	if rc.Index != 1 || rc.Duplicate || rc.Kind != "plan.created" || rc.ChangeID != changeID || rc.Signer.Name != "dev-runner" {
		t.Fatalf("receipt %+v", rc)
	}

	// The entry holds exactly what was signed, and the receipt's hashes are
	// those of its leaf.
	e := srv.entry(1)
	entryHash := sha256.Sum256(e.Leaf)
	if e.Index != 1 || e.EntryHash != hex.EncodeToString(entryHash[:]) || rc.EntryHash != e.EntryHash {
		t.Errorf("entry 1: entryHash %s, receipt %s, SHA-256(leaf) %x", e.EntryHash, rc.EntryHash, entryHash)
	}
	if lh := rfc6962.DefaultHasher.HashLeaf(e.Leaf); rc.LeafHash != hex.EncodeToString(lh) {
		t.Errorf("receipt leafHash %s, RFC 6962 hash of the leaf %x", rc.LeafHash, lh)
	}
	if !strings.Contains(string(e.Leaf), string(e.Envelope)) {
		t.Error("the leaf does not hold the envelope")
	}
	if e.Signer.Name != "dev-runner" || e.Signer.KeyID != rc.Signer.KeyID || e.ReceivedAt.IsZero() {
		t.Errorf("entry 1: signer %+v, receivedAt %v", e.Signer, e.ReceivedAt)
	}
	st := statementOf(t, e.Envelope)
	pred := st["predicate"].(map[string]any)
	occurred, err := time.Parse(time.RFC3339, fmt.Sprint(pred["occurredAt"]))
	if err != nil || occurred.Before(before.Truncate(time.Second)) || occurred.After(time.Now().Add(time.Second)) {
		t.Errorf("occurredAt %v was not filled with the signing time (%v)", pred["occurredAt"], err)
	}
	if pred["changeId"] != changeID || pred["plan"].(map[string]any)["planSha256"] != "9e4ae5643818e741d99a703defa2646920c1a300753ac914e144e98730fb50a1" {
		t.Errorf("predicate %v", pred)
	}
	subjects, _ := json.Marshal(st["subject"])
	mustContain(t, "the statement's subjects", string(subjects),
		`"gitCommit":"8fb2d7e2705ca5b1f48ba233dc28daaccb8f5480"`, `"name":"plan"`)

	var byChange struct {
		Indexes []uint64 `json:"indexes"`
	}
	srv.getJSON("/v1/entries?change="+changeID, &byChange)
	if fmt.Sprint(byChange.Indexes) != "[1]" {
		t.Errorf("GET /v1/entries?change=%s = %v, want [1]", changeID, byChange.Indexes)
	}

	// proof, trusting the server's key on first use, then pinned (as a
	// string and as a file): the bundle verifies with standard tooling.
	keyFile := filepath.Join(work, "log.pub")
	writeFile(t, keyFile, srv.LogKey+"\n")
	// EVIDENT_SERVER names the server when --server does not.
	t.Setenv("EVIDENT_SERVER", srv.URL)
	viaEnv := evident(t, work, "proof", "--index", "1", "--log-key", srv.LogKey)
	mustContain(t, "proof with EVIDENT_SERVER", viaEnv.stderr, "entry 1 is included in the signed tree of size")
	for _, pin := range [][]string{nil, {"--log-key", srv.LogKey}, {"--log-key", keyFile}} {
		r := evident(t, work, append([]string{"proof", "--index", "1", "--server", srv.URL}, pin...)...)
		mustContain(t, "proof's stderr", r.stderr, "entry 1 is included in the signed tree of size")
		if pin == nil {
			mustContain(t, "unpinned proof's stderr", r.stderr, "log key not pinned")
		}
		var b bundle
		if err := json.Unmarshal([]byte(r.stdout), &b); err != nil {
			t.Fatalf("proof printed no bundle: %v\n%s", err, r)
		}
		if b.Index != 1 || b.LogKey != srv.LogKey || string(b.Leaf) != string(e.Leaf) {
			t.Fatalf("bundle: index %d, logKey %q, leaf matches entry: %v", b.Index, b.LogKey, string(b.Leaf) == string(e.Leaf))
		}
		cp := verifyBundle(t, b, srv.LogKey, "evident.local/log")
		// The proof is the server's plain RFC 6962 audit path.
		var p struct {
			Hashes [][]byte `json:"hashes"`
		}
		srv.getJSON(fmt.Sprintf("/v1/proofs/inclusion?index=1&size=%d", cp.Size), &p)
		if fmt.Sprint(p.Hashes) != fmt.Sprint(b.Proof) {
			t.Errorf("GET /v1/proofs/inclusion: %x, bundle %x", p.Hashes, b.Proof)
		}
	}

	// A pinned key the log does not sign with: refused.
	otherKey := func() string {
		_, vkey, err := note.GenerateKey(nil, "evident.local/log")
		if err != nil {
			t.Fatal(err)
		}
		return vkey
	}()
	r = evidentFails(t, work, -1, "proof", "--index", "1", "--server", srv.URL, "--log-key", otherKey)
	mustContain(t, "proof with the wrong key", r.stderr, "does not verify with the pinned log key")

	// The same record posted again is the same entry: 201 once, then 200.
	dup := filepath.Join(work, "dup.json")
	raw, err := os.ReadFile(predicate)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dup, strings.Replace(string(raw), `"kind": "plan.created",`,
		`"kind": "plan.created", "occurredAt": "2026-07-03T08:52:31Z",`, 1))
	env := []byte(evident(t, work, "record", "sign", "--key", devKey, "--file", dup).stdout)
	first, _ := srv.postRecord(env, http.StatusCreated)
	again, _ := srv.postRecord(env, http.StatusOK)
	if first.Duplicate || !again.Duplicate || again.Index != first.Index || again.EntryHash != first.EntryHash || first.Index != 2 {
		t.Errorf("posting twice: first %+v, again %+v", first, again)
	}
	r = evident(t, work, "record", "post", "--key", devKey, "--file", dup, "--server", srv.URL)
	var third receipt
	if err := json.Unmarshal([]byte(r.stdout), &third); err != nil || !third.Duplicate || third.Index != first.Index {
		t.Errorf("record post of the same statement: %+v (%v), want a duplicate of entry %d", third, err, first.Index)
	}
	if n := srv.size(); n != 3 {
		t.Errorf("log size %d after one record and one duplicate, want 3", n)
	}

	// A whole in-toto statement keeps its own subjects; a statement of
	// another type is refused, not re-typed.
	var pj map[string]any
	if err := json.Unmarshal(raw, &pj); err != nil {
		t.Fatal(err)
	}
	pj["changeId"] = "CHG-2026-07-03-1422"
	subject := []any{map[string]any{"name": "plan.tfplan", "digest": map[string]any{"sha256": "9e4ae5643818e741d99a703defa2646920c1a300753ac914e144e98730fb50a1"}}}
	statement := map[string]any{"_type": "https://in-toto.io/Statement/v1", "subject": subject,
		"predicateType": "https://evident.dev/transition/v1", "predicate": pj}
	stFile := filepath.Join(work, "statement.json")
	b, _ := json.Marshal(statement)
	writeFile(t, stFile, string(b))
	r = evident(t, work, "record", "post", "--key", devKey, "--file", stFile, "--server", srv.URL)
	if err := json.Unmarshal([]byte(r.stdout), &rc); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(statementOf(t, srv.entry(rc.Index).Envelope)["subject"])
	if want, _ := json.Marshal(subject); string(got) != string(want) {
		t.Errorf("statement posted with subjects %s, stored with %s", want, got)
	}
	statement["predicateType"] = "https://slsa.dev/provenance/v1"
	b, _ = json.Marshal(statement)
	writeFile(t, stFile, string(b))
	r = evidentFails(t, work, -1, "record", "sign", "--key", devKey, "--file", stFile)
	mustContain(t, "record sign of another predicate type", r.stderr, "https://slsa.dev/provenance/v1")
	// Not a transition at all: refused before anything is sent.
	writeFile(t, stFile, `{"kind":"plan.created","changeId":"CHG-1","colour":"blue"}`)
	r = evidentFails(t, work, -1, "record", "post", "--key", devKey, "--file", stFile, "--server", srv.URL)
	mustContain(t, "record post of an unknown field", r.stderr, "colour")

	// An entry past the end of the log cannot be proven; proof says so at
	// once rather than waiting out its timeout for a checkpoint.
	start := time.Now()
	r = evidentFails(t, work, -1, "proof", "--index", "99", "--server", srv.URL, "--timeout", "20s")
	mustContain(t, "proof of a missing entry", r.stderr, "the log has no entry 99 (its latest checkpoint covers")
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("proof of a missing entry answered after %s", took)
	}

	srv.stop()
	r = evident(t, work, "verify", "--data", data, "--log-key", srv.LogKey)
	mustContain(t, "verify", r.stdout, "OK: 4 entries")
}

// TestServeDefaults pins what serve does with no flags at all: it listens on
// 127.0.0.1:8080 and keeps its data in ./evident-data. It is skipped when
// something else has the port.
func TestServeDefaults(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:8080")
	if err != nil {
		t.Skipf("127.0.0.1:8080 is taken: %v", err)
	}
	ln.Close()
	work := t.TempDir()
	srv, err := tryServe(t, work)
	if err != nil && strings.Contains(err.Error(), "address already in use") {
		t.Skip("127.0.0.1:8080 was taken meanwhile")
	}
	if err != nil {
		t.Fatal(err)
	}
	if srv.URL != "http://127.0.0.1:8080" {
		t.Errorf("serve with no flags serves on %s, want http://127.0.0.1:8080", srv.URL)
	}
	if _, err := os.Stat(filepath.Join(work, "evident-data", "ledger")); err != nil {
		t.Errorf("serve with no flags keeps no ledger in ./evident-data: %v", err)
	}
	if _, err := os.Stat(filepath.Join(work, "evident-data", "dev-runner.key")); err != nil {
		t.Errorf("serve with no configuration generated no dev runner key: %v", err)
	}
	srv.stop()
}

// TestServeRefusesAnotherIdentity: a data directory holds one log, named by
// its genesis entry (origin and log key). Serving it under another origin or
// with another log key would append entries and checkpoints that can never
// verify, so serve refuses, and the log stays intact.
func TestServeRefusesAnotherIdentity(t *testing.T) {
	work := t.TempDir()
	data := filepath.Join(work, "data")
	srv := startServe(t, work, "--listen", "127.0.0.1:0", "--data", data)
	postMany(t, srv, newSigner(t, filepath.Join(data, "dev-runner.key")), "CHG-IDENTITY", "prod", 3, 1)
	// One data directory, one server.
	r := runIn(t, work, 30*time.Second, "serve", "--listen", "127.0.0.1:0", "--data", data)
	if r.code == 0 || strings.Contains(r.stdout, "evident serving on") {
		t.Fatalf("a second server on the same data directory started: %s", r)
	}
	mustContain(t, "a second server's error", r.stderr, "is a server running on it?")
	srv.stop()

	r = runIn(t, work, 30*time.Second, "serve", "--listen", "127.0.0.1:0", "--data", data, "--origin", "other.example/log")
	if r.code == 0 || strings.Contains(r.stdout, "evident serving on") {
		t.Fatalf("serve accepted another origin for an existing log: %s", r)
	}
	mustContain(t, "serve under another origin", r.stderr, `"evident.local/log"`, `"other.example/log"`)

	logKey := filepath.Join(data, "log.key")
	saved := filepath.Join(work, "log.key.saved")
	if err := os.Rename(logKey, saved); err != nil {
		t.Fatal(err)
	}
	r = runIn(t, work, 30*time.Second, "serve", "--listen", "127.0.0.1:0", "--data", data)
	if r.code == 0 || strings.Contains(r.stdout, "evident serving on") {
		t.Fatalf("serve accepted another log key for an existing log: %s", r)
	}
	// Without its key, the log is refused before a new key is made.
	mustContain(t, "serve without the log key", r.stderr, "log key "+logKey+" is missing")
	if _, err := os.Stat(logKey); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("serve without the log key left a new one behind: %v", err)
	}
	if err := os.Rename(saved, logKey); err != nil {
		t.Fatal(err)
	}

	srv = startServe(t, work, "--listen", "127.0.0.1:0", "--data", data)
	if n := srv.size(); n != 4 {
		t.Errorf("log size %d after refused starts, want 4", n)
	}
	srv.stop()
	r = evident(t, work, "verify", "--data", data)
	mustContain(t, "verify", r.stdout, "OK: 4 entries")
}

// TestCommandLine pins the command line's own conventions: usage and exit
// codes.
func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	r := runIn(t, dir, time.Minute)
	if r.code != 2 || !strings.Contains(r.stderr, "usage: evident <command>") {
		t.Errorf("no command: %s", r)
	}
	r = runIn(t, dir, time.Minute, "frobnicate")
	if r.code != 2 || !strings.Contains(r.stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %s", r)
	}
	r = evident(t, dir, "help")
	for _, c := range []string{"serve", "keys", "record", "proof", "export", "verify", "load", "version"} {
		mustContain(t, "help", r.stdout, "\n  "+c+" ")
	}
	r = evident(t, dir, "version")
	if !regexp.MustCompile(`^evident \S+ go1\.\d+`).MatchString(r.stdout) {
		t.Errorf("version: %s", r)
	}
	if v := evident(t, dir, "--version"); v.stdout != r.stdout {
		t.Errorf("--version says %q, version %q", v.stdout, r.stdout)
	}
	// -h prints the flags and is not an error.
	for cmd, flags := range map[string][]string{
		"serve":  {"-config", "-data", "-listen", "-operator"},
		"proof":  {"-index", "-server", "-log-key", "-consistent-with"},
		"export": {"-data", "-server", "-out"},
		"verify": {"-data", "-export", "-log-key", "-fast"},
		"load":   {"-key", "-server", "-records", "-concurrency", "-proofs"},
	} {
		r := evident(t, dir, cmd, "-h")
		mustContain(t, cmd+" -h", r.stderr, flags...)
	}
	r = evident(t, dir, "record", "post", "-h")
	mustContain(t, "record post -h", r.stderr, "-key", "-file", "-server")
	if _, err := os.Stat(filepath.Join(dir, "evident-data")); err == nil {
		t.Error("serve -h started a server")
	}
	// Usage errors are exit 2, not the verify failure code 1.
	for _, args := range [][]string{
		{"verify"},
		{"verify", "--data", dir, "--export", "x"},
		{"export", "--out", filepath.Join(dir, "x")},
		{"record", "post", "--file", "x"},
		{"load"},
		{"serve", "--no-such-flag"},
	} {
		evidentFails(t, dir, 2, args...)
	}
	// verify of something that is not a log fails with 1, and says so.
	r = evidentFails(t, dir, 1, "verify", "--data", dir)
	mustContain(t, "verify of an empty directory", r.stderr, "verify FAILED", "not an Evident ledger directory")
	writeFile(t, filepath.Join(dir, "not-an-export.jsonl"), "{}\n")
	evidentFails(t, dir, 1, "verify", "--export", filepath.Join(dir, "not-an-export.jsonl"))
	// load refuses nonsense counts instead of panicking.
	evident(t, dir, "keys", "generate", "--name", "k", "--dir", dir)
	r = evidentFails(t, dir, 2, "load", "--key", filepath.Join(dir, "k.key"), "--records", "0", "--server", "http://127.0.0.1:9")
	mustContain(t, "load --records 0", r.stderr, "at least 1")
}
