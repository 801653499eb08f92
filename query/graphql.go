package query

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/gqlerrors"
	"github.com/graphql-go/graphql/language/ast"

	"evident.dev/evident/approvals"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

// GraphQLConfig configures POST /graphql.
type GraphQLConfig struct {
	Store  Store
	Auth   *Authenticator
	Access *AccessLog // every query with its caller; nil: not recorded (tests only)
	Logger *slog.Logger
	// Completeness is the policies projection; nil: completeness is null.
	Completeness CompletenessSource
	// Exceptions lists the exceptions in force (PolicyCompleteness); nil:
	// expiringExceptions reads the log's expiry index, which also lists
	// exceptions an exception.expired record has ended.
	Exceptions    ExceptionSource
	MaxPage       int           // largest `first`; default 100
	PageBudget    int           // index postings one page may walk; default 10,000
	MaxDepth      int           // deepest selection; default 12
	MaxCost       int           // estimated resolver calls; default 50,000
	MaxSelections int           // field selections in one query, fragments expanded; default 500
	MaxAliases    int           // aliased fields in one query, fragments expanded; default 30
	Timeout       time.Duration // per query; default 10s
	MaxBody       int64         // request bytes; default 64 KiB
	MaxTimeline   int           // entries of one change; default 10,000
	CacheEntries  int           // parsed entries kept in memory (about 5 KB each); default 4096
	// MaxConcurrent bounds the queries running at once; the others wait
	// their turn (within Timeout). Go cannot prioritise goroutines, so this
	// is what keeps a crowd of auditors from starving ingest of CPU.
	// Default half the CPUs, at least one: the rest stay with ingest.
	MaxConcurrent int
	Clock         func() time.Time
	// Witnessed, when the log has witnesses, gives the latest checkpoint
	// they cosigned (witness.Collector.Witnessed): packs prove against it.
	Witnessed func() []byte
	// Approvals is the approval judge, which says of each approval whether
	// it counts and why not; nil: those fields are null.
	Approvals ApprovalJudge
	// MaxBackfill is ingest's: the judged time of an apply is
	// verifier.JudgedAt of its occurredAt and receipt. Default
	// verifier.MaxBackfill.
	MaxBackfill time.Duration
	// CursorKey, when set, is the secret cursors are sealed under, shared
	// by every server of one log so that a page's cursor works on any of
	// them. Nil: a random key per process.
	CursorKey []byte
}

// ApprovalJudge judges the approvals of a subject (*approvals.Approvals):
// the one judgement the policies, the gate and these answers share.
type ApprovalJudge interface {
	Assess(ctx context.Context, s approvals.Subject) (approvals.Assessment, error)
}

// GraphQL serves audit queries.
type GraphQL struct {
	cfg     GraphQLConfig
	store   Store
	schema  graphql.Schema
	cursors *cursorKeeper
	logger  *slog.Logger
	records *lru[uint64, *record]
	docs    *lru[string, prepared]
	running chan struct{} // a token per query running (MaxConcurrent)

	limits        documentLimits
	introspection map[string]int // list lengths of the introspection types
}

// prepared is a parsed, validated query document, or why it is refused.
type prepared struct {
	doc     *ast.Document
	refusal *refusal // a limit or fragment rule broken before validation
	errs    []gqlerrors.FormattedError
}

// NewGraphQL builds the schema.
func NewGraphQL(cfg GraphQLConfig) (*GraphQL, error) {
	if cfg.Store == nil || cfg.Auth == nil {
		return nil, errors.New("query: Store and Auth are required")
	}
	setDefault(&cfg.MaxPage, 100)
	setDefault(&cfg.PageBudget, 10_000)
	setDefault(&cfg.MaxDepth, 12)
	setDefault(&cfg.MaxCost, 50_000)
	setDefault(&cfg.MaxSelections, 500)
	setDefault(&cfg.MaxAliases, 30)
	setDefault(&cfg.MaxTimeline, 10_000)
	setDefault(&cfg.CacheEntries, 4096)
	setDefault(&cfg.MaxConcurrent, max(1, runtime.GOMAXPROCS(0)/2))
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxBackfill <= 0 {
		cfg.MaxBackfill = verifier.MaxBackfill
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ck, err := newCursorKeeper(cfg.CursorKey)
	if err != nil {
		return nil, err
	}
	g := &GraphQL{cfg: cfg, store: cfg.Store, cursors: ck, logger: cfg.Logger,
		records: newLRU[uint64, *record](cfg.CacheEntries), docs: newLRU[string, prepared](1024),
		running: make(chan struct{}, cfg.MaxConcurrent)}
	if g.schema, err = g.buildSchema(); err != nil {
		return nil, fmt.Errorf("query: schema: %w", err)
	}
	g.introspection = introspectionFanout(&g.schema)
	g.limits = documentLimits{
		bytes: 32 << 10, tokens: 4000, nesting: cfg.MaxDepth + 24, depth: cfg.MaxDepth,
		selections: cfg.MaxSelections, aliases: cfg.MaxAliases, fragments: 100, cost: cfg.MaxCost, page: cfg.MaxPage,
		introspectionCost: 200_000,
	}
	return g, nil
}

// Auth is the authenticator the handler uses.
func (g *GraphQL) Auth() *Authenticator { return g.cfg.Auth }

func setDefault(v *int, d int) {
	if *v <= 0 {
		*v = d
	}
}

type ctxKey struct{}

func identity(ctx context.Context) *Identity {
	if id, ok := ctx.Value(ctxKey{}).(*Identity); ok {
		return id
	}
	return &Identity{Subject: "nobody", Role: RoleRunner} // sees nothing
}

// Register adds POST /graphql, GET /graphql (GraphiQL) and the evidence pack
// download to mux.
func (g *GraphQL) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /graphql", g.serveQuery)
	mux.HandleFunc("GET /graphql", serveGraphiQL)
	mux.HandleFunc("GET /graphql/assets/{name}", serveAsset)
	mux.HandleFunc("GET /v1/packs/{change...}", g.servePack) // change ids may hold '/'

}

// Request is a GraphQL request body.
type Request struct {
	Query         string         `json:"query"`
	OperationName string         `json:"operationName,omitempty"`
	Variables     map[string]any `json:"variables,omitempty"`
}

// Result is the response body.
type Result struct {
	Data   any              `json:"data,omitempty"`
	Errors []map[string]any `json:"errors,omitempty"`
	// Extensions say what an answer may leave out: entries the log found
	// damaged.
	Extensions map[string]any `json:"extensions,omitempty"`
}

func (g *GraphQL) serveQuery(w http.ResponseWriter, r *http.Request) {
	start := g.cfg.Clock()
	id, err := g.cfg.Auth.Authenticate(r)
	if err == nil && id.Role == RoleRunner {
		err = ErrForbidden
	}
	if err != nil {
		// Refused attempts are evidence too; their text is not read.
		subject := "unauthenticated"
		if id != nil {
			subject = id.Subject
		}
		if g.cfg.Access != nil {
			if lerr := g.cfg.Access.Record(AccessRecord{Time: start, Subject: subject, Role: roleOf(id), Status: "refused: " + err.Error()}); lerr != nil {
				g.logger.Error("access log", "err", lerr)
			}
		}
		status, code := http.StatusUnauthorized, "UNAUTHENTICATED"
		if errors.Is(err, ErrForbidden) {
			status, code = http.StatusForbidden, "FORBIDDEN"
		}
		writeJSON(w, status, Result{Errors: []map[string]any{{"message": err.Error(), "extensions": map[string]string{"code": code}}}})
		return
	}
	var req Request
	body, err := io.ReadAll(io.LimitReader(r.Body, g.cfg.MaxBody+1))
	switch {
	case err != nil:
		badQuery(w, "could not read the request body")
		return
	case int64(len(body)) > g.cfg.MaxBody:
		badQuery(w, fmt.Sprintf("request body is larger than %d bytes", g.cfg.MaxBody))
		return
	case json.Unmarshal(body, &req) != nil || strings.TrimSpace(req.Query) == "":
		badQuery(w, `the body must be JSON {"query": "...", "variables": {...}}`)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), ctxKey{}, id), g.cfg.Timeout)
	defer cancel()
	var res Result
	status := "ok"
	select {
	case g.running <- struct{}{}:
		res = g.Execute(ctx, id, req)
		<-g.running
		if len(res.Errors) > 0 {
			status = "errors"
		}
	case <-ctx.Done():
		status = "busy"
	}
	if g.cfg.Access != nil {
		if err := g.cfg.Access.Record(AccessRecord{
			Time: start, Subject: id.Subject, Role: id.Role, Operation: req.OperationName,
			Query: req.Query, Variables: req.Variables, Status: status, Duration: g.cfg.Clock().Sub(start),
		}); err != nil {
			// Access to evidence is evidence: an unrecorded query is not answered.
			g.logger.Error("access log", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, Result{Errors: []map[string]any{{"message": "the access log cannot be written; queries are refused until it can"}}})
			return
		}
	}
	if status == "busy" {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, Result{Errors: []map[string]any{{
			"message":    fmt.Sprintf("the server ran %d queries at once for longer than %s; retry", g.cfg.MaxConcurrent, g.cfg.Timeout),
			"extensions": map[string]string{"code": "BUSY"}}}})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func roleOf(id *Identity) Role {
	if id == nil {
		return ""
	}
	return id.Role
}

func badQuery(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, Result{Errors: []map[string]any{{"message": msg, "extensions": map[string]string{"code": "BAD_REQUEST"}}}})
}

// Execute checks the query document's size, shape and cost, then validates
// and runs it as id.
func (g *GraphQL) Execute(ctx context.Context, id *Identity, req Request) Result {
	ctx = context.WithValue(ctx, ctxKey{}, id)
	pr := g.prepare(req.Query)
	if pr.refusal != nil {
		return Result{Errors: []map[string]any{{"message": pr.refusal.msg, "extensions": map[string]string{"code": pr.refusal.code}}}}
	}
	if pr.errs != nil {
		out := Result{}
		for _, e := range pr.errs {
			out.Errors = append(out.Errors, g.publicError(ctx, e))
		}
		return out
	}
	res := graphql.Execute(graphql.ExecuteParams{
		Schema: g.schema, AST: pr.doc, Args: req.Variables, OperationName: req.OperationName, Context: ctx,
	})
	out := Result{Data: res.Data}
	if d := damagedEntries(g.store); len(d) > 0 {
		out.Extensions = map[string]any{"damagedEntries": d, "warning": damageWarning(d)}
	}
	for _, e := range res.Errors {
		out.Errors = append(out.Errors, g.publicError(ctx, e))
	}
	return out
}

// prepare checks, parses and validates a query once; the same text
// (GraphiQL's saved queries, dashboards) is answered from the cache.
func (g *GraphQL) prepare(q string) prepared {
	if p, ok := g.docs.get(q); ok {
		return p
	}
	var p prepared
	doc, err := g.parseDocument(q)
	var r *refusal
	if errors.As(err, &r) {
		p.refusal = r
	} else if err != nil {
		p.errs = gqlerrors.FormatErrors(err)
	} else if v := graphql.ValidateDocument(&g.schema, doc, nil); !v.IsValid {
		p.errs = v.Errors
	} else {
		p.doc = doc
	}
	if len(q) <= 8<<10 { // saved and generated queries; large one-offs would crowd the cache
		g.docs.put(q, p)
	}
	return p
}

// publicError keeps messages written for callers and replaces internal ones
// (storage, damaged entries) with a generic text, logged in full here.
func (g *GraphQL) publicError(ctx context.Context, e gqlerrors.FormattedError) map[string]any {
	m := map[string]any{"message": e.Message}
	if len(e.Locations) > 0 {
		m["locations"] = e.Locations
	}
	if len(e.Path) > 0 {
		m["path"] = e.Path
	}
	var internal *internalError
	if errors.As(e.OriginalError(), &internal) {
		g.logger.Error("graphql resolver", "err", internal.err, "path", e.Path)
		m["message"] = "internal error reading the log"
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		m["message"] = fmt.Sprintf("query timed out after %s; narrow the filter or ask for fewer fields", g.cfg.Timeout)
	}
	return m
}

// internalError marks an error whose text is not for callers.
type internalError struct{ err error }

func (e *internalError) Error() string { return "internal error reading the log" }
func (e *internalError) Unwrap() error { return e.err }

func internal(err error) error {
	if err == nil || errors.Is(err, errBadCursor) || errors.Is(err, errCursorAhead) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	return &internalError{err}
}

func (g *GraphQL) first(p graphql.ResolveParams) (int, error) {
	n, ok := p.Args["first"].(int)
	if !ok {
		return 20, nil
	}
	if n < 1 || n > g.cfg.MaxPage {
		return 0, fmt.Errorf("first must be between 1 and %d", g.cfg.MaxPage)
	}
	return n, nil
}

// queryKey names a connection and its arguments, for binding cursors.
func queryKey(p graphql.ResolveParams) string {
	args := map[string]any{}
	for k, v := range p.Args {
		if k != "after" && k != "first" {
			args[k] = v
		}
	}
	b, _ := json.Marshal(args) // maps of JSON values always encode
	return p.Info.FieldName + string(b)
}

func parseFilter(v any) (Filter, error) {
	var f Filter
	m, _ := v.(map[string]any)
	s := func(k string) string { x, _ := m[k].(string); return x }
	f.ChangeID, f.Environment, f.Account, f.Region = s("changeId"), s("environment"), s("account"), s("region")
	f.Stack, f.Cluster, f.Namespace, f.Application = s("stack"), s("cluster"), s("namespace"), s("application")
	f.Service, f.DataClass, f.Kind, f.Actor = s("service"), s("dataClass"), s("kind"), s("actor")
	f.Approver, f.ApproverGroup, f.ResourceAddress = s("approver"), s("approverGroup"), s("resourceAddress")
	list := func(k string) ([]string, error) {
		var out []string
		switch v := m[k].(type) {
		case nil:
		case string:
			out = []string{v}
		case []any:
			for _, x := range v {
				if x, ok := x.(string); ok && x != "" && !slices.Contains(out, x) {
					out = append(out, x)
				}
			}
		}
		if len(out) > 20 {
			return nil, fmt.Errorf("filter.%s lists %d values; at most 20", k, len(out))
		}
		return out, nil
	}
	var err error
	if f.ResourceTypes, err = list("resourceType"); err != nil {
		return f, err
	}
	if f.Facts, err = list("fact"); err != nil {
		return f, err
	}
	for _, x := range f.Facts {
		if x != evidence.FactPublicExposure && x != evidence.FactIngress && x != evidence.FactDatabase {
			return f, fmt.Errorf("filter.fact %q is not a fact: %s, %s or %s", x, evidence.FactPublicExposure, evidence.FactIngress, evidence.FactDatabase)
		}
	}
	f.RiskClass, f.FindingCode, f.PolicyResult, f.PolicyRule = s("riskClass"), s("findingCode"), s("policyResult"), s("policyRule")
	if b, ok := m["emergency"].(bool); ok {
		f.Emergency = &b
	}
	if b, ok := m["artifactFromProtectedBranch"].(bool); ok {
		f.ArtifactFromProtectedBranch = &b
	}
	if t, ok := m["from"].(time.Time); ok {
		f.From = t
	}
	if t, ok := m["to"].(time.Time); ok {
		f.To = t
	}
	if _, ok := m["from"]; ok && f.From.IsZero() {
		return f, errors.New("filter.from must be an RFC 3339 time")
	}
	if _, ok := m["to"]; ok && f.To.IsZero() {
		return f, errors.New("filter.to must be an RFC 3339 time")
	}
	if f.Kind != "" {
		if _, ok := evidence.Kind(f.Kind).Block(); !ok {
			return f, fmt.Errorf("filter.kind %q is not a kind (see docs/kinds.md)", f.Kind)
		}
	}
	return f, nil
}

func (g *GraphQL) resolveTransitions(p graphql.ResolveParams) (any, error) {
	first, err := g.first(p)
	if err != nil {
		return nil, err
	}
	f, err := parseFilter(p.Args["filter"])
	if err != nil {
		return nil, err
	}
	after, _ := p.Args["after"].(string)
	reverse := p.Args["order"] == orderNewestFirst
	pg, err := g.search(p.Context, identity(p.Context), searchOpts{
		Filter: f, First: first, After: after, Reverse: reverse, Budget: g.cfg.PageBudget, QueryKey: queryKey(p),
	})
	if err != nil {
		return nil, internal(err)
	}
	c := &connection{HasNext: pg.HasNext, End: pg.End, Edges: []edge{}}
	for i, r := range pg.Records {
		c.Edges = append(c.Edges, edge{Node: r, Cursor: pg.Cursors[i]})
	}
	return c, nil
}

// matches reports whether a record satisfies the whole filter, by the same
// term definition the index uses.
func matches(f *Filter, r *record) bool {
	have := map[[2]string]bool{}
	for _, t := range ledger.TermsFor(r.St, r.Entry.Meta) {
		have[[2]string{t.Name, t.Value}] = true
	}
	for _, t := range f.terms() {
		if !have[[2]string{t.Name, t.Value}] {
			return false
		}
	}
	for _, alts := range f.alternatives() {
		if !slices.ContainsFunc(alts, func(t ledger.Term) bool { return have[[2]string{t.Name, t.Value}] }) {
			return false
		}
	}
	return f.residual(r.P(), true)
}

func (g *GraphQL) resolveChanges(p graphql.ResolveParams) (any, error) {
	first, err := g.first(p)
	if err != nil {
		return nil, err
	}
	f, err := parseFilter(p.Args["filter"])
	if err != nil {
		return nil, err
	}
	after, _ := p.Args["after"].(string)
	reverse := p.Args["order"] == orderNewestFirst
	unapproved, wantUnapproved := p.Args["appliedWithoutFreshApproval"].(bool)
	self, wantSelf := p.Args["selfApproved"].(bool)
	id := identity(p.Context)
	views := map[uint64]*changeView{}
	keep := func(r *record) (bool, error) {
		if r.P().ChangeID == "" {
			return false, nil
		}
		tl, err := g.timeline(p.Context, id, r.P().ChangeID)
		if err != nil {
			return false, err
		}
		// A change is listed once, at its first matching entry in log order.
		for _, e := range tl {
			if e.Index >= r.Index {
				break
			}
			if matches(&f, e) {
				return false, nil
			}
		}
		c := &changeView{ID: r.P().ChangeID, Timeline: tl}
		if wantUnapproved && (len(c.unapprovedApplies()) > 0) != unapproved {
			return false, nil
		}
		if wantSelf && (len(c.selfApprovals()) > 0) != self {
			return false, nil
		}
		views[r.Index] = c
		return true, nil
	}
	pg, err := g.search(p.Context, id, searchOpts{
		Filter: f, First: first, After: after, Reverse: reverse, Budget: g.cfg.PageBudget, Keep: keep, QueryKey: queryKey(p),
	})
	if err != nil {
		return nil, internal(err)
	}
	c := &connection{HasNext: pg.HasNext, End: pg.End, Edges: []edge{}}
	for i, r := range pg.Records {
		c.Edges = append(c.Edges, edge{Node: views[r.Index], Cursor: pg.Cursors[i]})
	}
	return c, nil
}

func (g *GraphQL) change(ctx context.Context, id *Identity, changeID string) (any, error) {
	tl, err := g.timeline(ctx, id, changeID)
	if err != nil {
		return nil, internal(err)
	}
	if len(tl) == 0 {
		return nil, nil // unknown and invisible look the same
	}
	return &changeView{ID: changeID, Timeline: tl}, nil
}

func (g *GraphQL) transition(ctx context.Context, id *Identity, index int) (any, error) {
	if index < 0 || uint64(index) >= g.store.Size() {
		return nil, nil
	}
	r, err := g.load(ctx, uint64(index))
	if err != nil {
		return nil, internal(err)
	}
	if !id.sees(r.P()) {
		return nil, nil // the same answer as for an index that does not exist
	}
	return r, nil
}

func (g *GraphQL) resolveExpiring(p graphql.ResolveParams) (any, error) {
	first, err := g.first(p)
	if err != nil {
		return nil, err
	}
	days := p.Args["withinDays"].(int)
	if days < 0 || days > 3660 {
		return nil, errors.New("withinDays must be between 0 and 3660")
	}
	now := g.cfg.Clock()
	id := identity(p.Context)
	after, _ := p.Args["after"].(string)
	asOf := g.store.Size()
	var pos []byte
	if after != "" {
		c, err := g.openCursor(p.Context, after, id.Subject, queryKey(p))
		if err != nil {
			return nil, err
		}
		pos, asOf = c.Pos, c.AsOf
	}
	if g.cfg.Exceptions != nil {
		return g.inForce(p, id, now, time.Duration(days)*24*time.Hour, first, pos, asOf)
	}
	loaded := map[uint64]*record{}
	res, err := g.store.Search(p.Context, ledger.Search{
		Driver: ledger.Query{Name: ledger.TermExceptionExpiry, From: now, To: now.Add(time.Duration(days) * 24 * time.Hour)},
		After:  pos, Limit: first, Budget: g.cfg.PageBudget,
		// Visible, not Accept: others' exceptions do not count against the budget.
		Visible: func(i uint64) (bool, error) {
			if i >= asOf {
				return false, nil
			}
			r, err := g.load(p.Context, i)
			if err != nil || !id.sees(r.P()) {
				return false, err
			}
			loaded[i] = r
			return true, nil
		},
	})
	if err != nil {
		return nil, internal(err)
	}
	c := &connection{Edges: []edge{}, HasNext: res.Resume != nil}
	for _, h := range res.Hits {
		cur := g.cursors.seal(cursor{Pos: h.Pos, AsOf: asOf}, id.Subject, queryKey(p))
		c.Edges = append(c.Edges, edge{Node: exceptionOf(loaded[h.Index]), Cursor: cur})
		c.End = cur
	}
	if res.Resume != nil {
		c.End = g.cursors.seal(cursor{Pos: res.Resume, AsOf: asOf}, id.Subject, queryKey(p))
	}
	return c, nil
}

func (g *GraphQL) checkpoint() (*checkpointView, error) {
	note, err := g.store.Checkpoint()
	if err != nil {
		return nil, err
	}
	// The note is the log's own; its text is parsed, not verified, here.
	cp, err := checkpoint.Parse(note, g.store.Origin())
	if err != nil {
		return nil, internal(fmt.Errorf("stored checkpoint: %w", err))
	}
	return &checkpointView{Origin: cp.Origin, Note: string(note), Size: cp.Size, Root: cp.Root}, nil
}

func (g *GraphQL) completeness(ctx context.Context, env string) (any, error) {
	if g.cfg.Completeness == nil || env == "" {
		return nil, nil
	}
	c, err := g.cfg.Completeness.Environment(ctx, env)
	if err != nil {
		return nil, internal(err)
	}
	return nilIfNil(c), nil
}

func (g *GraphQL) changeCompleteness(ctx context.Context, id *Identity, c *changeView) (any, error) {
	if g.cfg.Completeness == nil {
		return nil, nil
	}
	if id.Role != RoleAuditor {
		all, err := g.timeline(ctx, &Identity{Subject: "completeness", Role: RoleAuditor}, c.ID)
		if err != nil {
			return nil, internal(err)
		}
		if len(all) != len(c.Timeline) {
			return nil, nil // the change reaches beyond the tenant's scope
		}
	}
	cc, err := g.cfg.Completeness.Change(ctx, c.ID)
	if err != nil {
		return nil, internal(err)
	}
	return nilIfNil(cc), nil
}

// inForce pages through the exceptions source's list of exceptions in
// force, ordered by (expiry, grant entry), which is also the cursor's
// position; the caller's scope filters before counting.
func (g *GraphQL) inForce(p graphql.ResolveParams, id *Identity, now time.Time, within time.Duration, first int, pos []byte, asOf uint64) (any, error) {
	list, err := g.cfg.Exceptions.Expiring(p.Context, now, within)
	if err != nil {
		return nil, internal(err)
	}
	c := &connection{Edges: []edge{}}
	for _, e := range list {
		key := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(e.ExpiresAt.UnixNano())), e.Index)
		if e.Index >= asOf || (pos != nil && bytes.Compare(key, pos) <= 0) {
			continue
		}
		r, err := g.load(p.Context, e.Index)
		if err != nil {
			return nil, internal(err)
		}
		if !id.sees(r.P()) || r.P().Exception == nil {
			continue
		}
		if len(c.Edges) == first {
			c.HasNext = true
			break
		}
		cur := g.cursors.seal(cursor{Pos: key, AsOf: asOf}, id.Subject, queryKey(p))
		c.Edges = append(c.Edges, edge{Node: exceptionOf(r), Cursor: cur})
		c.End = cur
	}
	return c, nil
}

// changeView is a change as one caller sees it.
type changeView struct {
	ID       string
	Timeline []*record // log order, only visible entries, never empty
}

func (c *changeView) first() *record { return c.Timeline[0] }

func (c *changeView) opened() *record {
	for _, r := range c.Timeline {
		if r.P().Kind == evidence.KindChangeOpened && r.P().Change != nil {
			return r
		}
	}
	return nil
}

func (c *changeView) contract() *evidence.Change {
	if o := c.opened(); o != nil {
		return o.P().Change
	}
	return nil
}

func (c *changeView) emergency() bool {
	return slices.ContainsFunc(c.Timeline, func(r *record) bool {
		k := r.P().Kind
		return r.P().Emergency || k == evidence.KindBreakglassOpened || k == evidence.KindBreakglassClosed
	})
}

func (c *changeView) approvals() []approvalView {
	out := []approvalView{}
	for _, r := range c.Timeline {
		if a, ok := approvalOf(r, c).(approvalView); ok {
			out = append(out, a)
		}
	}
	return out
}

func (c *changeView) selfApprovals() []approvalView {
	out := []approvalView{}
	author := c.contract()
	if author == nil {
		return out
	}
	for _, a := range c.approvals() {
		if a.Kind == evidence.KindApprovalGranted && strings.EqualFold(a.Approver, author.Author) {
			out = append(out, a)
		}
	}
	return out
}

// unapprovedApplies lists the completed applies the approval judge found
// not covered by a fresh approval when they were appended: those whose
// entry carries an approval.* error finding, or the emergency finding of an
// apply under break-glass. The judge decided once; this reads its decision.
func (c *changeView) unapprovedApplies() []*record {
	out := []*record{}
	for _, r := range c.Timeline {
		if r.P().Kind != evidence.KindApplyCompleted || r.P().Apply == nil {
			continue
		}
		if slices.ContainsFunc(r.Entry.Meta.Findings, withoutFreshApproval) {
			out = append(out, r)
		}
	}
	return out
}

func withoutFreshApproval(f evidence.Finding) bool {
	switch f.Code {
	case approvals.FindingEmergency:
		return true
	case approvals.FindingApprovalUnauthorized:
		return false // on approvals, not applies
	}
	return strings.HasPrefix(f.Code, "approval.") && f.Severity == evidence.SeverityError
}

// approvalVerdict is the approval judge's verdict on approval a: for the
// change's latest apply of the approved plan, at the time that apply was
// judged; for a plan not applied yet, as the gate would judge it now.
func (g *GraphQL) approvalVerdict(ctx context.Context, a approvalView) (*approvals.Verdict, error) {
	a.verdict.once.Do(func() { a.verdict.v, a.verdict.err = g.judgeApproval(ctx, a) })
	return a.verdict.v, a.verdict.err
}

func (g *GraphQL) judgeApproval(ctx context.Context, a approvalView) (*approvals.Verdict, error) {
	c := a.change
	if g.cfg.Approvals == nil || a.Kind != evidence.KindApprovalGranted || c == nil || len(c.Timeline) == 0 {
		return nil, nil
	}
	first := c.first().P()
	s := approvals.Subject{ChangeID: first.ChangeID, CommitSHA: a.CommitSHA, PlanSHA256: a.PlanSHA256,
		Target: first.Target, RiskClass: first.RiskClass, At: g.cfg.Clock()}
	for _, r := range slices.Backward(c.Timeline) {
		p := r.P()
		if isApply(p.Kind) && p.Apply != nil && p.Apply.PlanSHA256 == a.PlanSHA256 {
			s.CommitSHA, s.Target, s.RiskClass = p.Source.CommitSHA, p.Target, cmpOr(p.RiskClass, s.RiskClass)
			s.At = verifier.JudgedAt(p.OccurredAt, r.Entry.ReceivedAt, g.cfg.MaxBackfill)
			break
		}
		if p.Kind == evidence.KindPlanCreated && p.Plan != nil && p.Plan.PlanSHA256 == a.PlanSHA256 {
			s.CommitSHA, s.Target, s.RiskClass = p.Source.CommitSHA, p.Target, cmpOr(p.RiskClass, s.RiskClass)
			break // not applied since this plan: judged as the gate would, now
		}
	}
	as, err := g.cfg.Approvals.Assess(ctx, s)
	if err != nil {
		return nil, internal(err)
	}
	for i := range as.Verdicts {
		if as.Verdicts[i].Entry == a.Index {
			return &as.Verdicts[i], nil
		}
	}
	return nil, nil
}

func isApply(k evidence.Kind) bool {
	return k == evidence.KindApplyStarted || k == evidence.KindApplyCompleted || k == evidence.KindApplyFailed
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
