package ledger

import (
	"encoding/binary"
	"time"

	"evident.dev/evident/evidence"
)

// Badger key space. One byte of prefix per kind of key; integers big-endian so
// keys sort in log order.
const (
	prefixEntry      = 'e' // e | index u64            -> leaf
	prefixHash       = 'h' // h | stored hash index u64 -> 32-byte tree hash
	prefixDigest     = 'd' // d | record digest [32]    -> index u64
	prefixCheckpoint = 'c' // c | tree size u64         -> signed checkpoint note
	prefixTerm       = 'x' // x | term                  -> (empty): secondary index
	keyHead          = "s" // head: size u64 | last entry hash [32] | checkpoint size u64
)

func u64Key(prefix byte, n uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:], n)
	return k
}

// Term is one secondary-index posting: the entry at Index has Name = Value,
// at time At (zero for terms that are not time-ordered).
type Term struct {
	Name  string
	Value string
	At    time.Time
}

// The secondary indexes every entry gets (issue: by change id,
// environment+time, kind, actor, stack).
const (
	TermChange      = "change"
	TermEnvironment = "env" // ordered by occurredAt
	TermKind        = "kind"
	TermActor       = "actor"
	TermStack       = "stack"
)

// TermsFor derives the index terms of a record. It is the one definition used
// both when appending and when `evident verify` rebuilds the indexes.
func TermsFor(st *evidence.Statement) []Term {
	p := st.Predicate
	terms := make([]Term, 0, 5)
	add := func(name, value string, at time.Time) {
		if value != "" {
			terms = append(terms, Term{Name: name, Value: value, At: at})
		}
	}
	add(TermChange, p.ChangeID, time.Time{})
	add(TermEnvironment, p.Target.Environment, p.OccurredAt)
	add(TermKind, string(p.Kind), time.Time{})
	add(TermActor, p.Actor, time.Time{})
	add(TermStack, p.Target.Stack, time.Time{})
	return terms
}

// termPrefix is x | len(name) u8 | name | len(value) u16 | value.
func termPrefix(name, value string) []byte {
	k := make([]byte, 0, 4+len(name)+len(value)+16)
	k = append(k, prefixTerm, byte(len(name)))
	k = append(k, name...)
	k = binary.BigEndian.AppendUint16(k, uint16(len(value)))
	return append(k, value...)
}

// termKey is termPrefix | at (unix ns, u64, 0 if none) | index u64.
func termKey(t Term, index uint64) []byte {
	k := termPrefix(t.Name, t.Value)
	var at uint64
	if !t.At.IsZero() {
		at = uint64(t.At.UnixNano())
	}
	k = binary.BigEndian.AppendUint64(k, at)
	return binary.BigEndian.AppendUint64(k, index)
}

// validTerm reports whether a term fits the key encoding.
func validTerm(t Term) bool {
	return len(t.Name) > 0 && len(t.Name) < 256 && len(t.Value) < 1<<16
}
