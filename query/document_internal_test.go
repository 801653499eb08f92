package query

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/ledger"
)

// newTestGraphQL is the GraphQL endpoint of an empty log, with the default
// limits.
func newTestGraphQL(tb testing.TB) *GraphQL {
	tb.Helper()
	signer, err := checkpoint.NewSigner("evident.test/doc", ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	if err != nil {
		tb.Fatal(err)
	}
	lg, err := ledger.Open(ledger.Config{Dir: tb.TempDir(), Origin: "evident.test/doc", Signer: signer, CacheMB: 16})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := lg.Close(); err != nil {
			tb.Error(err)
		}
	})
	auth, err := NewAuthenticator(AccessConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	g, err := NewGraphQL(GraphQLConfig{Store: lg, Auth: auth})
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// hostileDocuments are query documents built to exhaust graphql-go's
// validation, each with what its refusal must say.
func hostileDocuments() map[string]struct{ query, want string } {
	chain := func(n int, body string) string { // fragment Fi spreads Fi+1 twice
		var b strings.Builder
		b.WriteString("{ ...F0 }\n")
		for i := range n {
			fmt.Fprintf(&b, "fragment F%d on Query { ...F%d ...F%d }\n", i, i+1, i+1)
		}
		fmt.Fprintf(&b, "fragment F%d on Query { %s }\n", n, body)
		return b.String()
	}
	longCycle := func(n int) string {
		var b strings.Builder
		b.WriteString("{ ...C0 }\n")
		for i := range n {
			fmt.Fprintf(&b, "fragment C%d on Query { whoami { role } ...C%d }\n", i, (i+1)%n)
		}
		return b.String()
	}
	aliases := func(n int) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			fmt.Fprintf(&b, " a%d: whoami { role }", i)
		}
		return b.String() + " }"
	}
	return map[string]struct{ query, want string }{
		"self cycle":         {`{ ...A } fragment A on Query { ...A }`, "fragments spread themselves: ...A -> ...A"},
		"two cycle":          {`{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }`, "...A -> ...B -> ...A"},
		"nested cycle":       {`{ whoami { ...R } } fragment R on Identity { role ...S } fragment S on Identity { ... on Identity { ...R } }`, "spread themselves"},
		"long cycle":         {longCycle(60), "spread themselves"},
		"cycle off root":     {`{ whoami { role } } fragment A on Query { ...A }`, "spread themselves"},
		"fragment chain":     {chain(40, "whoami { role }"), "field selections"},
		"undefined":          {`{ ...Missing }`, `fragment "Missing" is spread but not defined`},
		"unused":             {`{ whoami { role } } fragment U on Query { whoami { role } }`, `fragment "U" is defined but never used`},
		"defined twice":      {`{ ...D } fragment D on Query { whoami { role } } fragment D on Query { whoami { role } }`, "defined more than once"},
		"deep selections":    {strings.Repeat("{ whoami ", 3000) + strings.Repeat("}", 3000), "brackets more than"},
		"deep arguments":     {`{ transitions(filter: ` + strings.Repeat("[", 3000) + strings.Repeat("]", 3000) + `) { nodes { index } } }`, "brackets more than"},
		"deep introspection": {`{ __schema { types { ` + strings.Repeat("fields { type { ", 4) + "name" + strings.Repeat(" } }", 4) + " } } }", "would resolve about"},
		"alias fan-out":      {aliases(200), "aliased fields"},
		"wide":               {"{" + strings.Repeat(" whoami { role }", 800) + "}", "field selections"},
		"many tokens":        {"{ whoami { role " + strings.Repeat("role ", 5000) + "} }", "tokens"},
		"large":              {"{ whoami { role } }" + strings.Repeat(" ", 40<<10), "bytes"},
		"many directives":    {"{ whoami " + strings.Repeat("@include(if: true) ", 1500) + "{ role } }", "tokens"},
	}
}

// TestHostileDocumentsRefusedQuickly: each hostile document is refused
// before graphql-go's validation, saying why, in milliseconds.
func TestHostileDocumentsRefusedQuickly(t *testing.T) {
	g := newTestGraphQL(t)
	for name, c := range hostileDocuments() {
		start := time.Now()
		res := g.Execute(t.Context(), &Identity{Subject: "t", Role: RoleAuditor}, Request{Query: c.query})
		took := time.Since(start)
		if len(res.Errors) == 0 || !strings.Contains(fmt.Sprint(res.Errors[0]["message"]), c.want) {
			t.Errorf("%s: errors %v, want one saying %q", name, res.Errors, c.want)
		}
		if res.Data != nil {
			t.Errorf("%s: answered with data", name)
		}
		if took > 200*time.Millisecond {
			t.Errorf("%s: refused after %s", name, took)
		}
	}
}

// TestGraphiQLIntrospectionAllowed: the query GraphiQL sends for its Docs
// panel and autocompletion passes the limits and answers the schema.
func TestGraphiQLIntrospectionAllowed(t *testing.T) {
	g := newTestGraphQL(t)
	q, err := os.ReadFile("testdata/graphiql-introspection.graphql")
	if err != nil {
		t.Fatal(err)
	}
	res := g.Execute(t.Context(), &Identity{Subject: "t", Role: RoleAuditor}, Request{Query: string(q), OperationName: "IntrospectionQuery"})
	if len(res.Errors) > 0 {
		t.Fatalf("GraphiQL's introspection query is refused: %v", res.Errors)
	}
	if !strings.Contains(fmt.Sprint(res.Data), "approvals") {
		t.Errorf("introspection answer lacks the schema's fields: %.300v", res.Data)
	}
}

// FuzzQueryDocument runs the server's whole check of a query document, the
// limits and fragment rules and then graphql-go's validation, on any text:
// nothing crashes, and no document takes more than a small time budget.
func FuzzQueryDocument(f *testing.F) {
	g := newTestGraphQL(f)
	for _, c := range hostileDocuments() {
		f.Add(c.query)
	}
	for _, q := range AuditQueries() {
		f.Add(q.Query)
	}
	if q, err := os.ReadFile("testdata/graphiql-introspection.graphql"); err == nil {
		f.Add(string(q))
	}
	f.Add(`{ changes(first: 99999999999999999999) { nodes { id } } }`)
	f.Add(`query($a: Int) { changes(first: $a) { nodes { ... on Change { id ...X } } } } fragment X on Change { id }`)
	f.Fuzz(func(t *testing.T, q string) {
		start := time.Now()
		p := g.prepare(q)
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("checking a %d-byte document took %s (refused: %v)", len(q), took, p.refusal)
		}
	})
}

// BenchmarkRefuseHostileDocument: what refusing each hostile document
// costs the server (go test ./query -run x -bench RefuseHostile).
func BenchmarkRefuseHostileDocument(b *testing.B) {
	g := newTestGraphQL(b)
	for name, c := range hostileDocuments() {
		b.Run(strings.ReplaceAll(name, " ", "-"), func(b *testing.B) {
			for b.Loop() {
				if _, err := g.parseDocument(c.query); err == nil {
					b.Fatalf("%s was not refused", name)
				}
			}
		})
	}
}
