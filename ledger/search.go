package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Search finds entries having every one of several terms. It walks the
// postings of one driving term in that term's order (log order for untimed
// terms, then time order for timed ones) and keeps those entries that also
// have each Must term, checked by one point read each, and that Accept
// accepts. Work is bounded by Budget postings, so a selective filter over a
// large log answers with fewer results and a position to resume from
// instead of taking unbounded time.
type Search struct {
	Driver Query // Name, Value and optionally From/To of the walked term; Limit is ignored
	Must   []Term
	// Any are alternatives: an entry must have at least one term of each.
	Any [][]Term
	// Scope are untimed terms every entry must have, checked before Visible
	// and, like it, never counted against Budget: the caller's own
	// restriction, which says nothing about entries it may not see.
	Scope []Term
	// After resumes after this position (a Hit.Pos or Result.Resume); nil
	// starts at the beginning (or the end when Reverse).
	After   []byte
	Reverse bool
	Limit   int // most hits; 0 means 100
	Budget  int // most postings walked; 0 means 10,000
	// Visible, if set, is asked first about every posting; postings it
	// rejects are skipped without counting against Budget, so what a
	// restricted caller learns from a page (how far it got) depends only on
	// entries it may see.
	Visible func(index uint64) (bool, error)
	// Accept, if set, is the last check of a candidate; it runs inside the
	// search's read transaction and may read the log.
	Accept func(index uint64) (bool, error)
}

// Hit is one entry found and its position in the driving term's order.
type Hit struct {
	Index uint64
	Pos   []byte
}

// SearchResult lists hits. Resume is where to continue, or nil when the
// driving term has no more postings.
type SearchResult struct {
	Hits   []Hit
	Resume []byte
}

// posLen is the length of a position: the driving key's time and index.
const posLen = 16

// Search runs s in one read transaction.
func (l *Log) Search(ctx context.Context, s Search) (SearchResult, error) {
	var res SearchResult
	if s.Limit <= 0 {
		s.Limit = 100
	}
	if s.Budget <= 0 {
		s.Budget = 10_000
	}
	if !validTerm(Term{Name: s.Driver.Name, Value: s.Driver.Value}) {
		return res, fmt.Errorf("search %q: name or value too long", s.Driver.Name)
	}
	if s.After != nil && len(s.After) != posLen {
		return res, errors.New("search: malformed position")
	}
	prefixes := func(terms []Term) ([][]byte, error) {
		out := make([][]byte, len(terms))
		for i, t := range terms {
			if !validTerm(t) {
				return nil, fmt.Errorf("search term %q: name or value too long", t.Name)
			}
			out[i] = termPrefix(t.Name, t.Value)
		}
		return out, nil
	}
	mustKeys, err := prefixes(s.Must)
	if err != nil {
		return res, err
	}
	scopeKeys, err := prefixes(s.Scope)
	if err != nil {
		return res, err
	}
	anyKeys := make([][][]byte, len(s.Any))
	for i, alts := range s.Any {
		if anyKeys[i], err = prefixes(alts); err != nil {
			return res, err
		}
	}
	hasAll := func(v *view, terms []Term, prefixes [][]byte, index uint64) (bool, error) {
		for i, p := range prefixes {
			ok, err := v.has(p, terms[i].Name, index)
			if err != nil {
				return false, fmt.Errorf("read index: %w", err)
			}
			if !ok {
				return false, nil
			}
		}
		return true, nil
	}
	hasAny := func(v *view, terms []Term, prefixes [][]byte, index uint64) (bool, error) {
		for i, p := range prefixes {
			ok, err := v.has(p, terms[i].Name, index)
			if err != nil {
				return false, fmt.Errorf("read index: %w", err)
			}
			if ok {
				return true, nil
			}
		}
		return false, nil
	}
	prefix := termPrefix(s.Driver.Name, s.Driver.Value)
	var from, to uint64 = 0, math.MaxUint64
	if !s.Driver.From.IsZero() {
		from = uint64(s.Driver.From.UnixNano())
	}
	if !s.Driver.To.IsZero() {
		to = uint64(s.Driver.To.UnixNano()) // exclusive
	}
	var seek [posLen]byte
	switch {
	case s.After != nil && !s.Reverse:
		next := incr(s.After)
		if len(next) != posLen {
			return res, nil // nothing comes after the last possible position
		}
		copy(seek[:], next)
	case s.After != nil:
		if bytes.Equal(s.After, make([]byte, posLen)) {
			return res, nil // nothing comes before the first possible position
		}
		copy(seek[:], decr(s.After))
	case !s.Reverse:
		binary.BigEndian.PutUint64(seek[:], from)
	default:
		at := to
		if at != math.MaxUint64 {
			at-- // To is exclusive
		}
		binary.BigEndian.PutUint64(seek[:], at)
		binary.BigEndian.PutUint64(seek[8:], math.MaxUint64)
	}
	v, err := l.view()
	if err != nil {
		return res, err
	}
	defer v.discard()
	walked := 0
	var last []byte
	err = v.walk(ctx, prefix, s.Driver.Name, seek, s.Reverse, func(pos []byte) (bool, error) {
		at := binary.BigEndian.Uint64(pos)
		if (!s.Reverse && at >= to) || (s.Reverse && at < from) {
			return false, nil
		}
		index := binary.BigEndian.Uint64(pos[8:])
		if ok, err := hasAll(v, s.Scope, scopeKeys, index); err != nil || !ok {
			last = bytes.Clone(pos)
			return err == nil, err
		}
		if s.Visible != nil {
			ok, err := s.Visible(index)
			if err != nil {
				return false, err
			}
			if !ok {
				last = bytes.Clone(pos)
				return true, nil
			}
		}
		if walked == s.Budget {
			res.Resume = last
			return false, nil
		}
		walked++
		last = bytes.Clone(pos)
		ok, err := hasAll(v, s.Must, mustKeys, index)
		if err != nil {
			return false, err
		}
		for i := 0; ok && i < len(s.Any); i++ {
			if ok, err = hasAny(v, s.Any[i], anyKeys[i], index); err != nil {
				return false, err
			}
		}
		if ok && s.Accept != nil {
			if ok, err = s.Accept(index); err != nil {
				return false, err
			}
		}
		if !ok {
			return true, nil
		}
		res.Hits = append(res.Hits, Hit{Index: index, Pos: last})
		if len(res.Hits) == s.Limit {
			res.Resume = last
			return false, nil
		}
		return true, nil
	})
	return res, err
}

// incr returns the smallest key greater than every key with prefix k of the
// same length: k + 1 as a big-endian number, which a forward Seek lands on
// or after.
func incr(k []byte) []byte {
	out := bytes.Clone(k)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out
		}
	}
	return append(out, 0) // all 0xff: past everything of this length
}

// decr returns k - 1 as a big-endian number, which a reverse Seek lands on
// or before.
func decr(k []byte) []byte {
	out := bytes.Clone(k)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]--
		if out[i] != 0xff {
			return out
		}
	}
	return out
}

// PosTime is the time part of a position (zero for untimed terms).
func PosTime(pos []byte) time.Time {
	if len(pos) != posLen || binary.BigEndian.Uint64(pos) == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(pos)))
}
