package main

import (
	"context"
	"errors"
	"io"
	"strings"

	"evident.dev/evident/client"
	"evident.dev/evident/internal/loadgen"
	"evident.dev/evident/internal/secret"
)

// runLoad is the ingest load generator: it posts realistic signed plan.created
// records from many concurrent clients over HTTP and reports throughput and
// acknowledgment latency; with --proofs it then times inclusion proofs.
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("load", stderr)
	var l loadgen.Ingest
	fs.StringVar(&l.Server, "server", defaultServer(), "server URL")
	keyFile := fs.String("key", "", "runner private key trusted by the server for --env (a file only its owner may read, or env:VAR)")
	fs.IntVar(&l.Records, "records", 20000, "records to post")
	fs.IntVar(&l.Concurrency, "concurrency", 64, "concurrent clients")
	fs.IntVar(&l.Size, "size", 1500, "approximate envelope size in bytes")
	fs.StringVar(&l.Env, "env", "prod", "target environment of the records")
	fs.IntVar(&l.Presign, "presign", 200000, "sign up to this many records before the clock starts; beyond it, sign while posting")
	fs.IntVar(&l.Proofs, "proofs", 0, "after posting, request this many inclusion proofs of random entries")
	fs.IntVar(&l.ProofConcurrency, "proof-concurrency", 4, "concurrent clients requesting proofs")
	fs.IntVar(&l.Gates, "gates", 0, "after posting, ask the apply gate this many times about random changes of the run (each answer appends a gate.decided entry)")
	fs.IntVar(&l.ApplyEvery, "apply-every", 0, "make every Nth record an apply.completed of the plans before it (one change per N records), so the approval judge works as in production; 0: plans only")
	fs.IntVar(&l.Rate, "rate", 0, "post at most this many records per second (0: as fast as the server takes them)")
	replicas := fs.String("replicas", "", "comma-separated read replica URLs: report how far they trail the writer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *keyFile == "" {
		return usageErrorf("load: --key is required")
	}
	if l.Records < 1 || l.Concurrency < 1 || l.Proofs < 0 || l.ProofConcurrency < 1 {
		return usageErrorf("load: --records, --concurrency and --proof-concurrency must be at least 1, --proofs not negative")
	}
	keyPEM, err := secret.ReadPrivateKey(*keyFile)
	if err != nil {
		return err
	}
	if l.Signer, err = client.NewSigner(keyPEM); err != nil {
		return err
	}
	if *replicas != "" {
		l.Replicas = strings.Split(*replicas, ",")
	}
	err = l.Run(ctx, stdout, stderr)
	if errors.Is(err, loadgen.ErrNotHTTP) {
		return usageError{err}
	}
	return err
}
