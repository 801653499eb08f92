package policies

import (
	"bytes"
	"cmp"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"evident.dev/evident/evidence"
)

//go:embed contracts.yaml
var defaultContracts []byte

// Contracts are the evidence contracts of the change classes, in match
// order.
type Contracts struct {
	Classes []Class `yaml:"classes"`
}

// Class is one change class: how it is recognised, what evidence it must
// have, and which transitions close it.
type Class struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	Match       Match  `yaml:"match"`
	// Transitions are required kinds; "a|b" is satisfied by either.
	Transitions []string `yaml:"transitions"`
	// Artifacts are required artifact (or subject) names.
	Artifacts []string        `yaml:"artifacts"`
	ClosedBy  []evidence.Kind `yaml:"closedBy"`
}

// Match says which changes belong to a class; every condition set must hold.
type Match struct {
	Emergency  *bool           `yaml:"emergency"`
	Production *bool           `yaml:"production"`
	Kinds      []evidence.Kind `yaml:"kinds"`
	Targets    []string        `yaml:"targets"`
}

// DefaultContracts returns the bundled contracts (contracts.yaml).
func DefaultContracts() *Contracts {
	c, err := ParseContracts(defaultContracts)
	if err != nil {
		panic("policies: the bundled contracts.yaml is invalid: " + err.Error()) // a test keeps it valid
	}
	return c
}

// ParseContracts reads contracts YAML strictly: unknown fields, unknown
// kinds, duplicate or unnamed classes and classes without evidence are
// refused.
func ParseContracts(b []byte) (*Contracts, error) {
	var c Contracts
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("contracts: %w", err)
	}
	if len(c.Classes) == 0 {
		return nil, errors.New("contracts: no classes")
	}
	seen := map[string]bool{}
	for i, cl := range c.Classes {
		where := fmt.Sprintf("contracts: classes[%d] (%s)", i, cl.Name)
		switch {
		case cl.Name == "":
			return nil, fmt.Errorf("%s: name is required", where)
		case seen[cl.Name]:
			return nil, fmt.Errorf("%s: a second class of that name", where)
		case len(cl.Transitions)+len(cl.Artifacts) == 0:
			return nil, fmt.Errorf("%s: requires no evidence", where)
		case len(cl.ClosedBy) == 0:
			return nil, fmt.Errorf("%s: closedBy is required", where)
		}
		seen[cl.Name] = true
		kinds := slices.Concat(cl.ClosedBy, cl.Match.Kinds)
		for _, t := range cl.Transitions {
			for alt := range strings.SplitSeq(t, "|") {
				kinds = append(kinds, evidence.Kind(alt))
			}
		}
		for _, k := range kinds {
			if _, ok := k.Block(); !ok {
				return nil, fmt.Errorf("%s: unknown kind %q", where, k)
			}
		}
	}
	return &c, nil
}

// closes reports whether a record of kind k closes changes of some class.
func (c *Contracts) closes(k evidence.Kind) bool {
	for _, cl := range c.Classes {
		if slices.Contains(cl.ClosedBy, k) {
			return true
		}
	}
	return false
}

// Facts are what completeness needs of a change, accumulated record by
// record; the zero value is a change without records.
type Facts struct {
	Environment string // of the first record that names one
	Production  bool
	Emergency   bool
	Decided     bool // an entry carries the server's policy decision
	Kinds       KindSet
	// The sets below are small sorted slices, not maps: a change has a
	// handful of artifacts and targets. The tracker keeps them shared
	// between changes (changes.go), so they are read-only.
	Artifacts []string
	Targets   []string // stacks and applications
}

// KindSet is a set of known kinds, a bit each: the tracker keeps one per
// change of the whole log.
type KindSet uint64

// Has reports whether k is in the set.
func (s KindSet) Has(k evidence.Kind) bool {
	i := k.Ordinal()
	return i >= 0 && s&(1<<i) != 0
}

// with returns the set with k added; an unknown kind (which ingest
// refuses) adds nothing.
func (s KindSet) with(k evidence.Kind) KindSet {
	if i := k.Ordinal(); i >= 0 {
		return s | 1<<i
	}
	return s
}

// insert adds v to the sorted set, keeping it sorted.
func insert[T cmp.Ordered](set []T, v T) []T {
	i, found := slices.BinarySearch(set, v)
	if found {
		return set
	}
	return slices.Insert(set, i, v)
}

func contains[T cmp.Ordered](set []T, v T) bool {
	_, found := slices.BinarySearch(set, v)
	return found
}

// Add folds one record of the change into the facts.
func (f *Facts) Add(st *evidence.Statement, decided bool, prod Environments) {
	p := &st.Predicate
	f.Kinds = f.Kinds.with(p.Kind)
	if f.Environment == "" {
		f.Environment = p.Target.Environment
	}
	f.Production = f.Production || prod.Production(p.Target.Environment)
	f.Emergency = f.Emergency || p.Emergency || p.Kind == evidence.KindBreakglassOpened
	f.Decided = f.Decided || decided
	for _, a := range p.Artifacts {
		f.Artifacts = insert(f.Artifacts, a.Name)
	}
	for _, s := range st.Subject {
		if s.Name != "" {
			f.Artifacts = insert(f.Artifacts, s.Name)
		}
	}
	for _, t := range []string{p.Target.Stack, p.Target.Application} {
		if t != "" {
			f.Targets = insert(f.Targets, t)
		}
	}
}

// Status is a change's completeness.
type Status struct {
	ChangeID    string `json:"changeId"`
	Class       string `json:"class"` // "" when no class matches: no contract applies
	Environment string `json:"environment"`
	// Present and Missing are the class's requirements: transitions as
	// written in the contract ("apply.completed|sync.succeeded"), artifacts
	// as "artifact:<name>".
	Present []string `json:"present"`
	Missing []string `json:"missing"`
	Closed  bool     `json:"closed"`
}

// Complete reports whether the change has all its class's evidence.
func (s Status) Complete() bool { return len(s.Missing) == 0 }

// Classify returns the class of a change with these facts, or nil.
func (c *Contracts) Classify(f *Facts) *Class {
	for i := range c.Classes {
		if c.Classes[i].Match.holds(f) {
			return &c.Classes[i]
		}
	}
	return nil
}

func (m Match) holds(f *Facts) bool {
	if m.Emergency != nil && *m.Emergency != f.Emergency {
		return false
	}
	if m.Production != nil && *m.Production != f.Production {
		return false
	}
	if len(m.Kinds) > 0 && !slices.ContainsFunc(m.Kinds, f.Kinds.Has) {
		return false
	}
	if len(m.Targets) > 0 && !slices.ContainsFunc(m.Targets, func(g string) bool {
		for _, t := range f.Targets {
			if glob(g, t) {
				return true
			}
		}
		return false
	}) {
		return false
	}
	return true
}

// Check returns the completeness of a change with these facts.
func (c *Contracts) Check(changeID string, f *Facts) Status {
	s := Status{ChangeID: changeID, Environment: f.Environment, Present: []string{}, Missing: []string{}}
	cl := c.Classify(f)
	if cl == nil {
		return s
	}
	s.Class = cl.Name
	for _, t := range cl.Transitions {
		if f.has(t) {
			s.Present = append(s.Present, t)
		} else {
			s.Missing = append(s.Missing, t)
		}
	}
	for _, a := range cl.Artifacts {
		if contains(f.Artifacts, a) {
			s.Present = append(s.Present, "artifact:"+a)
		} else {
			s.Missing = append(s.Missing, "artifact:"+a)
		}
	}
	s.Closed = slices.ContainsFunc(cl.ClosedBy, f.Kinds.Has)
	return s
}

// has reports whether the facts satisfy a transition requirement.
func (f *Facts) has(req string) bool {
	for alt := range strings.SplitSeq(req, "|") {
		k := evidence.Kind(alt)
		if f.Kinds.Has(k) || k == evidence.KindPolicyEvaluated && f.Decided {
			return true
		}
	}
	return false
}

// Environments decides which environments are production: names or globs
// (* matches any run of characters).
type Environments []string

// DefaultProduction returns the default production environments.
func DefaultProduction() Environments {
	return Environments{"prod", "prod-*", "production", "production-*"}
}

// Production reports whether env is a production environment.
func (e Environments) Production(env string) bool {
	if env == "" {
		return false
	}
	for _, g := range e {
		if glob(g, env) {
			return true
		}
	}
	return false
}
