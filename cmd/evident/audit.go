package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"evident.dev/evident/audit"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/client"
	"evident.dev/evident/ledger"
	"evident.dev/evident/server"
)

func runProof(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("proof", stderr)
	server := fs.String("server", defaultServer(), "server URL")
	index := fs.Uint64("index", 0, "entry index")
	logKey := fs.String("log-key", "", "pinned log verifier key (name+hash+key); default: ask the server (trust on first use)")
	old := fs.String("consistent-with", "", "instead of an inclusion proof, prove the latest checkpoint extends this saved checkpoint file")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for a checkpoint covering the entry")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := client.New(*server)
	key, err := pinnedKey(ctx, c, *logKey, stderr)
	if err != nil {
		return err
	}
	if *old != "" {
		return proveConsistency(ctx, c, key, *old, stdout)
	}
	bundle, err := c.Prove(ctx, *index, key)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "entry %d is included in the signed tree of size %d: proof verified\n", bundle.Index, bundle.TreeSize)
	return writeIndented(stdout, bundle)
}

func pinnedKey(ctx context.Context, c *client.Client, flagKey string, stderr io.Writer) (string, error) {
	if flagKey != "" {
		if b, err := os.ReadFile(flagKey); err == nil {
			flagKey = strings.TrimSpace(string(b))
		}
		return flagKey, nil
	}
	key, err := c.LogKey(ctx)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(stderr, "warning: log key not pinned; using the one the server names: %s\n", key)
	return key, nil
}

func proveConsistency(ctx context.Context, c *client.Client, key, oldFile string, stdout io.Writer) error {
	_, nv, err := audit.LogPublicKey(key)
	if err != nil {
		return err
	}
	oldNote, err := os.ReadFile(oldFile)
	if err != nil {
		return err
	}
	// A checkpoint signed by a later key is accepted through the log's
	// chain of key rotations, verified from the pinned key.
	var chain *client.KeyChain
	open := func(n []byte) (*checkpoint.Checkpoint, error) {
		cp, err := checkpoint.Open(n, nv.Name(), nv)
		if err == nil {
			return cp, nil
		}
		if chain == nil {
			if chain, err = c.FollowLogKeys(ctx, key); err != nil {
				return nil, err
			}
		}
		return chain.Open(n)
	}
	oldCP, err := open(oldNote)
	if err != nil {
		return fmt.Errorf("%s: %w", oldFile, err)
	}
	newNote, err := c.Checkpoint(ctx)
	if err != nil {
		return err
	}
	newCP, err := open(newNote)
	if err != nil {
		return fmt.Errorf("latest checkpoint: %w", err)
	}
	if newCP.Size < oldCP.Size {
		return &exitError{1, fmt.Errorf("the log shrank: latest checkpoint has %d entries, the saved one %d", newCP.Size, oldCP.Size)}
	}
	var hashes [][]byte
	if oldCP.Size > 0 && newCP.Size > oldCP.Size {
		if hashes, err = c.ConsistencyProof(ctx, oldCP.Size, newCP.Size); err != nil {
			return err
		}
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, oldCP.Size, newCP.Size, hashes, oldCP.Root[:], newCP.Root[:]); err != nil {
		return &exitError{1, fmt.Errorf("the latest checkpoint is NOT consistent with %s: %w", oldFile, err)}
	}
	_, err = fmt.Fprintf(stdout, "consistent: the tree of %d entries extends the saved tree of %d entries\n", newCP.Size, oldCP.Size)
	return err
}

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

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify", stderr)
	data := fs.String("data", "", "data directory of a stopped server")
	export := fs.String("export", "", "or: an export file")
	logKey := fs.String("log-key", "", "pinned log verifier key, or a file holding it; default: the key the log's genesis names")
	fast := fs.Bool("fast", false, "check only the chain, the tree and the checkpoints, not every signature and index")
	workers := fs.Int("workers", 0, "signature-checking workers (default: all cores)")
	cpuProfile := fs.String("cpuprofile", "", "write a Go CPU profile of the check to this file")
	rekorKey := fs.String("rekor-key", "", "file(s, comma-separated) with the pinned public key of the Rekor the log is anchored in; without it anchors' Rekor proofs are not checked")
	pack := fs.String("pack", "", "or: an evidence pack (evident pack)")
	out := addOutputFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := out.check(); err != nil {
		return err
	}
	if *pack != "" {
		if *data != "" || *export != "" {
			return usageErrorf("verify: give exactly one of --data, --export or --pack")
		}
		return verifyPack(*pack, *logKey, out, stdout, stderr)
	}
	if (*data == "") == (*export == "") {
		return usageErrorf("verify: give exactly one of --data, --export or --pack")
	}
	var rekorKeys []crypto.PublicKey
	if *rekorKey != "" {
		var err error
		if rekorKeys, err = server.ReadRekorKeys(*rekorKey); err != nil {
			return err
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	var rep *audit.CheckReport
	var err error
	if *export != "" {
		rep, err = verifyExport(ctx, *export, *logKey, !*fast, *workers, rekorKeys, stderr)
	} else {
		rep, err = verifyData(ctx, *data, *logKey, !*fast, *workers, rekorKeys, stderr)
	}
	what := "chain, tree, checkpoints"
	if !*fast {
		what += ", signatures, indexes"
	}
	if out.json() && !errors.Is(err, ledger.ErrInUse) {
		if werr := writeVerifyJSON(stdout, rep, err, what, time.Since(start)); werr != nil {
			return werr
		}
	}
	switch {
	case errors.Is(err, ledger.ErrInUse):
		// Not a verdict on the log: it could not be read. Exit 2, as for a
		// usage error, so a script does not take it for tampering (1).
		return &exitError{2, fmt.Errorf("verify: the data directory %s is in use by a running server; stop the server first, or verify an export of it (evident export --server URL --out FILE, then evident verify --export FILE): %w", *data, err)}
	case err != nil:
		return &exitError{1, fmt.Errorf("verify FAILED: %w", err)}
	case out.json():
		return nil
	}
	_, err = fmt.Fprintf(stdout, "OK: %d entries, %d checkpoints (latest at size %d, root %x), %d signatures re-verified; checked %s in %s\n",
		rep.Size, rep.Checkpoints, rep.CheckpointSize, rep.Root, rep.Signatures, what, time.Since(start).Round(time.Millisecond))
	if err == nil && rep.Anchors > 0 {
		_, err = fmt.Fprintf(stdout, "anchors: %d checkpoint anchors verified against Rekor\n", rep.Anchors)
	}
	if err == nil && rep.AnchorsUnchecked > 0 {
		_, err = fmt.Fprintf(stdout, "note: %d checkpoint anchors not checked against Rekor (give --rekor-key)\n", rep.AnchorsUnchecked)
	}
	for _, r := range rep.Rotations {
		if err != nil {
			break
		}
		_, err = fmt.Fprintf(stdout, "log key rotated at entry %d from %s to %s (cross-signed checkpoint of %d entries)\n", r.Entry, r.From, r.To, r.CheckpointSize)
	}
	for _, r := range rep.Revoked {
		if err != nil {
			break
		}
		err = printRevoked(stdout, r)
	}
	if err == nil && rep.CheckpointSize < rep.Size {
		_, err = fmt.Fprintf(stdout, "note: entries %d..%d are not yet covered by a signed checkpoint\n", rep.CheckpointSize, rep.Size-1)
	}
	return err
}

// printRevoked says what a revoked key signed, and that it is valid.
func printRevoked(w io.Writer, r audit.RevokedKeyUse) error {
	id := r.KeyID
	if len(id) > 16 {
		id = id[:16]
	}
	at := r.RevokedAt.UTC().Format(time.RFC3339)
	if r.Entries > 0 && !r.LastReceivedAt.Before(r.RevokedAt) {
		_, err := fmt.Fprintf(w, "warning: revoked key %s (%s, revoked at %s) signed %d entries, the latest received at %s, after the revocation time: the log accepted them before the revocation was recorded\n",
			id, r.Name, at, r.Entries, r.LastReceivedAt.UTC().Format(time.RFC3339))
		return err
	}
	_, err := fmt.Fprintf(w, "revoked key %s (%s, revoked at %s): %d entries signed before the revocation: valid\n", id, r.Name, at, r.Entries)
	return err
}

func keyOrFile(k string) string {
	if b, err := os.ReadFile(k); err == nil {
		return strings.TrimSpace(string(b))
	}
	return strings.TrimSpace(k) // from a Secret's file or variable, with its newline
}

func verifyExport(ctx context.Context, path, logKey string, full bool, workers int, rekorKeys []crypto.PublicKey, stderr io.Writer) (*audit.CheckReport, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ex, err := audit.OpenExport(f)
	if err != nil {
		return nil, err
	}
	key := keyOrFile(logKey)
	if key == "" {
		key = ex.Header.LogKey
		fmt.Fprintf(stderr, "warning: log key not pinned; using the key the export names: %s\n", key)
	}
	_, nv, err := audit.LogPublicKey(key)
	if err != nil {
		return nil, err
	}
	if err := ex.CheckHeader(nv.Name(), key); err != nil {
		return nil, err
	}
	p := newProgress(stderr, "verify", 0)
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	go p.run(pctx)
	return audit.CheckLog(ctx, countingSource{ex, p}, audit.CheckOptions{Origin: nv.Name(), LogKey: key, Signatures: full, Workers: workers, RekorKeys: rekorKeys})
}

func verifyData(ctx context.Context, dataDir, logKey string, full bool, workers int, rekorKeys []crypto.PublicKey, stderr io.Writer) (*audit.CheckReport, error) {
	d, err := server.OpenData(dataDir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	key := keyOrFile(logKey)
	if key == "" {
		if _, key, err = d.Genesis(); err != nil {
			return nil, err
		}
		fmt.Fprintf(stderr, "warning: log key not pinned; using the key the log's genesis names: %s\n", key)
	}
	_, nv, err := audit.LogPublicKey(key)
	if err != nil {
		return nil, err
	}
	p := newProgress(stderr, "verify", d.Size())
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	go p.run(pctx)
	return d.Check(ctx, countingSource{d.Log(), p}, audit.CheckOptions{
		Origin: nv.Name(), LogKey: key, Signatures: full, Workers: workers, RekorKeys: rekorKeys,
	})
}

func httpGet(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return (&http.Client{Timeout: time.Minute}).Do(req)
}
