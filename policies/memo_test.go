package policies

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"evident.dev/evident/evidence"
)

// The bundled set is memoised on exactly the paths its rules read.
func TestMemoPaths(t *testing.T) {
	set, err := Load(context.Background(), Source{})
	if err != nil {
		t.Fatal(err)
	}
	if set.memo == nil {
		t.Fatal("the bundled set is not memoised")
	}
	var got []string
	for _, p := range set.memo.paths {
		got = append(got, p.String())
	}
	for _, want := range []string{"input.approvals.groups", "input.plan.resourceChanges", "input.change.production", "input.exceptions.active"} {
		if !slices.Contains(got, want) {
			t.Errorf("memo paths %v lack %s", got, want)
		}
	}
	for _, never := range []string{"input.change.id", "input.record.changeId", "input.plan.planSha256", "input"} {
		if slices.Contains(got, never) {
			t.Errorf("memo paths %v hold %s, which no bundled rule reads", got, never)
		}
	}
}

// A rule reading the whole input, or a non-deterministic builtin, turns
// the memo off.
func TestMemoOff(t *testing.T) {
	for name, rule := range map[string]string{
		"whole input":  `deny contains {"ruleId": "x.y"} if { count(input) > 100 }`,
		"computed key": `deny contains {"ruleId": "x.y"} if { some k; input[k] == 1 }`,
		"clock":        `deny contains {"ruleId": "x.y"} if { time.now_ns() > 0 }`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "r.rego"), []byte("package evident.rules.r\n\n"+rule+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			set, err := Load(context.Background(), Source{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			if set.memo != nil {
				t.Fatalf("memoised on %v", set.memo.paths)
			}
		})
	}
}

// Inputs that differ only where no rule reads share decisions; inputs that
// differ where a rule reads do not.
func TestMemoAnswers(t *testing.T) {
	ctx := context.Background()
	set, err := Load(ctx, Source{})
	if err != nil {
		t.Fatal(err)
	}
	j, err := NewJudge(JudgeConfig{Set: set, Log: noHistory{}})
	if err != nil {
		t.Fatal(err)
	}
	v := benchRecord(t)
	now := time.Date(2026, 7, 3, 9, 0, 0, 0, time.UTC)
	first, err := set.Eval(ctx, mustInput(j, v.Statement, "plan", now))
	if err != nil {
		t.Fatal(err)
	}
	v.Statement.Predicate.ChangeID = "CHG-other" // not read by any rule
	val := mustInput(j, v.Statement, "plan", now)
	if _, hit := set.memo.get(set.memo.key(val)); !hit {
		t.Fatal("an input differing only in the change id missed the memo")
	}
	v.Statement.Predicate.Target.Environment = "staging" // read: change.production
	second, err := set.Eval(ctx, mustInput(j, v.Statement, "plan", now))
	if err != nil {
		t.Fatal(err)
	}
	direct, err := set.eval(ctx, mustInput(j, v.Statement, "plan", now))
	if err != nil {
		t.Fatal(err)
	}
	if len(first) == 0 || slices.EqualFunc(first, second, decisionEqual) || !slices.EqualFunc(second, direct, decisionEqual) {
		t.Fatalf("prod %+v, staging %+v, staging evaluated %+v", first, second, direct)
	}
}

// Leaving out the members no rule reads changes no decision: every example
// record is judged the same with the whole input.
func TestPrunedInputDecidesAlike(t *testing.T) {
	ctx := context.Background()
	set, err := Load(ctx, Source{})
	if err != nil {
		t.Fatal(err)
	}
	whole := *set
	whole.reads = nil
	pruned, err := NewJudge(JudgeConfig{Set: set, Log: noHistory{}})
	if err != nil {
		t.Fatal(err)
	}
	full, err := NewJudge(JudgeConfig{Set: &whole, Log: noHistory{}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 7, 3, 9, 0, 0, 0, time.UTC)
	judged := 0
	for _, k := range evidence.Kinds() {
		ph := phase(k)
		if ph == "" {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("../evidence/testdata/kinds", string(k)+".json"))
		if err != nil {
			t.Fatal(err)
		}
		st, err := evidence.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		a, err := set.eval(ctx, mustInput(pruned, st, ph, now))
		if err != nil {
			t.Fatal(err)
		}
		b, err := set.eval(ctx, mustInput(full, st, ph, now))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(a, b, decisionEqual) {
			t.Errorf("%s: pruned input decides %+v, whole input %+v", k, a, b)
		}
		judged += len(a)
	}
	if judged == 0 {
		t.Fatal("no example record got a decision: the comparison is vacuous")
	}
}

// A KindSet holds every known kind, each apart from the others.
func TestKindSetHoldsEveryKind(t *testing.T) {
	kinds := evidence.Kinds()
	if len(kinds) > 64 {
		t.Fatalf("%d kinds do not fit a KindSet's 64 bits", len(kinds))
	}
	for i, k := range kinds {
		s := KindSet(0).with(k)
		for j, other := range kinds {
			if s.Has(other) != (i == j) {
				t.Fatalf("the set of %s: Has(%s) = %v", k, other, s.Has(other))
			}
		}
	}
	if KindSet(0).with("no.such-kind") != 0 {
		t.Fatal("an unknown kind was added")
	}
}

// mustInput is j's input for a statement with no history.
func mustInput(j *Judge, st *evidence.Statement, ph string, at time.Time) ast.Value {
	v, err := j.input(context.Background(), st, ph, nil, at)
	if err != nil {
		panic(err)
	}
	return v
}
