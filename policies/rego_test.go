package policies

import (
	"context"
	"path"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestRego runs the bundled rules' Rego unit tests (*_test.rego) with OPA's
// tester, as `opa test policies/rego` would, and checks that every rule
// file has tests.
func TestRego(t *testing.T) {
	files, err := bundledFiles(true)
	if err != nil {
		t.Fatal(err)
	}
	modules := map[string]*ast.Module{}
	tested := map[string]bool{}
	for _, f := range files {
		m, err := ast.ParseModuleWithOpts(f.path, string(f.raw), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		modules[f.path] = m
		if base, ok := strings.CutSuffix(f.path, "_test.rego"); ok {
			tested[base+".rego"] = true
		}
	}
	for _, f := range files {
		if dir := path.Dir(f.path); dir == "evident/rules" && !strings.HasSuffix(f.path, "_test.rego") && !tested[f.path] {
			t.Errorf("rule %s has no %s", f.path, strings.TrimSuffix(f.path, ".rego")+"_test.rego")
		}
	}
	ch, err := tester.NewRunner().SetModules(modules).RunTests(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for r := range ch {
		n++
		if r.Error != nil {
			t.Errorf("%s.%s: error: %v", r.Package, r.Name, r.Error)
		} else if r.Fail {
			t.Errorf("%s.%s: FAIL (%s)", r.Package, r.Name, r.Location)
		}
	}
	if n < 40 {
		t.Errorf("ran %d Rego tests, want every bundled one (at least 40)", n)
	}
	t.Logf("%d Rego tests", n)
}
