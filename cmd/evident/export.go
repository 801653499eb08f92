package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"evident.dev/evident/audit"
	"evident.dev/evident/server"
)

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("export", stderr)
	data := fs.String("data", "", "data directory of a stopped server")
	server := fs.String("server", "", "or: URL of a running server")
	out := fs.String("out", "", "output file")
	format := addOutputFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := format.check(); err != nil {
		return err
	}
	if *out == "" || (*data == "") == (*server == "") {
		return usageErrorf("export: --out and exactly one of --data or --server are required")
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".export-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	p := newProgress(stderr, "export", 0)
	p.unit = "lines"
	pctx, stop := context.WithCancel(ctx)
	go p.run(pctx)
	w := progressWriter{tmp, p}
	if *server != "" {
		err = downloadExport(ctx, *server, w)
	} else {
		err = exportData(ctx, *data, w)
	}
	stop()
	if err != nil {
		return errors.Join(err, tmp.Close())
	}
	if err := tmp.Sync(); err != nil {
		return errors.Join(err, tmp.Close())
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return err
	}
	if format.json() {
		return writeIndented(stdout, struct {
			Out   string `json:"out"`
			Lines uint64 `json:"lines"`
		}{*out, p.done.Load()})
	}
	_, err = fmt.Fprintf(stdout, "wrote %s\n", *out)
	return err
}

func downloadExport(ctx context.Context, server string, w io.Writer) error {
	req, err := httpGet(ctx, strings.TrimRight(server, "/")+"/v1/export")
	if err != nil {
		return err
	}
	defer req.Body.Close()
	if req.StatusCode != 200 {
		return fmt.Errorf("export: server answered %s", req.Status)
	}
	// The status is sent before the log is read: a server that fails midway
	// can only end the stream early. Count the lines the header announces.
	lc := &lineCounter{}
	if _, err := io.Copy(io.MultiWriter(w, lc), req.Body); err != nil {
		return err
	}
	var h audit.ExportHeader
	if err := json.Unmarshal(lc.first, &h); err != nil {
		return fmt.Errorf("export: incomplete: the server sent no export header (see the server's log): %w", err)
	}
	if want := 1 + uint64(h.Checkpoints) + h.Size; lc.lines != want {
		return fmt.Errorf("export: incomplete: the server sent %d of the %d lines its header announces (see the server's log)", lc.lines, want)
	}
	return nil
}

// lineCounter counts complete lines and keeps the first.
type lineCounter struct {
	first []byte
	lines uint64
}

func (c *lineCounter) Write(p []byte) (int, error) {
	if c.lines == 0 {
		end := bytes.IndexByte(p, '\n')
		if end < 0 {
			end = len(p)
		}
		c.first = append(c.first, p[:end]...)
	}
	c.lines += uint64(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}

func exportData(ctx context.Context, dataDir string, w io.Writer) error {
	d, err := server.OpenData(dataDir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Export(ctx, w)
}

func httpGet(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return (&http.Client{Timeout: time.Minute}).Do(req)
}
