package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"evident.dev/evident/audit"
	"evident.dev/evident/ledger"
	"evident.dev/evident/server"
)

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
	witnessedFile := fs.String("witnessed", "", "with --witness: the witnessed checkpoint to check the log against (saved from GET /v1/checkpoint/witnessed); default with --data: the one the server kept")
	wf := addWitnessFlags(fs)
	out := addOutputFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	policy, err := wf.policy()
	if err != nil {
		return err
	}
	if err := out.check(); err != nil {
		return err
	}
	if *pack != "" {
		if *data != "" || *export != "" {
			return usageErrorf("verify: give exactly one of --data, --export or --pack")
		}
		return verifyPack(*pack, *logKey, policy, out, stdout, stderr)
	}
	if (*data == "") == (*export == "") {
		return usageErrorf("verify: give exactly one of --data, --export or --pack")
	}
	var rekorKeys []crypto.PublicKey
	if *rekorKey != "" {
		if rekorKeys, err = server.ReadRekorKeys(*rekorKey); err != nil {
			return err
		}
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	opts := audit.CheckOptions{Signatures: !*fast, Workers: *workers, RekorKeys: rekorKeys, Witness: policy}
	if *witnessedFile != "" {
		if opts.Witnessed, err = readWitnessed(*witnessedFile); err != nil {
			return err
		}
	}
	start := time.Now()
	var rep *audit.CheckReport
	if *export != "" {
		rep, err = verifyExport(ctx, *export, *logKey, opts, stderr)
	} else {
		rep, err = verifyData(ctx, *data, *logKey, opts, stderr)
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
	return printVerified(stdout, rep, what, start)
}

// printVerified is verify's text answer for a log that verified.
func printVerified(stdout io.Writer, rep *audit.CheckReport, what string, start time.Time) error {
	_, err := fmt.Fprintf(stdout, "OK: %d entries, %d checkpoints (latest at size %d, root %x), %d signatures re-verified; checked %s in %s\n",
		rep.Size, rep.Checkpoints, rep.CheckpointSize, rep.Root, rep.Signatures, what, time.Since(start).Round(time.Millisecond))
	if err == nil && rep.WitnessedSize > 0 {
		_, err = fmt.Fprintf(stdout, "witnessed: the checkpoint of %d entries is cosigned by %s, and the log's entries match it\n", rep.WitnessedSize, strings.Join(rep.Witnesses, ", "))
	}
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

// startCPUProfile writes a CPU profile to path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
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

// verifyExport checks an export; opts has all but the origin and log key.
func verifyExport(ctx context.Context, path, logKey string, opts audit.CheckOptions, stderr io.Writer) (*audit.CheckReport, error) {
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
	opts.Origin, opts.LogKey = nv.Name(), key
	return audit.CheckLog(ctx, countingSource{ex, p}, opts)
}

// verifyData checks a stopped server's log; opts has all but the origin and
// log key.
func verifyData(ctx context.Context, dataDir, logKey string, opts audit.CheckOptions, stderr io.Writer) (*audit.CheckReport, error) {
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
	if opts.Witness != nil && opts.Witnessed == nil {
		if opts.Witnessed, err = d.Witnessed(); err != nil {
			return nil, err
		}
	}
	p := newProgress(stderr, "verify", d.Size())
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	go p.run(pctx)
	opts.Origin, opts.LogKey = nv.Name(), key
	return d.Check(ctx, countingSource{d.Log(), p}, opts)
}
