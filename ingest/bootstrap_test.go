package ingest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"testing"

	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

// logRecordAt decodes the record of an entry and checks the log signed it.
func (s *testServer) logRecordAt(index uint64) *evidence.Statement {
	s.t.Helper()
	e, _ := s.entry(index)
	if e.Meta.Signer != (evidence.Signer{Name: verifier.LogSigner, KeyID: s.logKey.id}) {
		s.t.Fatalf("entry %d signed by %+v, not the log", index, e.Meta.Signer)
	}
	st, err := e.Statement()
	if err != nil {
		s.t.Fatalf("entry %d: %v", index, err)
	}
	return st
}

func canonical(t testing.TB, c verifier.TrustConfig) ([]byte, string) {
	t.Helper()
	b, err := c.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

// restart closes the log and the server and opens them again, running
// EnsureTrust with trust as evident serve does at start.
func (s *testServer) restart(trust verifier.TrustConfig) {
	s.t.Helper()
	s.closeLog()
	s.openLog()
	s.ensureTrust(trust)
	s.serve(trust)
}

func TestEnsureTrust(t *testing.T) {
	s := newTestServer(t)

	// Genesis: one bootstrap entry carrying the trust.
	if s.log.Size() != 1 {
		t.Fatalf("size %d after the first EnsureTrust, want 1", s.log.Size())
	}
	st := s.logRecordAt(0)
	want, wantDigest := canonical(t, s.trust)
	b := st.Predicate.Bootstrap
	if st.Predicate.Kind != evidence.KindBootstrap || b == nil {
		t.Fatalf("entry 0 is %s", st.Predicate.Kind)
	}
	if !bytes.Equal(b.Trust, want) || b.TrustDigest != wantDigest || b.LogOrigin != testOrigin ||
		b.LogKey != s.signer.VerifierKey() || b.Operator != "erin@example.com" || b.Versions["evident"] != "test" {
		t.Errorf("bootstrap = %+v", b)
	}
	if st.Subject[0].Digest["sha256"] != wantDigest {
		t.Errorf("bootstrap subject %+v does not name the trust digest", st.Subject)
	}

	// Again, and after a restart, with the same trust: nothing is written.
	s.ensureTrust(s.trust)
	s.restart(s.trust)
	s.restart(s.trust)
	if s.log.Size() != 1 {
		t.Fatalf("size %d after restarts with the same trust, want 1", s.log.Size())
	}
	if r := s.post(s.signedPlan("CHG-1"), "application/json"); r.status != http.StatusCreated { // 1
		t.Fatalf("status %d: %s", r.status, r.body)
	}

	// A changed trust (apply removed, newcomer added): one trust.updated.
	changed := verifier.TrustConfig{Runners: []verifier.Runner{
		s.trust.Runners[0],
		{Name: "newcomer", PublicKey: s.keys["newcomer"].pubPEM, Scope: verifier.Scope{Environments: []string{"prod"}, Clusters: []string{"prod-eu-1"}}},
	}}
	s.restart(changed) // 2
	if s.log.Size() != 3 {
		t.Fatalf("size %d after a trust change, want 3", s.log.Size())
	}
	st = s.logRecordAt(2)
	newTrust, newDigest := canonical(t, changed)
	if st.Predicate.Kind != evidence.KindTrustUpdated || st.Predicate.Trust == nil ||
		!bytes.Equal(st.Predicate.Trust.Config, newTrust) || st.Predicate.Trust.Digest != newDigest {
		t.Fatalf("entry 2 = %s %+v, want trust.updated with the new trust", st.Predicate.Kind, st.Predicate.Trust)
	}
	if parsed, err := verifier.ParseTrustConfig(st.Predicate.Trust.Config); err != nil || len(parsed.Runners) != 2 || parsed.Runners[1].Name != "newcomer" {
		t.Errorf("recorded trust %+v, %v", parsed, err)
	}
	s.ensureTrust(changed)
	s.restart(changed)
	if s.log.Size() != 3 {
		t.Fatalf("size %d after restarts with the changed trust, want 3", s.log.Size())
	}

	// The server now takes records by newcomer and refuses apply's.
	newcomerRecord := func(changeID string) []byte {
		p := transition(evidence.KindPlanCreated, changeID, evidence.Target{Environment: "prod", Cluster: "prod-eu-1"})
		return sign(t, s.keys["newcomer"], payloadOf(t, p))
	}
	r := s.post(newcomerRecord("CHG-2"), "application/json") // 3
	if r.status != http.StatusCreated || receipt(t, r).Index != 3 {
		t.Fatalf("newcomer's record: status %d: %s", r.status, r.body)
	}
	applyRec := sign(t, s.keys["apply"], payloadOf(t, transition(evidence.KindApplyCompleted, "CHG-3", evidence.Target{Environment: "prod", Stack: stackA})))
	if r := s.post(applyRec, "application/json"); r.status != http.StatusForbidden {
		t.Fatalf("removed runner's record: status %d: %s", r.status, r.body)
	}

	// And the log, checked offline from its own trust history, agrees.
	var mu sync.Mutex // OnRecord is called concurrently
	signers := map[uint64]string{}
	rep := s.checkLog(func(i uint64, v *verifier.Verified) {
		mu.Lock()
		defer mu.Unlock()
		signers[i] = v.Signer.Name
	})
	if rep.Size != 4 || signers[0] != "log" || signers[1] != "ci" || signers[2] != "log" || signers[3] != "newcomer" {
		t.Fatalf("CheckLog: size %d, signers %v", rep.Size, signers)
	}

	// Back to the first trust: another trust.updated, and apply is back.
	s.restart(s.trust) // 4
	st = s.logRecordAt(4)
	if st.Predicate.Kind != evidence.KindTrustUpdated || !bytes.Equal(st.Predicate.Trust.Config, want) {
		t.Fatalf("entry 4 = %s, want trust.updated back to the first trust", st.Predicate.Kind)
	}
	if r := s.post(applyRec, "application/json"); r.status != http.StatusCreated { // 5
		t.Fatalf("re-added runner's record: status %d: %s", r.status, r.body)
	}
	if r := s.post(newcomerRecord("CHG-4"), "application/json"); r.status != http.StatusForbidden {
		t.Fatalf("newcomer after its removal: status %d: %s", r.status, r.body)
	}
	if rep := s.checkLog(nil); rep.Size != 6 {
		t.Fatalf("CheckLog size %d, want 6", rep.Size)
	}
}

// TestEnsureTrustOrderOfRunners: the recorded trust is compared as the
// canonical bytes, so reordering runners is a change that gets recorded.
func TestEnsureTrustOrderOfRunners(t *testing.T) {
	s := newTestServer(t)
	swapped := verifier.TrustConfig{Runners: []verifier.Runner{s.trust.Runners[1], s.trust.Runners[0]}}
	s.ensureTrust(swapped)
	if s.log.Size() != 2 {
		t.Fatalf("size %d", s.log.Size())
	}
	s.checkLog(nil)
}

// TestEnsureTrustWithoutBootstrap: a log that has entries but no genesis is
// not silently given one.
func TestEnsureTrustWithoutBootstrap(t *testing.T) {
	s := &testServer{t: t, dir: t.TempDir(), keys: map[string]testKey{}}
	s.logKey = fixedKey(t, "ed25519", "log")
	ref := newTestServer(t) // for its signer and keys
	s.signer, s.keys, s.trust = ref.signer, ref.keys, ref.trust
	s.clock.Store(serverNow.UnixNano())
	s.openLog()
	v, _ := verifier.New(s.trust, nil)
	vd, err := v.Verify(s.signedPlan("CHG-1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.log.Append(context.Background(), ledger.Record{Envelope: s.signedPlan("CHG-1"), Digest: vd.Digest, Signer: vd.Signer, Terms: ledger.TermsFor(vd.Statement, evidence.EntryMeta{})}); err != nil {
		t.Fatal(err)
	}
	err = ingest.EnsureTrust(context.Background(), s.log, s.logKey.priv, s.trust, s.genesis())
	if err == nil || !strings.Contains(err.Error(), "bootstrap") {
		t.Fatalf("EnsureTrust = %v, want an error about the missing bootstrap record", err)
	}
	if s.log.Size() != 1 {
		t.Fatalf("size %d: EnsureTrust wrote to a log without genesis", s.log.Size())
	}
}
