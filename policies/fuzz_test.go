package policies

import (
	"strings"
	"testing"
)

// FuzzParseScope: an exception's scope comes from a posted record.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"infra-live:prod/*", "repository=infra-live,stack=prod/aws/*", "change=CHG-1", "a=", "=b", ":", "x=**,y=*a*b*"} {
		f.Add(s, "prod/aws/x")
	}
	f.Fuzz(func(t *testing.T, scope, stack string) {
		sc, err := parseScope(scope)
		if err != nil {
			if sc != nil {
				t.Fatal("a refused scope came with selectors")
			}
			return
		}
		if len(sc) == 0 {
			t.Fatal("an accepted scope has no selectors")
		}
		facts := map[string]string{"stack": stack, "repository": "infra-live"}
		sc.matches(facts) // must not panic
		for _, s := range sc {
			if s.glob == "" || !scopeKeys[s.key] {
				t.Fatalf("accepted selector %+v", s)
			}
			if !strings.Contains(s.glob, "*") && glob(s.glob, s.glob+"x") {
				t.Fatalf("glob without * matched a longer string: %q", s.glob)
			}
		}
	})
}

// FuzzParseContracts: contracts come from an operator's file.
func FuzzParseContracts(f *testing.F) {
	f.Add(string(defaultContracts))
	f.Add("classes: [{name: a, transitions: [plan.created], closedBy: [apply.completed]}]")
	f.Add("classes: [{name: a}]")
	f.Fuzz(func(t *testing.T, y string) {
		c, err := ParseContracts([]byte(y))
		if err != nil {
			return
		}
		var facts Facts
		facts.Kinds = 0
		for _, cl := range c.Classes {
			if cl.Name == "" || len(cl.ClosedBy) == 0 {
				t.Fatalf("accepted class %+v", cl)
			}
		}
		c.Check("CHG", &facts) // must not panic on a change without records
	})
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{
		{"prod", "prod", true}, {"prod", "prod-eu", false}, {"prod-*", "prod-eu", true}, {"prod-*", "prod", false},
		{"*", "", true}, {"*db-schema*", "orders-db-schema-prod", true}, {"a*b*c", "abc", true}, {"a*b*c", "acb", false},
		{"prod/aws/*", "prod/aws/x/y", true}, {"*x", "xx", true}, {"a*a", "a", false},
	} {
		if got := glob(c.pattern, c.s); got != c.want {
			t.Errorf("glob(%q, %q) = %v", c.pattern, c.s, got)
		}
	}
}

// The bundled contracts parse, and every class is reachable.
func TestDefaultContracts(t *testing.T) {
	c := DefaultContracts()
	if len(c.Classes) != 6 {
		t.Fatalf("%d classes", len(c.Classes))
	}
	for _, bad := range []string{
		"classes: [{name: a, transitions: [plan.made], closedBy: [apply.completed]}]",
		"classes: [{name: a, transitions: [plan.created], closedBy: []}]",
		"classes: [{name: a, transitions: [plan.created], closedBy: [apply.completed]}, {name: a, transitions: [plan.created], closedBy: [apply.completed]}]",
		"classes: [{name: a, transitions: [plan.created], closedBy: [apply.completed], extra: 1}]",
		"classes: []",
	} {
		if _, err := ParseContracts([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
