package ingest_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"evident.dev/evident/artifacts"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
)

// unreachableStore is a store that cannot answer, as an object store does
// during an outage (no real store can be made to fail on demand here).
type unreachableStore struct{}

func (unreachableStore) Exists(context.Context, string) (bool, error) {
	return false, errors.New("dial tcp 127.0.0.1:9: connection refused")
}

// A record naming an artifact the store does not hold is appended with an
// artifact.missing finding per missing artifact; one whose artifacts are all
// stored gets none; an unreachable store keeps the record out of the log.
func TestArtifactStoreJudge(t *testing.T) {
	store, err := artifacts.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ref, err := store.Put(context.Background(), strings.NewReader("plan file"))
	if err != nil {
		t.Fatal(err)
	}
	missing := artifacts.Digest([]byte("never uploaded"))
	s := newTestServer(t, withJudges(ingest.ArtifactStoreJudge{Store: store}))
	withArtifacts := func(id string, arts ...evidence.Artifact) []byte {
		tr := transition(evidence.KindPlanCreated, id, evidence.Target{Environment: "prod"})
		tr.Artifacts = arts
		return sign(t, s.keys["ci"], payloadOf(t, tr))
	}

	r := s.post(withArtifacts("CHG-A1", evidence.Artifact{Name: "plan", Digest: ref.Digest}), "application/json")
	if r.status != http.StatusCreated {
		t.Fatalf("post: %d %s", r.status, r.body)
	}
	if rc := receipt(t, r); len(rc.Findings) != 0 {
		t.Fatalf("stored artifact: findings %+v", rc.Findings)
	}

	r = s.post(withArtifacts("CHG-A2",
		evidence.Artifact{Name: "plan", Digest: ref.Digest},
		evidence.Artifact{Name: "apply.log", Digest: missing}), "application/json")
	if r.status != http.StatusCreated {
		t.Fatalf("post: %d %s", r.status, r.body)
	}
	rc := receipt(t, r)
	if len(rc.Findings) != 1 || rc.Findings[0].Code != ingest.FindingArtifactMissing ||
		rc.Findings[0].Evidence["digest"] != missing || rc.Findings[0].Evidence["name"] != "apply.log" {
		t.Fatalf("missing artifact: findings %+v", rc.Findings)
	}
	e, _ := s.entry(rc.Index)
	if len(e.Meta.Findings) != 1 || e.Meta.Findings[0].Code != ingest.FindingArtifactMissing {
		t.Fatalf("entry findings %+v", e.Meta.Findings)
	}

	down := newTestServer(t, withJudges(ingest.ArtifactStoreJudge{Store: unreachableStore{}}))
	size := down.log.Size()
	tr := transition(evidence.KindPlanCreated, "CHG-A3", evidence.Target{Environment: "prod"})
	tr.Artifacts = []evidence.Artifact{{Name: "plan", Digest: ref.Digest}}
	r = down.post(sign(t, down.keys["ci"], payloadOf(t, tr)), "application/json")
	if r.status/100 != 5 || down.log.Size() != size {
		t.Fatalf("unreachable store: %d %s, log size %d -> %d", r.status, r.body, size, down.log.Size())
	}
}
