package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // only reachable through --pprof's own listener
	"os"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"evident.dev/evident/server"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	sf := addServerFlags(fs, "YAML configuration file", "data directory (default ./evident-data)")
	sf.addOrigin(fs, "log origin (default evident.local/log)")
	listen := fs.String("listen", "", "listen address (default 127.0.0.1:8080)")
	operator := fs.String("operator", "", "operator identity recorded in the genesis entry")
	verbose := fs.Bool("v", false, "debug logging")
	pprofAddr := fs.String("pprof", "", "serve Go profiling endpoints on this address (e.g. 127.0.0.1:6060)")
	follow := fs.String("follow", "", "serve as a read replica of the log exported to this s3://bucket/prefix")
	logKey := fs.String("log-key", "", "with --follow: note verifier key of the followed log, or a file holding it (default log.verifierKey)")
	lease := fs.String("lease", "", "writer high availability: lead through this Kubernetes Lease (NAMESPACE/NAME), resuming from the object store")
	kubeconfig := fs.String("kubeconfig", "", "with --lease: kubeconfig file (default in-cluster configuration, or $KUBECONFIG)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := sf.load()
	if err != nil {
		return err
	}
	cfg.Listen = firstOf(*listen, cfg.Listen, server.DefaultListen)
	cfg.Operator = firstOf(*operator, cfg.Operator, currentUser())
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := newLogger(stderr, level)
	cfg.LimitMemory()
	if *lease != "" {
		ns, name, ok := strings.Cut(*lease, "/")
		if !ok || ns == "" || name == "" {
			return usageErrorf("--lease %q: want NAMESPACE/NAME", *lease)
		}
		kube := func() (*rest.Config, error) { return kubeConfig(*kubeconfig) }
		return server.Lead(ctx, cfg, server.Lease{Namespace: ns, Name: name, Kube: kube}, logger,
			func(srv *server.Server) { printServing(stdout, srv) })
	}
	var srv *server.Server
	if *follow != "" {
		cfg.ObjectStore.URL = *follow
		cfg.Log.VerifierKey = keyOrFile(firstOf(*logKey, cfg.Log.VerifierKey))
		srv, err = server.StartReplica(ctx, cfg, logger)
	} else {
		srv, err = server.Start(ctx, cfg, logger)
	}
	if err != nil {
		return err
	}
	if *pprofAddr != "" {
		go servePprof(*pprofAddr, logger)
	}
	printServing(stdout, srv)
	return srv.Wait(ctx)
}

// printServing tells where the server serves and the log key to pin.
func printServing(stdout io.Writer, srv *server.Server) {
	fmt.Fprintf(stdout, "evident serving on %s\nlog origin: %s\nlog key: %s\n", srv.URL(), srv.Origin(), srv.PinKey())
}

// servePprof serves the default mux, which holds only net/http/pprof's
// handlers. A CPU profile streams for its ?seconds= (30 by default).
func servePprof(addr string, logger *slog.Logger) {
	ps := &http.Server{Addr: addr, Handler: http.DefaultServeMux, ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout: 5 * time.Minute, IdleTimeout: 2 * time.Minute}
	err := ps.ListenAndServe()
	logger.Error("pprof listener stopped", "err", err)
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "operator"
}
