package policies

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"evident.dev/evident/evidence"
)

// The tracker keeps each change's facts compactly (shared shapes, only the
// names the contracts read); what it answers must be what the plain Facts
// of the change answer, as the judge builds them. Random records over many
// changes, with names the contracts read and names they do not, go through
// both, and every query is compared with its answer from the plain facts.
func TestTrackerMatchesPlainFacts(t *testing.T) {
	// Classes told apart by the globs their targets match: a change must
	// keep which globs its targets match, whatever the names.
	byTarget, err := ParseContracts([]byte(`classes:
  - {name: schema, match: {targets: ["*schema*"]}, transitions: [plan.created], artifacts: [sbom], closedBy: [apply.completed]}
  - {name: db-or-web, match: {targets: ["*db*", web]}, transitions: [apply.completed], closedBy: [verification.completed]}
  - {name: any-target, match: {targets: ["*"]}, transitions: [plan.created], artifacts: [sbom, plan], closedBy: [apply.completed]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		contracts *Contracts
	}{{"bundled", DefaultContracts()}, {"by target", byTarget}} {
		t.Run(c.name, func(t *testing.T) {
			checkAgainstPlainFacts(t, c.contracts, rand.New(rand.NewPCG(1, uint64(len(c.name)))))
		})
	}
}

func checkAgainstPlainFacts(t *testing.T, contracts *Contracts, rnd *rand.Rand) {
	pick := func(from ...string) string { return from[rnd.IntN(len(from))] }
	var kinds []evidence.Kind
	for _, k := range evidence.Kinds() {
		if !k.LogWide() {
			kinds = append(kinds, k)
		}
	}
	tr := NewTracker(nil, contracts, nil)
	plain := map[string]*Facts{}
	for i := range 5000 {
		st := &evidence.Statement{Predicate: evidence.Transition{
			Kind:      kinds[rnd.IntN(len(kinds))],
			ChangeID:  fmt.Sprintf("CHG-%d", rnd.IntN(400)),
			Emergency: rnd.IntN(40) == 0,
			Target: evidence.Target{Environment: pick("", "prod", "prod-eu", "dev", "staging"),
				Stack:       pick("", "orders-db-schema", "billing-migration", "stack-1", fmt.Sprintf("stack-%d", i)),
				Application: pick("", "", "web", "db-schema-app")},
		}}
		for range rnd.IntN(3) {
			st.Predicate.Artifacts = append(st.Predicate.Artifacts, evidence.Artifact{Name: pick("plan", "apply-log", "sbom", "image", fmt.Sprintf("log-%d", i))})
		}
		for range rnd.IntN(3) {
			st.Subject = append(st.Subject, evidence.Subject{Name: pick("", "plan", "apply-log", "infra-live")})
		}
		decided := rnd.IntN(3) == 0
		id := st.Predicate.ChangeID
		if plain[id] == nil {
			plain[id] = &Facts{}
		}
		plain[id].Add(st, decided, tr.prod)
		tr.fold(uint64(i), st, decided)
		if got, want := must(tr.Change(id)), contracts.Check(id, plain[id]); !statusEqual(got, want) {
			t.Fatalf("record %d: %s = %+v, want %+v", i, id, got, want)
		}
	}

	var want []Status
	rates := map[rateKey]*Rate{}
	missing := map[string]map[string]int{}
	for id, f := range plain {
		s := contracts.Check(id, f)
		want = append(want, s)
		if s.Class == "" {
			continue
		}
		r := rates[rateKey{s.Environment, s.Class}]
		if r == nil {
			r = &Rate{Environment: s.Environment, Class: s.Class}
			rates[rateKey{s.Environment, s.Class}] = r
		}
		r.Changes++
		if s.Closed {
			r.Closed++
			if s.Complete() {
				r.Complete++
			}
			for _, m := range s.Missing {
				if missing[s.Environment] == nil {
					missing[s.Environment] = map[string]int{}
				}
				missing[s.Environment][m]++
			}
		}
	}
	slices.SortFunc(want, func(a, b Status) int { return cmp.Compare(a.ChangeID, b.ChangeID) })
	if got := tr.Changes(nil); !slices.EqualFunc(got, want, statusEqual) {
		t.Fatalf("Changes = %+v\nwant %+v", got, want)
	}
	var wantRates []Rate
	for _, r := range rates {
		r.Rate = 1
		if r.Closed > 0 {
			r.Rate = float64(r.Complete) / float64(r.Closed)
		}
		wantRates = append(wantRates, *r)
	}
	slices.SortFunc(wantRates, func(a, b Rate) int {
		return cmp.Or(cmp.Compare(a.Environment, b.Environment), cmp.Compare(a.Class, b.Class))
	})
	if got := tr.Rates(); !slices.Equal(got, wantRates) || len(got) < 2 {
		t.Fatalf("Rates = %+v\nwant %+v", got, wantRates)
	}
	if got := tr.Missing(); !maps.EqualFunc(got, missing, maps.Equal) || len(got) == 0 {
		t.Fatalf("Missing = %v\nwant %v", got, missing)
	}
	// The names the contracts do not read are not kept: the shapes are few
	// whatever the records name.
	if n := len(tr.changes.shapes.list); n > 160 {
		t.Errorf("%d shapes for %d changes", n, len(plain))
	}
}

func must(s Status, ok bool) Status {
	if !ok {
		return Status{ChangeID: "(not found)"}
	}
	return s
}

func statusEqual(a, b Status) bool {
	return a.ChangeID == b.ChangeID && a.Class == b.Class && a.Environment == b.Environment && a.Closed == b.Closed &&
		slices.Equal(a.Present, b.Present) && slices.Equal(a.Missing, b.Missing)
}

// An id handed out by the arena keeps its bytes while later ids fill the
// block and new blocks start.
func TestIDArena(t *testing.T) {
	var a idArena
	var ids []string
	for i := range 20000 {
		want := fmt.Sprintf("CHG-%d-%0*d", i, i%100, 0)
		if i%5000 == 0 {
			want = string(make([]byte, idBlock)) // too long for a block: kept apart
		}
		ids = append(ids, a.add(want))
	}
	for i, id := range ids {
		want := fmt.Sprintf("CHG-%d-%0*d", i, i%100, 0)
		if i%5000 == 0 {
			want = string(make([]byte, idBlock))
		}
		if id != want {
			t.Fatalf("id %d = %q, want %q", i, id, want)
		}
	}
}
