package query

import (
	"bytes"
	"compress/gzip"
	"embed"
	"html/template"
	"io"
	"net/http"
	"strings"
)

// The GraphiQL assets are vendored from npm (graphiql 3.8.3, react and
// react-dom 18.3.1; scripts/vendor-graphiql.sh) and embedded gzipped, so the
// page needs no CDN and works offline.
//
//go:embed graphiql/*.gz graphiql/LICENSES.txt
var graphiqlAssets embed.FS

// ExampleQuery is a saved query shown in GraphiQL's tabs.
type ExampleQuery struct {
	Name  string
	Query string
}

var graphiqlPage = template.Must(template.New("graphiql").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Evident audit queries</title>
<link rel="stylesheet" href="/graphql/assets/graphiql.min.css">
<style>body{margin:0;height:100vh}#graphiql{height:100vh}</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script src="/graphql/assets/react.production.min.js"></script>
<script src="/graphql/assets/react-dom.production.min.js"></script>
<script src="/graphql/assets/graphiql.min.js"></script>
<script>
const examples = {{.}};
// A bearer token, if any, is kept in this tab only (GraphiQL's headers editor
// can set it too).
const params = new URLSearchParams(location.search);
const fetcher = GraphiQL.createFetcher({url: '/graphql'});
const tabs = examples.map(e => ({query: '# ' + e.Name + '\n' + e.Query}));
ReactDOM.createRoot(document.getElementById('graphiql')).render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultTabs: tabs,
    defaultQuery: tabs.length ? tabs[0].query : '{ whoami { subject role } }',
    defaultEditorToolsVisibility: false,
    shouldPersistHeaders: false,
  }));
</script>
</body>
</html>
`))

// serveGraphiQL serves the page with the README's audit queries as tabs.
func serveGraphiQL(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if err := graphiqlPage.Execute(&buf, AuditQueries()); err != nil {
		http.Error(w, "could not render GraphiQL", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(buf.Bytes())
}

func serveAsset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if strings.Contains(name, "/") || strings.Contains(name, "..") {
		http.NotFound(w, r)
		return
	}
	b, err := graphiqlAssets.ReadFile("graphiql/" + name + ".gz")
	if err != nil {
		http.NotFound(w, r)
		return
	}
	switch {
	case strings.HasSuffix(name, ".js"):
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case strings.HasSuffix(name, ".css"):
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	}
	w.Header().Set("Cache-Control", "public, max-age=86400")
	w.Header().Set("Vary", "Accept-Encoding")
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(b)
		return
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		http.Error(w, "damaged asset", http.StatusInternalServerError)
		return
	}
	_, _ = io.Copy(w, zr)
}
