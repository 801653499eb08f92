package policies

import (
	"encoding/binary"
	"slices"
	"strings"

	"evident.dev/evident/evidence"
)

// The tracker keeps the facts of every change of the whole log, for as
// long as the server runs: at a million entries, some 140,000 changes. A
// Facts each, with its strings and slices, made that four heap objects and
// 300 bytes per change for the garbage collector to mark at every cycle.
// The types below hold the same facts in under a third of the memory with
// no object per change: ids copied into shared blocks, and per change one
// pointer-free record whose names live in a shape that many changes share.

// changeSet is the facts of every change the tracker has seen. Not safe
// for concurrent use: the tracker's mutex guards it.
type changeSet struct {
	index  map[string]uint32 // change id (a copy in ids) → its facts in facts
	facts  []changeFacts
	ids    idArena
	shapes shapeTable
	// Of the names a record brings, only what the contracts read is kept,
	// so that the shapes stay few however varied the names: the artifact
	// names some class requires, and of the targets, which of the classes'
	// globs they match. A target stands for every target that matches the
	// same globs (Check reads targets only through them), so a change keeps
	// the first target seen that matches those globs in its place.
	artifacts map[string]bool
	globs     []string
	targets   map[string]string // globs a target matches (a byte each) → the first target seen matching those
}

func newChangeSet(c *Contracts) *changeSet {
	s := &changeSet{index: map[string]uint32{}, artifacts: map[string]bool{}, targets: map[string]string{}, shapes: newShapeTable()}
	for _, cl := range c.Classes {
		for _, a := range cl.Artifacts {
			s.artifacts[a] = true
		}
		s.globs = append(s.globs, cl.Match.Targets...)
	}
	return s
}

// changeFacts is Facts without pointers: a slice of them is one object the
// garbage collector need not scan.
type changeFacts struct {
	kinds                          KindSet
	shape                          uint32 // index in shapeTable.list
	production, emergency, decided bool
}

// shape is the part of a change's facts that holds names: its environment
// and the artifacts and targets the contracts read, as sorted sets. Shapes
// are immutable once in the table, and shared by every change that has the
// same names: a few per environment (at most 2^(required artifacts) times
// 2^(distinct sets of globs matched) per environment).
type shape struct {
	environment string
	artifacts   []string
	targets     []string
}

// shapeTable holds each distinct shape once, the empty shape at index 0.
type shapeTable struct {
	list []shape
	ids  map[string]uint32 // shape.key → index in list
	key  []byte            // scratch for keys, reused between lookups
}

func newShapeTable() shapeTable {
	t := shapeTable{ids: map[string]uint32{}}
	t.intern(shape{})
	return t
}

// intern returns the index of sh in the table, adding a copy of it when it
// is new: the copy holds no string or slice of the record it came from.
func (t *shapeTable) intern(sh shape) uint32 {
	t.key = sh.appendKey(t.key[:0])
	if i, ok := t.ids[string(t.key)]; ok {
		return i
	}
	clone := func(set []string) []string {
		if len(set) == 0 {
			return nil
		}
		out := make([]string, len(set))
		for i, s := range set {
			out[i] = strings.Clone(s)
		}
		return out
	}
	i := uint32(len(t.list))
	t.list = append(t.list, shape{environment: strings.Clone(sh.environment), artifacts: clone(sh.artifacts), targets: clone(sh.targets)})
	t.ids[string(t.key)] = i
	return i
}

// appendKey appends an encoding of the shape that differs between any two
// different shapes: every string and set is prefixed by its length.
func (sh *shape) appendKey(b []byte) []byte {
	str := func(b []byte, s string) []byte { return append(binary.AppendUvarint(b, uint64(len(s))), s...) }
	b = str(b, sh.environment)
	for _, set := range [][]string{sh.artifacts, sh.targets} {
		b = binary.AppendUvarint(b, uint64(len(set)))
		for _, s := range set {
			b = str(b, s)
		}
	}
	return b
}

// get returns the facts of a change, and false when it has none.
func (s *changeSet) get(id string) (Facts, bool) {
	i, ok := s.index[id]
	if !ok {
		return Facts{}, false
	}
	return s.expand(s.facts[i]), true
}

// expand returns c as Facts, sharing its shape's strings and sets: read-only.
func (s *changeSet) expand(c changeFacts) Facts {
	sh := &s.shapes.list[c.shape]
	return Facts{Environment: sh.environment, Production: c.production, Emergency: c.emergency, Decided: c.decided,
		Kinds: c.kinds, Artifacts: sh.artifacts, Targets: sh.targets}
}

// add folds one record of a change into its facts, as Facts.Add does but
// keeping only the names the contracts read, and returns them.
func (s *changeSet) add(id string, st *evidence.Statement, decided bool, prod Environments) Facts {
	i, ok := s.index[id]
	if !ok {
		i = uint32(len(s.facts))
		s.facts = append(s.facts, changeFacts{})
		s.index[s.ids.add(id)] = i
	}
	c := &s.facts[i]
	p := &st.Predicate
	c.kinds = c.kinds.with(p.Kind)
	c.production = c.production || prod.Production(p.Target.Environment)
	c.emergency = c.emergency || p.Emergency || p.Kind == evidence.KindBreakglassOpened
	c.decided = c.decided || decided

	// The shape changes only when the record brings a name the change lacks;
	// the new sets are copies, as the old ones are shared.
	sh, changed := s.shapes.list[c.shape], false
	if sh.environment == "" && p.Target.Environment != "" {
		sh.environment, changed = p.Target.Environment, true
	}
	addName := func(set *[]string, name string) {
		if !contains(*set, name) {
			*set, changed = insert(slices.Clip(*set), name), true
		}
	}
	for _, a := range p.Artifacts {
		if s.artifacts[a.Name] {
			addName(&sh.artifacts, a.Name)
		}
	}
	for _, sub := range st.Subject {
		if s.artifacts[sub.Name] {
			addName(&sh.artifacts, sub.Name)
		}
	}
	for _, t := range []string{p.Target.Stack, p.Target.Application} {
		if t, ok := s.target(t); ok {
			addName(&sh.targets, t)
		}
	}
	if changed {
		c.shape = s.shapes.intern(sh)
	}
	return s.expand(*c)
}

// target returns the target that stands for t: the first seen that matches
// the same globs. It returns false when t matches none.
func (s *changeSet) target(t string) (string, bool) {
	if t == "" {
		return "", false
	}
	var buf [16]byte
	matches, matched := buf[:0], false
	for _, g := range s.globs {
		m := glob(g, t)
		matched = matched || m
		if m {
			matches = append(matches, 1)
		} else {
			matches = append(matches, 0)
		}
	}
	if !matched {
		return "", false
	}
	if first, ok := s.targets[string(matches)]; ok {
		return first, true
	}
	first := strings.Clone(t)
	s.targets[string(matches)] = first
	return first, true
}

// idArena keeps change ids. The tracker never forgets a change, so rather
// than a small allocation per id (one more object for every GC cycle to
// mark) ids are copied end to end into large blocks. A strings.Builder
// never rewrites bytes it has handed out through String, so a slice of
// that string stays valid while the block fills.
type idArena struct{ block strings.Builder }

// idBlock is the size of an arena block; an id longer than a sixteenth of
// it is kept apart, so that little of a block is left unused.
const idBlock = 64 << 10

// add returns a copy of id in the arena.
func (a *idArena) add(id string) string {
	if len(id) > idBlock/16 {
		return strings.Clone(id)
	}
	if a.block.Cap()-a.block.Len() < len(id) {
		a.block = strings.Builder{}
		a.block.Grow(idBlock)
	}
	n := a.block.Len()
	a.block.WriteString(id)
	return a.block.String()[n:]
}
