package query_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"evident.dev/evident/internal/testenv"

	"evident.dev/evident/query"
)

// TestGraphiQLInChromium loads GET /graphql in headless Chromium (the
// Debian package scripts/setup.d/50-chromium.sh installs), runs the first
// saved audit query with GraphiQL's run button and waits for its answer,
// checks the tabs' titles and opens the Docs panel, which loads the schema.
// Every asset comes from the server: the page works with no network.
func TestGraphiQLInChromium(t *testing.T) {
	ctx := testenv.Browser(t, chromedp.WindowSize(1280, 2400)) // the result pane renders only the lines in view
	h := newHarness(t, query.AccessConfig{})
	h.loadDemo()
	if err := chromedp.Do(ctx, chromedp.Navigate(h.srv.URL+"/graphql")); err != nil {
		t.Fatalf("load GraphiQL in Chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`.graphiql-execute-button`)),
		chromedp.Click(chromedp.CSS(`.graphiql-execute-button`)),
	); err != nil {
		t.Fatalf("GraphiQL did not render its run button: %v", err)
	}
	tabs, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('.graphiql-tab').length`))
	if err != nil {
		t.Fatal(err)
	}
	answer, err := chromedp.Run(ctx, chromedp.Poll[string](`(() => { const r = document.querySelector('.result-window'); return r && r.innerText.includes('bob@example.com') ? r.innerText : null })()`,
		chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		t.Fatalf("no answer in GraphiQL: %v", err)
	}
	if tabs != len(query.AuditQueries()) {
		t.Errorf("GraphiQL shows %d tabs, want the %d saved audit queries", tabs, len(query.AuditQueries()))
	}
	// Each tab is titled with its query's operation name.
	titles, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('.graphiql-tab-button')].map(b => b.innerText.trim())`))
	if err != nil {
		t.Fatal(err)
	}
	for i, title := range titles {
		if title == "" || strings.Contains(title, "untitled") || i < len(query.AuditQueries()) && !strings.Contains(query.AuditQueries()[i].Query, "query "+title+" ") {
			t.Errorf("tab %d is titled %q, want its query's operation name", i, title)
		}
	}
	// The Docs panel loads the schema through GraphiQL's own introspection
	// query, which the query limits must let through.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[aria-label="Show Documentation Explorer"]`))); err != nil {
		t.Fatalf("GraphiQL has no Docs button: %v", err)
	}
	docs, err := chromedp.Run(ctx,
		chromedp.Poll[string](`(() => { const d = document.querySelector('.graphiql-doc-explorer-content'); return d && d.innerText.includes('Root Types') ? d.innerText : null })()`,
			chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('.graphiql-doc-explorer') || document.body).innerText`))
		t.Fatalf("GraphiQL's documentation explorer did not load the schema: %v\n%s", err, text)
	}
	if !strings.Contains(docs, "Query") {
		t.Errorf("the documentation explorer does not show the query type:\n%s", docs)
	}
	for _, want := range []string{"CHG-2026-06-24-0101", "dba", "approvedAt"} {
		if !strings.Contains(answer, want) {
			t.Errorf("the answer in GraphiQL lacks %q:\n%s", want, answer)
		}
	}
}
