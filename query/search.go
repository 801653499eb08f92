package query

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
)

// Store is the ledger as the GraphQL side needs it.
type Store interface {
	Log
	Search(ctx context.Context, s ledger.Search) (ledger.SearchResult, error)
	Size() uint64
	Origin() string
}

// record is one entry, parsed, as resolvers use it.
type record struct {
	Index uint64
	Leaf  []byte
	Entry *evidence.Entry
	St    *evidence.Statement
}

func (r *record) P() *evidence.Transition { return &r.St.Predicate }

// load reads entry i through the cache of parsed entries. Records are
// shared between requests and must not be modified.
func (g *GraphQL) load(ctx context.Context, i uint64) (*record, error) {
	if r, ok := g.records.get(i); ok {
		return r, nil
	}
	r, err := loadRecord(ctx, g.store, i)
	if err != nil {
		return nil, err
	}
	g.records.put(i, r)
	return r, nil
}

// loadRecord reads and parses entry i.
func loadRecord(ctx context.Context, s Store, i uint64) (*record, error) {
	leaf, err := s.Leaf(ctx, i)
	if err != nil {
		return nil, err
	}
	e, err := evidence.ParseLeaf(leaf)
	if err != nil {
		return nil, fmt.Errorf("stored entry %d is damaged: %w", i, err)
	}
	st, err := e.Statement()
	if err != nil {
		return nil, fmt.Errorf("stored entry %d: %w", i, err)
	}
	return &record{Index: i, Leaf: leaf, Entry: e, St: st}, nil
}

// Filter is the GraphQL TransitionFilter: every given field must match.
type Filter struct {
	ChangeID, Environment, Account, Region, Stack, Cluster, Namespace, Application, Service, DataClass string
	Kind, Actor, Approver, ApproverGroup, ResourceAddress, RiskClass                                   string
	ResourceTypes, Facts                                                                               []string // one of
	FindingCode, PolicyResult, PolicyRule                                                              string
	Emergency, ArtifactFromProtectedBranch                                                             *bool
	From, To                                                                                           time.Time // occurredAt, [From, To)
}

// terms lists the filter's untimed index terms, most selective first: the
// first one drives the search, the others are point checks.
func (f *Filter) terms() []ledger.Term {
	var out []ledger.Term
	add := func(name, v string) {
		if v != "" {
			out = append(out, ledger.Term{Name: name, Value: v})
		}
	}
	add(ledger.TermChange, f.ChangeID)
	add(ledger.TermResAddress, f.ResourceAddress)
	add(ledger.TermApprover, f.Approver)
	add(ledger.TermFinding, f.FindingCode)
	add(ledger.TermRule, f.PolicyRule)
	add(ledger.TermStack, f.Stack)
	add(ledger.TermApplication, f.Application)
	add(ledger.TermNamespace, f.Namespace)
	add(ledger.TermCluster, f.Cluster)
	add(ledger.TermAccount, f.Account)
	add(ledger.TermService, f.Service)
	if len(f.ResourceTypes) == 1 {
		add(ledger.TermResType, f.ResourceTypes[0])
	}
	if len(f.Facts) == 1 {
		add(ledger.TermFact, f.Facts[0])
	}
	add(ledger.TermGroup, f.ApproverGroup)
	add(ledger.TermActor, f.Actor)
	if f.Emergency != nil && *f.Emergency {
		add(ledger.TermEmergency, "true")
	}
	if f.ArtifactFromProtectedBranch != nil {
		add(ledger.TermArtifactBr, strconv.FormatBool(*f.ArtifactFromProtectedBranch))
	}
	add(ledger.TermPolicy, f.PolicyResult)
	add(ledger.TermKind, f.Kind)
	add(ledger.TermRiskClass, f.RiskClass)
	add(ledger.TermDataClass, f.DataClass)
	add(ledger.TermRegion, f.Region)
	add(ledger.TermEnv, f.Environment)
	return out
}

// alternatives are the filter's fields given several values: an entry
// must have one of each.
func (f *Filter) alternatives() [][]ledger.Term {
	var out [][]ledger.Term
	for _, g := range []struct {
		name   string
		values []string
	}{{ledger.TermResType, f.ResourceTypes}, {ledger.TermFact, f.Facts}} {
		if len(g.values) < 2 {
			continue
		}
		alts := make([]ledger.Term, len(g.values))
		for i, v := range g.values {
			alts[i] = ledger.Term{Name: g.name, Value: v}
		}
		out = append(out, alts)
	}
	return out
}

// weak terms select a large share of a log; with a time range, walking the
// time-ordered postings is cheaper than walking these.
var weak = map[string]bool{
	ledger.TermKind: true, ledger.TermRiskClass: true, ledger.TermDataClass: true, ledger.TermRegion: true,
	ledger.TermEnv: true, ledger.TermPolicy: true, ledger.TermEmergency: true, ledger.TermArtifactBr: true,
	ledger.TermActor: true, ledger.TermGroup: true,
}

// plan turns a filter into a ledger search: which postings to walk, which
// to check, and whether the time range still has to be checked on the entry.
func (f *Filter) plan() (driver ledger.Query, must []ledger.Term, checkTime bool) {
	terms := f.terms()
	timed := !f.From.IsZero() || !f.To.IsZero()
	switch {
	case len(terms) > 0 && (!timed || !weak[terms[0].Name]):
		return ledger.Query{Name: terms[0].Name, Value: terms[0].Value}, terms[1:], timed
	case f.Environment != "":
		// The environment's own postings are time-ordered.
		rest := make([]ledger.Term, 0, len(terms))
		for _, t := range terms {
			if t.Name != ledger.TermEnv {
				rest = append(rest, t)
			}
		}
		return ledger.Query{Name: ledger.TermEnvironment, Value: f.Environment, From: f.From, To: f.To}, rest, false
	default:
		return ledger.Query{Name: ledger.TermTime, Value: "", From: f.From, To: f.To}, terms, false
	}
}

// residual checks what the index cannot: the time range when another term
// drives, emergency: false.
func (f *Filter) residual(p *evidence.Transition, checkTime bool) bool {
	if checkTime {
		if !f.From.IsZero() && p.OccurredAt.Before(f.From) {
			return false
		}
		if !f.To.IsZero() && !p.OccurredAt.Before(f.To) {
			return false
		}
	}
	if f.Emergency != nil && !*f.Emergency && (p.Emergency || p.Kind == evidence.KindBreakglassOpened || p.Kind == evidence.KindBreakglassClosed) {
		return false
	}
	return true
}

// cursorKeeper seals cursors with AES-GCM, bound to the caller: a cursor is
// opaque, cannot be forged or altered, and is useless to anyone else. It
// carries the position in the driving postings and the log size the first
// page saw, so that later pages show the same snapshot however many entries
// are appended meanwhile. Servers given the same cursor key (the writer and
// its read replicas behind one load balancer) accept each other's cursors;
// without one, each server makes its own at start.
type cursorKeeper struct{ aead cipher.AEAD }

func newCursorKeeper(secret []byte) (*cursorKeeper, error) {
	key := make([]byte, 32)
	if secret == nil {
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
	} else {
		sum := sha256.Sum256(append([]byte("evident graphql cursor key\x00"), secret...))
		key = sum[:]
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &cursorKeeper{aead: aead}, nil
}

// cursor is a position in a search plus the size of the log it reads.
type cursor struct {
	Pos  []byte // 16 bytes
	AsOf uint64
}

var errBadCursor = errors.New("invalid cursor: cursors come from pageInfo, for the same caller and query, of this server or of one sharing its cursor key (without one, they expire when the server restarts)")

func (k *cursorKeeper) seal(c cursor, caller, query string) string {
	plain := binary.BigEndian.AppendUint64(append([]byte(nil), c.Pos...), c.AsOf)
	nonce := make([]byte, k.aead.NonceSize())
	_, _ = rand.Read(nonce) // crypto/rand never fails on Linux
	out := k.aead.Seal(nonce, nonce, plain, []byte(caller+"\x00"+query))
	return base64.RawURLEncoding.EncodeToString(out)
}

func (k *cursorKeeper) open(s, caller, query string) (cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < k.aead.NonceSize() {
		return cursor{}, errBadCursor
	}
	plain, err := k.aead.Open(nil, b[:k.aead.NonceSize()], b[k.aead.NonceSize():], []byte(caller+"\x00"+query))
	if err != nil || len(plain) != 24 {
		return cursor{}, errBadCursor
	}
	return cursor{Pos: plain[:16], AsOf: binary.BigEndian.Uint64(plain[16:])}, nil
}

// openCursor opens a cursor of this caller and query. A cursor from a
// server further along the log (the writer, read on a replica that lags it
// by a sync) reads a snapshot this server does not hold yet: it waits a
// moment for it, then says so rather than answer a page with entries
// missing.
func (g *GraphQL) openCursor(ctx context.Context, s, caller, query string) (cursor, error) {
	c, err := g.cursors.open(s, caller, query)
	if err != nil {
		return c, err
	}
	deadline := time.Now().Add(2 * time.Second)
	for size := g.store.Size(); size < c.AsOf; size = g.store.Size() {
		if time.Now().After(deadline) {
			return c, fmt.Errorf("%w: the cursor reads the log at %d entries, this server holds %d; retry in a moment", errCursorAhead, c.AsOf, size)
		}
		select {
		case <-ctx.Done():
			return c, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return c, nil
}

// errCursorAhead: a cursor from a server that holds more of the log.
var errCursorAhead = errors.New("this server has not caught up with the cursor's snapshot")

// page is one page of a search as the connection resolvers return it.
type page struct {
	Records []*record
	Cursors []string
	HasNext bool
	End     string
}

// searchOpts is one connection request.
type searchOpts struct {
	Filter  Filter
	First   int
	After   string
	Reverse bool
	// Budget bounds the postings one page walks.
	Budget int
	// Keep, if set, is a further check on a visible, matching record.
	Keep func(*record) (bool, error)
	// QueryKey binds cursors to the connection (field and arguments).
	QueryKey string
}

// scopeTerms are the index terms a tenant's scope implies: one for each
// dimension limited to a single value. Entries without them are not the
// tenant's, so the search skips them before anything else.
func (id *Identity) scopeTerms() []ledger.Term {
	if id.Role == RoleAuditor {
		return nil
	}
	var out []ledger.Term
	for _, d := range []struct {
		name   string
		values []string
	}{{ledger.TermEnv, id.Scope.Environments}, {ledger.TermAccount, id.Scope.Accounts}, {ledger.TermStack, id.Scope.Stacks}, {ledger.TermNamespace, id.Scope.Namespaces}} {
		if len(d.values) == 1 {
			out = append(out, ledger.Term{Name: d.name, Value: d.values[0]})
		}
	}
	return out
}

// search runs one page of a filtered, tenant-scoped search.
func (g *GraphQL) search(ctx context.Context, id *Identity, o searchOpts) (*page, error) {
	driver, must, checkTime := o.Filter.plan()
	scope := id.scopeTerms()
	if len(scope) > 0 && driver.Name == ledger.TermTime {
		// Nothing in the filter narrows the walk: walk the tenant's own
		// postings instead of the whole log's.
		if scope[0].Name == ledger.TermEnv {
			driver = ledger.Query{Name: ledger.TermEnvironment, Value: scope[0].Value, From: driver.From, To: driver.To}
		} else {
			driver = ledger.Query{Name: scope[0].Name, Value: scope[0].Value}
			checkTime = !o.Filter.From.IsZero() || !o.Filter.To.IsZero()
		}
		scope = scope[1:]
	}
	asOf := g.store.Size()
	var after []byte
	if o.After != "" {
		c, err := g.openCursor(ctx, o.After, id.Subject, o.QueryKey)
		if err != nil {
			return nil, err
		}
		after, asOf = c.Pos, c.AsOf
	}
	loaded := map[uint64]*record{}
	load := func(i uint64) (*record, error) {
		if r := loaded[i]; r != nil {
			return r, nil
		}
		r, err := g.load(ctx, i)
		if err == nil {
			loaded[i] = r
		}
		return r, err
	}
	var visible func(uint64) (bool, error)
	if id.Role != RoleAuditor {
		// Check the scope before anything else, so that nothing about a
		// page (how far its bounded walk got) depends on others' entries.
		visible = func(i uint64) (bool, error) {
			if i >= asOf {
				return false, nil
			}
			r, err := load(i)
			if err != nil {
				return false, err
			}
			if !id.sees(r.P()) {
				delete(loaded, i)
				return false, nil
			}
			return true, nil
		}
	}
	accept := func(i uint64) (bool, error) {
		if i >= asOf {
			return false, nil
		}
		r, err := load(i)
		if err != nil {
			return false, err
		}
		if !id.sees(r.P()) || !o.Filter.residual(r.P(), checkTime) {
			delete(loaded, i)
			return false, nil
		}
		if o.Keep != nil {
			if ok, err := o.Keep(r); err != nil || !ok {
				delete(loaded, i)
				return false, err
			}
		}
		return true, nil
	}
	res, err := g.store.Search(ctx, ledger.Search{
		Driver: driver, Must: must, Any: o.Filter.alternatives(), Scope: scope, After: after, Reverse: o.Reverse,
		Limit: o.First, Budget: o.Budget, Visible: visible, Accept: accept,
	})
	if err != nil {
		return nil, err
	}
	p := &page{HasNext: res.Resume != nil}
	for _, h := range res.Hits {
		p.Records = append(p.Records, loaded[h.Index])
		p.Cursors = append(p.Cursors, g.cursors.seal(cursor{Pos: h.Pos, AsOf: asOf}, id.Subject, o.QueryKey))
	}
	if res.Resume != nil {
		p.End = g.cursors.seal(cursor{Pos: res.Resume, AsOf: asOf}, id.Subject, o.QueryKey)
	} else if n := len(p.Cursors); n > 0 {
		p.End = p.Cursors[n-1]
	}
	return p, nil
}

// timeline returns the caller-visible entries of one change in log order.
func (g *GraphQL) timeline(ctx context.Context, id *Identity, change string) ([]*record, error) {
	var out []*record
	var after []byte
	for {
		res, err := g.store.Search(ctx, ledger.Search{
			Driver: ledger.Query{Name: ledger.TermChange, Value: change},
			After:  after, Limit: 1000, Budget: 1000,
		})
		if err != nil {
			return nil, err
		}
		for _, h := range res.Hits {
			r, err := g.load(ctx, h.Index)
			if err != nil {
				return nil, err
			}
			if id.sees(r.P()) {
				out = append(out, r)
			}
		}
		if res.Resume == nil || len(out) >= g.cfg.MaxTimeline {
			return out, nil
		}
		after = res.Resume
	}
}

// proof is an inclusion proof of one record against a tree size.
type proof struct {
	Index, TreeSize uint64
	LeafHash        [32]byte
	Hashes          [][32]byte
	Checkpoint      *checkpointView // the signed checkpoint when TreeSize is the latest
}

func (g *GraphQL) inclusion(ctx context.Context, r *record, size uint64) (*proof, error) {
	latest := g.store.CheckpointSize()
	if size == 0 {
		size = latest
	}
	if r.Index >= size {
		return nil, fmt.Errorf("entry is not yet covered by a signed checkpoint (tree size %d); ask again in a moment", size)
	}
	if size > latest {
		return nil, fmt.Errorf("treeSize %d is beyond the latest signed checkpoint", size)
	}
	hashes, err := g.store.InclusionProof(ctx, r.Index, size)
	if err != nil {
		return nil, err
	}
	p := &proof{Index: r.Index, TreeSize: size, LeafHash: tlog.RecordHash(r.Leaf), Hashes: hashes}
	if size == latest {
		if p.Checkpoint, err = g.checkpoint(); err != nil {
			return nil, err
		}
		if p.Checkpoint.Size != size { // a newer checkpoint was signed meanwhile
			p.Checkpoint = nil
		}
	}
	return p, nil
}
