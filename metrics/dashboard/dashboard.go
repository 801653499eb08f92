// Package dashboard serves Evident's own pages at /: a small dashboard
// (evidence completeness by environment over time, denials by rule,
// unreconciled drift, recent production changes) and a page per change with
// its timeline and each record's proof status, checked against the log's
// signed checkpoint. The pages are rendered on the server with html/template
// from embedded templates and a stylesheet: no script, no CDN, and a
// Content-Security-Policy without 'unsafe-inline'.
package dashboard

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
	"evident.dev/evident/metrics"
)

//go:embed templates/*.html assets/*
var files embed.FS

// Log is the ledger as the pages read it. Safe for concurrent use.
type Log interface {
	Lookup(ctx context.Context, q ledger.Query) ([]uint64, error)
	Leaf(ctx context.Context, index uint64) ([]byte, error)
	Checkpoint() ([]byte, error)
	Origin() string
	VerifierKey() string
	InclusionProof(ctx context.Context, index, size uint64) ([][32]byte, error)
}

// Source is the ledger projection behind the dashboard.
type Source interface {
	Overview(now time.Time) metrics.Overview
}

// Config configures the pages.
type Config struct {
	Log    Log
	Source Source
	Logger *slog.Logger
	Clock  func() time.Time // nil: time.Now
	// MaxTimeline bounds the records shown on a change page. Default 500.
	MaxTimeline int
}

// Handler serves the pages.
type Handler struct {
	cfg    Config
	pages  map[string]*template.Template
	assets http.Handler
}

// New parses the embedded templates.
func New(cfg Config) (*Handler, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxTimeline <= 0 {
		cfg.MaxTimeline = 500
	}
	funcs := template.FuncMap{
		"percent": func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
		"when":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
		"day":     func(t time.Time) string { return t.UTC().Format("Jan 2") },
		"join":    strings.Join,
		// changePath is a change's page: ids hold '/' and '#'
		// (infra-live#4812/prod/...), which a link must escape.
		"changePath": func(id string) string { return "/changes/" + evidence.EscapeChangeID(id) },
	}
	h := &Handler{cfg: cfg, pages: map[string]*template.Template{}}
	for _, name := range []string{"overview", "change", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: template %s: %w", name, err)
		}
		h.pages[name] = t
	}
	sub, err := fs.Sub(files, "assets")
	if err != nil {
		return nil, err
	}
	h.assets = http.StripPrefix("/assets/", http.FileServerFS(sub))
	return h, nil
}

// Register adds the pages to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("GET /{$}", secure(http.HandlerFunc(h.overview)))
	mux.Handle("GET /changes", secure(http.HandlerFunc(h.findChange)))
	mux.Handle("GET /changes/{id...}", secure(http.HandlerFunc(h.change))) // ids may hold '/'
	mux.Handle("GET /assets/", secure(h.assets))
}

// secure sets the pages' security headers: only same-origin stylesheets
// and images, no script at all, no framing, no MIME sniffing.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

func (h *Handler) render(w http.ResponseWriter, status int, page string, data any) {
	var b bytes.Buffer
	if err := h.pages[page].Execute(&b, data); err != nil {
		h.cfg.Logger.Error("dashboard: render", "page", page, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes()) // a failed write means the client left
}

// Chart geometry of the completeness chart (SVG user units).
const (
	chartW, chartH = 640, 180
	chartPad       = 30
)

type series struct {
	Env    string
	Color  string
	Points string // SVG polyline points
	Last   float64
	Days   int
}

type bar struct {
	Label string
	Count int
	Width int // of maxBar
}

type overviewPage struct {
	Title   string
	Now     time.Time
	O       metrics.Overview
	Series  []series
	Denials []bar
	Drift   []bar
	From    time.Time
	To      time.Time
	ChartW  int
	ChartH  int
	Grid    []gridLine
	Ticks   []tick
	AxisY   int // baseline of the date labels
}

type gridLine struct {
	Y     int
	Label string
}

// tick is a date on the chart's time axis.
type tick struct {
	X     float64
	Label string
}

var palette = []string{"#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0969da", "#57606a"}

const maxBar = 300

func (h *Handler) overview(w http.ResponseWriter, r *http.Request) {
	now := h.cfg.Clock()
	o := h.cfg.Source.Overview(now)
	p := overviewPage{Title: "Evident", Now: now, O: o, ChartW: chartW, ChartH: chartH}
	var first, last time.Time
	for _, days := range o.Completeness {
		if len(days) == 0 {
			continue
		}
		if first.IsZero() || days[0].Day.Before(first) {
			first = days[0].Day
		}
		if days[len(days)-1].Day.After(last) {
			last = days[len(days)-1].Day
		}
	}
	p.From, p.To = first, last
	span := last.Sub(first).Hours() / 24
	envs := make([]string, 0, len(o.Completeness))
	for env := range o.Completeness {
		envs = append(envs, env)
	}
	sort.Strings(envs)
	for i, env := range envs {
		days := o.Completeness[env]
		var pts []string
		var y float64
		for _, d := range days {
			x := float64(chartPad)
			if span > 0 {
				x += d.Day.Sub(first).Hours() / 24 / span * float64(chartW-2*chartPad)
			}
			y = float64(chartPad) + (1-d.Rate())*float64(chartH-2*chartPad)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
		}
		if len(pts) == 1 { // one day: a flat segment across the chart, so it shows
			pts = []string{fmt.Sprintf("%d,%.1f", chartPad, y), fmt.Sprintf("%d,%.1f", chartW-chartPad, y)}
		}
		p.Series = append(p.Series, series{Env: env, Color: palette[i%len(palette)], Points: strings.Join(pts, " "), Last: days[len(days)-1].Rate(), Days: len(days)})
	}
	// The time axis: the first and last days, and up to three between.
	if !first.IsZero() {
		p.AxisY = chartH - 4
		steps := min(4, int(span))
		for i := 0; i <= steps; i++ {
			d := first
			if steps > 0 {
				d = first.Add(time.Duration(float64(i) / float64(steps) * float64(last.Sub(first))))
			}
			x := float64(chartPad)
			if span > 0 {
				x += d.Sub(first).Hours() / 24 / span * float64(chartW-2*chartPad)
			}
			p.Ticks = append(p.Ticks, tick{X: x, Label: d.UTC().Format("Jan 2")})
		}
	}
	for _, v := range []float64{1, .75, .5, .25, 0} {
		p.Grid = append(p.Grid, gridLine{Y: chartPad + int((1-v)*float64(chartH-2*chartPad)), Label: fmt.Sprintf("%.0f%%", 100*v)})
	}
	p.Denials = bars(len(o.Denials), func(i int) (string, int) { return o.Denials[i].Rule, o.Denials[i].Count })
	p.Drift = bars(len(o.Drift), func(i int) (string, int) { return o.Drift[i].Env, o.Drift[i].Count })
	h.render(w, http.StatusOK, "overview", p)
}

func bars(n int, at func(int) (string, int)) []bar {
	most := 0
	for i := range n {
		_, c := at(i)
		most = max(most, c)
	}
	out := make([]bar, n)
	for i := range n {
		l, c := at(i)
		out[i] = bar{Label: l, Count: c, Width: max(2, c*maxBar/max(most, 1))}
	}
	return out
}

// record is one row of a change's timeline.
type record struct {
	Index      uint64
	Kind       evidence.Kind
	OccurredAt time.Time
	ReceivedAt time.Time
	Actor      string
	Signer     string
	Env        string
	Findings   []evidence.Finding
	Proof      string // proved, pending, failed
	ProofNote  string
}

type changePage struct {
	Title      string
	ChangeID   string
	Records    []record
	Checkpoint uint64
	Truncated  bool
}

// findChange answers the header's search form (GET /changes?id=...): it
// sends the browser to the change's page.
func (h *Handler) findChange(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	if id == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if err := evidence.CheckChangeID(id); err != nil {
		h.render(w, http.StatusBadRequest, "error", map[string]string{"Title": "Bad request", "Message": err.Error()})
		return
	}
	http.Redirect(w, r, "/changes/"+evidence.EscapeChangeID(id), http.StatusSeeOther)
}

func (h *Handler) change(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == "" || len(id) > 256 {
		h.render(w, http.StatusBadRequest, "error", map[string]string{"Title": "Bad request", "Message": "a change id is 1 to 256 characters"})
		return
	}
	ctx := r.Context()
	idx, err := h.cfg.Log.Lookup(ctx, ledger.Query{Name: ledger.TermChange, Value: id, Limit: h.cfg.MaxTimeline + 1})
	if err != nil {
		h.fail(w, "look up the change", err)
		return
	}
	if len(idx) == 0 {
		h.render(w, http.StatusNotFound, "error", map[string]string{"Title": "No such change", "Message": "The log holds no record of change " + id + "."})
		return
	}
	p := changePage{Title: "Change " + id, ChangeID: id}
	if len(idx) > h.cfg.MaxTimeline {
		idx, p.Truncated = idx[:h.cfg.MaxTimeline], true
	}
	tree, cpErr := h.checkpoint()
	p.Checkpoint = uint64(tree.N)
	for _, i := range idx {
		leaf, err := h.cfg.Log.Leaf(ctx, i)
		if err != nil {
			h.fail(w, fmt.Sprintf("read entry %d", i), err)
			return
		}
		e, err := evidence.ParseLeaf(leaf)
		if err != nil {
			h.fail(w, fmt.Sprintf("decode entry %d", i), err)
			return
		}
		rec := record{Index: i, ReceivedAt: e.ReceivedAt, Signer: e.Meta.Signer.Name, Findings: e.Meta.Findings}
		if st, err := e.Statement(); err == nil {
			t := st.Predicate
			rec.Kind, rec.OccurredAt, rec.Actor, rec.Env = t.Kind, t.OccurredAt, t.Actor, t.Target.Environment
		}
		rec.Proof, rec.ProofNote = h.prove(ctx, leaf, i, tree, cpErr)
		p.Records = append(p.Records, rec)
	}
	sort.SliceStable(p.Records, func(a, b int) bool { return p.Records[a].Index < p.Records[b].Index })
	h.render(w, http.StatusOK, "change", p)
}

// checkpoint opens the log's latest signed checkpoint with its verifier key.
func (h *Handler) checkpoint() (tlog.Tree, error) {
	raw, err := h.cfg.Log.Checkpoint()
	if err != nil {
		return tlog.Tree{}, err
	}
	v, err := note.NewVerifier(h.cfg.Log.VerifierKey())
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("log key: %w", err)
	}
	cp, err := checkpoint.Open(raw, h.cfg.Log.Origin(), v)
	if err != nil {
		return tlog.Tree{}, err
	}
	return tlog.Tree{N: int64(cp.Size), Hash: tlog.Hash(cp.Root)}, nil
}

// prove checks the entry's inclusion proof against the signed checkpoint.
func (h *Handler) prove(ctx context.Context, leaf []byte, index uint64, tree tlog.Tree, cpErr error) (string, string) {
	if cpErr != nil {
		if errors.Is(cpErr, ledger.ErrEmpty) {
			return "pending", "no checkpoint yet"
		}
		return "failed", "checkpoint: " + cpErr.Error()
	}
	if index >= uint64(tree.N) {
		return "pending", fmt.Sprintf("after checkpoint %d; proved once the next checkpoint is signed", tree.N)
	}
	proof, err := h.cfg.Log.InclusionProof(ctx, index, uint64(tree.N))
	if err != nil {
		return "failed", "inclusion proof: " + err.Error()
	}
	p := make(tlog.RecordProof, len(proof))
	for i, x := range proof {
		p[i] = tlog.Hash(x)
	}
	if err := tlog.CheckRecord(p, tree.N, tree.Hash, int64(index), tlog.RecordHash(leaf)); err != nil {
		return "failed", err.Error()
	}
	return "proved", fmt.Sprintf("included in signed checkpoint of size %d", tree.N)
}

func (h *Handler) fail(w http.ResponseWriter, what string, err error) {
	h.cfg.Logger.Error("dashboard: "+what, "err", err)
	h.render(w, http.StatusInternalServerError, "error", map[string]string{"Title": "Error", "Message": "Could not " + what + "."})
}
