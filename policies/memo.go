package policies

import (
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"

	"evident.dev/evident/evidence"
)

// memoSize bounds the decisions a set remembers.
const memoSize = 4096

// memo remembers decisions by the part of the input the policies read.
// Rego without non-deterministic builtins is a function of its input and
// data, and a set's data does not change, so two inputs that agree on every
// path any rule reads get the same decisions: records of one change, or
// changes of the same shape, are evaluated once. Safe for concurrent use.
type memo struct {
	paths []ast.Ref // the input paths the policies read, e.g. input.plan.resourceChanges
	max   int

	mu      sync.Mutex // guards entries
	entries map[int][]memoEntry
	n       int
}

type memoEntry struct {
	key       ast.Value
	decisions []evidence.Decision
}

func newMemo(paths []ast.Ref, max int) *memo {
	return &memo{paths: paths, max: max, entries: map[int][]memoEntry{}}
}

// key is the values of the read paths in input (null where absent).
func (m *memo) key(input ast.Value) ast.Value {
	terms := make([]*ast.Term, len(m.paths))
	for i, p := range m.paths {
		v, err := input.Find(p[1:])
		if err != nil {
			v = ast.Null{} // absent: distinct from every present value, for what rules see
		}
		terms[i] = ast.NewTerm(v)
	}
	return ast.NewArray(terms...)
}

func (m *memo) get(key ast.Value) ([]evidence.Decision, bool) {
	h := key.Hash()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.entries[h] {
		if ast.Compare(e.key, key) == 0 {
			return slices.Clone(e.decisions), true
		}
	}
	return nil, false
}

func (m *memo) put(key ast.Value, ds []evidence.Decision) {
	h := key.Hash()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n >= m.max {
		clear(m.entries) // simple and bounded; the working set refills it
		m.n = 0
	}
	m.entries[h] = append(m.entries[h], memoEntry{key: key, decisions: slices.Clone(ds)})
	m.n++
}

// memoPaths returns the input paths the compiled policies read, as refs
// of constant strings (input.plan.resourceChanges), and false when
// memoising would be unsound: a rule reads the input through a computed
// key at its root (input[x]) or as a whole, or calls a non-deterministic
// builtin (time, random, HTTP).
func memoPaths(c *ast.Compiler) ([]ast.Ref, bool) {
	ok := true
	var paths []ast.Ref
	for _, m := range c.Modules {
		ast.WalkRefs(m, func(r ast.Ref) bool {
			if !r[0].Equal(ast.InputRootDocument) {
				return false
			}
			n := 1
			for n < len(r) {
				if _, isStr := r[n].Value.(ast.String); !isStr {
					break
				}
				n++
			}
			if n == 1 {
				ok = false // the whole input, or input[x]
			}
			paths = append(paths, r[:n].Copy())
			return false
		})
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			if e.IsCall() {
				if b, known := ast.BuiltinMap[e.Operator().String()]; known && b.Nondeterministic {
					ok = false
				}
			}
			return false
		})
	}
	if !ok {
		return nil, false
	}
	// Keep only the shortest of nested paths: input.plan covers
	// input.plan.actions.
	slices.SortFunc(paths, func(a, b ast.Ref) int { return a.Compare(b) })
	var out []ast.Ref
	for _, p := range paths {
		if len(out) > 0 && p.HasPrefix(out[len(out)-1]) {
			continue
		}
		out = append(out, p)
	}
	return out, true
}
