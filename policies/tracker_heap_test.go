package policies

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"evident.dev/evident/evidence"
)

// loadChange is the number of records per change of the load generator
// run with --apply-every 7: six plans and the apply of the first.
const loadChange = 7

// loadStatement is record i of an `evident load --apply-every 7` run as the
// tracker receives it: every string freshly decoded, as the log hands each
// entry over.
func loadStatement(i int) *evidence.Statement {
	st := &evidence.Statement{
		Subject: []evidence.Subject{{Name: strings.Clone("plan")}, {Name: strings.Clone("infra-live")}},
		Predicate: evidence.Transition{
			Kind:     evidence.KindPlanCreated,
			ChangeID: fmt.Sprintf("LOAD-t3k9x2m1qz-c%d", i/loadChange),
			Target:   evidence.Target{Environment: strings.Clone("prod"), Stack: fmt.Sprintf("stack-%d", i%50)},
		},
	}
	if i%loadChange == loadChange-1 {
		st.Predicate.Kind = evidence.KindApplyCompleted
		st.Subject = st.Subject[1:] // an apply names no plan subject
	}
	return st
}

// BenchmarkTrackerHeap is the tracker's live memory after folding in a
// million entries shaped like the load generator's (one change per seven
// records): heap bytes and heap objects the tracker holds per change, what
// the garbage collector scans at every cycle late in a long run. Run it
// with -benchtime=1x; its time is the fold of the whole log.
func BenchmarkTrackerHeap(b *testing.B) {
	const records = 1_000_000
	const changes = (records + loadChange - 1) / loadChange
	var before, after runtime.MemStats
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&before)
		t := NewTracker(nil, nil, nil)
		for i := range records {
			t.fold(uint64(i), loadStatement(i), true)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if s, ok := t.Change(fmt.Sprintf("LOAD-t3k9x2m1qz-c%d", changes-1)); !ok || s.Class != "production-infra-change" {
			b.Fatalf("last change = %+v, %v", s, ok)
		}
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/changes, "heapB/change")
	b.ReportMetric(float64(after.HeapObjects-before.HeapObjects)/changes, "objects/change")
}
