package query

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/ast"
	"github.com/graphql-go/graphql/language/lexer"
	"github.com/graphql-go/graphql/language/parser"
	"github.com/graphql-go/graphql/language/source"
)

// Every query document is bounded here, from its text alone and in time
// linear in its size, before graphql-go validates or runs it. graphql-go's
// validation expands fragment spreads recursively with no guard against
// cycles, and a Go stack overflow is fatal: no recover catches it, and ingest,
// the gate and checkpoints would die with the query. Its validation also
// compares fields pairwise, so the number of selections must stay small.

// documentLimits bound a query document.
type documentLimits struct {
	bytes      int // document text
	tokens     int // lexical tokens
	nesting    int // open brackets, braces and parentheses at once
	depth      int // field depth, fragments expanded; an introspection ofType does not count
	selections int // selections visited, fragments expanded
	aliases    int // aliased fields, fragments expanded
	fragments  int // fragment definitions
	cost       int // estimated fields resolved
	// introspectionCost is the estimate allowed under __schema and __type,
	// which read the in-memory schema, not the log. GraphiQL's own query
	// is estimated at about 75,000 there: every type reference costed with
	// all nine levels of its ofType chain, of which most are null.
	introspectionCost int
	page              int // the largest `first`, assumed when it is a variable
}

// refusal is why a document is not run: a message for the caller and the
// GraphQL error code it is answered with.
type refusal struct {
	code string
	msg  string
}

func (r *refusal) Error() string { return r.msg }

func tooComplex(format string, args ...any) *refusal {
	return &refusal{code: "QUERY_TOO_COMPLEX", msg: fmt.Sprintf(format, args...)}
}

func invalidDocument(format string, args ...any) *refusal {
	return &refusal{code: "GRAPHQL_VALIDATION_FAILED", msg: fmt.Sprintf(format, args...)}
}

// listFields return lists whose size a query does not set: their estimated
// length when costing a query.
var listFields = map[string]int{
	"timeline": 50, "plans": 5, "policyDecisions": 10, "approvals": 10, "selfApprovals": 5, "gateDecisions": 5,
	"applies": 10, "appliesWithoutFreshApproval": 5, "verifications": 5, "syncs": 10, "drift": 10, "exceptions": 5,
	"findings": 10, "rules": 10, "denied": 5, "resourceChanges": 20, "resources": 20,
}

// connectionFields take `first`.
var connectionFields = map[string]bool{"transitions": true, "changes": true, "expiringExceptions": true}

// introspectionFanout estimates the lists of the introspection types from
// the schema itself (their average length), so GraphiQL's introspection
// query is costed near what it resolves while one that nests `fields` in
// `type` in `fields` multiplies past the cost limit within a few levels.
func introspectionFanout(s *graphql.Schema) map[string]int {
	types, fields, args, inputs, enums, ifaces := 0, 0, 0, 0, 0, 0
	withFields, withInputs, withEnums, withIfaces := 0, 0, 0, 0
	for _, t := range s.TypeMap() {
		types++
		switch t := t.(type) {
		case *graphql.Object:
			withFields++
			fields += len(t.Fields())
			for _, f := range t.Fields() {
				args += len(f.Args)
			}
			withIfaces++
			ifaces += len(t.Interfaces())
		case *graphql.Interface:
			withFields++
			fields += len(t.Fields())
		case *graphql.InputObject:
			withInputs++
			inputs += len(t.Fields())
		case *graphql.Enum:
			withEnums++
			enums += len(t.Values())
		}
	}
	avg := func(n, d int) int { return max(1, (n+d-1)/max(1, d)) }
	return map[string]int{
		"types": types, "fields": avg(fields, withFields), "args": avg(args, fields),
		"inputFields": avg(inputs, withInputs), "enumValues": avg(enums, withEnums),
		"interfaces": avg(ifaces, withIfaces), "possibleTypes": 2,
		"directives": len(s.Directives()), "locations": 4,
	}
}

// parseDocument checks q against the limits and parses it; a syntax error
// is returned as graphql-go reports it (with its location).
func (g *GraphQL) parseDocument(q string) (*ast.Document, error) {
	lim := g.limits
	if len(q) > lim.bytes {
		return nil, tooComplex("query document is %d bytes; the limit is %d", len(q), lim.bytes)
	}
	if r := controlCharacter(q); r != nil {
		return nil, r
	}
	src := source.NewSource(&source.Source{Body: []byte(q), Name: "GraphQL request"})
	if err := scanTokens(src, lim); err != nil {
		return nil, err
	}
	doc, err := parser.Parse(parser.ParseParams{Source: src})
	if err != nil {
		return nil, err
	}
	if r := g.checkDocument(doc); r != nil {
		return nil, r
	}
	return doc, nil
}

// controlCharacter refuses the control characters GraphQL allows nowhere,
// not even in strings. graphql-go would report one with a copy of its whole
// line, each character formatted on its own: slow on a long line.
func controlCharacter(q string) *refusal {
	line, col := 1, 1
	for i := 0; i < len(q); i++ {
		switch c := q[i]; {
		case c == '\n':
			line, col = line+1, 1
			continue
		case c < 0x20 && c != '\t' && c != '\r', c == 0x7f:
			return &refusal{code: "GRAPHQL_PARSE_FAILED", msg: fmt.Sprintf("Syntax Error: invalid character U+%04X at line %d, column %d", c, line, col)}
		}
		col++
	}
	return nil
}

// scanTokens bounds the token count and bracket nesting before parsing, so
// the parser's recursion is bounded too. A lexical error is returned as
// graphql-go reports it, with its location, and the parser is not run.
func scanTokens(src *source.Source, lim documentLimits) error {
	next := lexer.Lex(src)
	depth := 0
	for n := 0; ; n++ {
		tok, err := next(0)
		if err != nil {
			return err
		}
		if tok.Kind == lexer.EOF {
			return nil
		}
		if n >= lim.tokens {
			return tooComplex("query has more than %d tokens; the limit is %d", lim.tokens, lim.tokens)
		}
		switch tok.Kind {
		case lexer.BRACE_L, lexer.BRACKET_L, lexer.PAREN_L:
			if depth++; depth > lim.nesting {
				return tooComplex("query nests brackets more than %d deep; the limit is %d", lim.nesting, lim.nesting)
			}
		case lexer.BRACE_R, lexer.BRACKET_R, lexer.PAREN_R:
			depth--
		}
	}
}

// checkDocument refuses what graphql-go cannot validate safely: fragments
// defined twice, spread but undefined, defined but unused or spreading
// themselves (directly or through others), and documents too deep, too
// wide, with too many aliases or too costly once fragments are expanded.
func (g *GraphQL) checkDocument(doc *ast.Document) *refusal {
	lim := g.limits
	frags := map[string]*ast.FragmentDefinition{}
	var order []string
	spreads := map[string][]*ast.FragmentSpread{} // fragment name -> spreads in its own selections
	var rootSpreads []*ast.FragmentSpread
	for _, d := range doc.Definitions {
		switch d := d.(type) {
		case *ast.FragmentDefinition:
			name := d.Name.Value
			if frags[name] != nil {
				return invalidDocument("fragment %q is defined more than once", name)
			}
			if len(frags) >= lim.fragments {
				return tooComplex("query defines more than %d fragments; the limit is %d", lim.fragments, lim.fragments)
			}
			frags[name] = d
			order = append(order, name)
			spreads[name] = spreadsIn(d.SelectionSet)
		case *ast.OperationDefinition:
			rootSpreads = append(rootSpreads, spreadsIn(d.SelectionSet)...)
		}
	}
	for _, s := range rootSpreads {
		if frags[s.Name.Value] == nil {
			return invalidDocument("fragment %q is spread but not defined", s.Name.Value)
		}
	}
	for _, name := range order {
		for _, s := range spreads[name] {
			if frags[s.Name.Value] == nil {
				return invalidDocument("fragment %q is spread but not defined", s.Name.Value)
			}
		}
	}
	if cycle := fragmentCycle(order, spreads); cycle != nil {
		return invalidDocument("fragments spread themselves: %s", joinCycle(cycle))
	}
	used := map[string]bool{}
	stack := rootSpreads
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !used[s.Name.Value] {
			used[s.Name.Value] = true
			stack = append(stack, spreads[s.Name.Value]...)
		}
	}
	for _, name := range order {
		if !used[name] {
			return invalidDocument("fragment %q is defined but never used", name)
		}
	}

	// Fragments now form no cycle; the walk below expands them and stops as
	// soon as the selections visited pass the limit, so a chain of fragments
	// each spreading the next twice costs at most that many steps.
	w := walker{g: g, frags: frags}
	for _, d := range doc.Definitions {
		if op, ok := d.(*ast.OperationDefinition); ok {
			if _, r := w.walk(op.SelectionSet, 1, false); r != nil {
				return r
			}
		}
	}
	return nil
}

// spreadsIn lists the fragment spreads of a selection set, inline
// fragments included, without entering spread fragments. Iterative: the
// set's nesting is bounded by the token scan, but no recursion is needed.
func spreadsIn(ss *ast.SelectionSet) []*ast.FragmentSpread {
	var out []*ast.FragmentSpread
	stack := []*ast.SelectionSet{ss}
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if s == nil {
			continue
		}
		for _, sel := range s.Selections {
			switch sel := sel.(type) {
			case *ast.Field:
				stack = append(stack, sel.SelectionSet)
			case *ast.InlineFragment:
				stack = append(stack, sel.SelectionSet)
			case *ast.FragmentSpread:
				out = append(out, sel)
			}
		}
	}
	return out
}

// fragmentCycle returns the names along one cycle of spreads, or nil.
func fragmentCycle(order []string, spreads map[string][]*ast.FragmentSpread) []string {
	const (
		unseen = iota
		open
		done
	)
	state := map[string]int{}
	type frame struct {
		name string
		next int
	}
	for _, root := range order {
		if state[root] != unseen {
			continue
		}
		path := []frame{{name: root}}
		state[root] = open
		for len(path) > 0 {
			top := &path[len(path)-1]
			if top.next == len(spreads[top.name]) {
				state[top.name] = done
				path = path[:len(path)-1]
				continue
			}
			to := spreads[top.name][top.next].Name.Value
			top.next++
			switch state[to] {
			case open:
				var cycle []string
				for i := len(path) - 1; i >= 0; i-- {
					cycle = append(cycle, path[i].name)
					if path[i].name == to {
						break
					}
				}
				slices.Reverse(cycle)
				return append(cycle, to)
			case unseen:
				state[to] = open
				path = append(path, frame{name: to})
			}
		}
	}
	return nil
}

func joinCycle(names []string) string {
	s := ""
	for i, n := range names {
		if i > 0 {
			s += " -> "
		}
		s += "..." + n
	}
	return s
}

// walker expands a document's selections with its fragments.
type walker struct {
	g       *GraphQL
	frags   map[string]*ast.FragmentDefinition
	visits  int
	aliases int
}

// walk returns the estimated cost of ss at depth. Inside __schema or
// __type, lists are costed by the schema's own sizes and the linear
// `ofType` chain of a type reference does not deepen the query.
func (w *walker) walk(ss *ast.SelectionSet, depth int, introspection bool) (int, *refusal) {
	lim := w.g.limits
	if ss == nil {
		return 0, nil
	}
	if w.visits += len(ss.Selections); w.visits > lim.selections {
		return 0, tooComplex("query has more than %d field selections (fragments expanded); the limit is %d", lim.selections, lim.selections)
	}
	if depth > lim.depth {
		return 0, tooComplex("query is nested %d levels deep; the limit is %d", depth, lim.depth)
	}
	total, budget := 0, lim.cost
	if introspection {
		budget = lim.introspectionCost
	}
	for _, sel := range ss.Selections {
		var c int
		var r *refusal
		switch s := sel.(type) {
		case *ast.Field:
			name := s.Name.Value
			if s.Alias != nil && s.Alias.Value != name {
				if w.aliases++; w.aliases > lim.aliases {
					return 0, tooComplex("query has more than %d aliased fields; the limit is %d", lim.aliases, lim.aliases)
				}
			}
			inner := introspection || name == "__schema" || name == "__type"
			mult, deeper := 1, 1
			switch {
			case inner:
				if n, ok := w.g.introspection[name]; ok {
					mult = n
				}
				if name == "ofType" {
					deeper = 0
				}
			case connectionFields[name]:
				mult = w.pageSize(s)
			default:
				if n, ok := listFields[name]; ok {
					mult = n
				}
			}
			c, r = w.walk(s.SelectionSet, depth+deeper, inner)
			c = 1 + mult*c
			if inner && !introspection {
				c = 1 // within its own budget, and not the log's work
			}
		case *ast.InlineFragment:
			c, r = w.walk(s.SelectionSet, depth, introspection)
		case *ast.FragmentSpread:
			c, r = w.walk(w.frags[s.Name.Value].SelectionSet, depth, introspection)
		}
		if r != nil {
			return 0, r
		}
		if total += c; total > budget {
			return 0, tooComplex("query would resolve about %d fields or more; the limit is %d: ask for fewer nodes per page or fewer fields", total, budget)
		}
	}
	return total, nil
}

// pageSize is a connection's `first`, the default page when it is absent
// and the largest page when it is a variable.
func (w *walker) pageSize(f *ast.Field) int {
	for _, a := range f.Arguments {
		if a.Name.Value != "first" {
			continue
		}
		if v, ok := a.Value.(*ast.IntValue); ok {
			if n, err := strconv.Atoi(v.Value); err == nil && n > 0 {
				return min(n, w.g.limits.page)
			}
			return w.g.limits.page
		}
		return w.g.limits.page
	}
	return 20
}
