package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"evident.dev/evident/client"
	"evident.dev/evident/internal/secret"
	"evident.dev/evident/runners/gitops"
	"evident.dev/evident/runners/spool"
	"evident.dev/evident/runners/webhook"
)

// runWatch runs a GitOps watcher:
//
//	evident watch argocd|flux|webhook --key FILE --server URL --spool DIR
//	    --environment ENV --cluster NAME [--actor ID] [--namespace NS]
//	    [--kubeconfig FILE] [--listen ADDR] [--secret-file FILE] [--max-spool-mb N]
//
// It prints "evident watch listening on http://ADDR" once its HTTP listener
// (metrics, and webhooks in webhook mode) serves.
func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return errors.New("usage: evident watch argocd|flux|webhook [flags] (evident watch argocd -h lists them)")
	}
	mode := args[0]
	switch mode {
	case "argocd", "flux", "webhook":
	default:
		return fmt.Errorf("unknown watcher %q: want argocd, flux or webhook", mode)
	}
	fs := newFlags("watch "+mode, stderr)
	keyFile := fs.String("key", "", "the watcher's PKCS#8 private key (PEM); its public key is a runner in the server's trust configuration (a file only its owner may read, or env:VAR)")
	tlsFlags := addClientTLSFlags(fs)
	server := fs.String("server", defaultServer(), "Evident server URL")
	spoolDir := fs.String("spool", "evident-watch", "directory of the durable spool and the watcher's state")
	env := fs.String("environment", "", "target environment of the records (an object's evident.dev/environment label wins)")
	cluster := fs.String("cluster", "", "this cluster's name, as the trust configuration scopes the watcher")
	actor := fs.String("actor", "", "the watcher's identity recorded as actor (default evident-watch-MODE/CLUSTER)")
	namespace := fs.String("namespace", "", "follow only this namespace (default all)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default in-cluster configuration, or $KUBECONFIG)")
	rollouts := fs.Bool("rollouts", true, "argocd: also follow Argo Rollouts and AnalysisRuns")
	listen := fs.String("listen", "127.0.0.1:0", "address of the metrics endpoint (and of the webhooks in webhook mode)")
	secretFile := fs.String("secret-file", "", "webhook: file holding the shared HMAC secret")
	maxSpoolMB := fs.Int64("max-spool-mb", 256, "spool budget; beyond it new records wait (logged and counted)")
	verbose := fs.Bool("v", false, "debug logging")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *keyFile == "" || *env == "" || *cluster == "" {
		return usageErrorf("--key, --environment and --cluster are required")
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := newLogger(stderr, level)
	pem, err := secret.ReadPrivateKey(*keyFile)
	if err != nil {
		return fmt.Errorf("read key: %w", err)
	}
	signer, err := client.NewSigner(pem)
	if err != nil {
		return fmt.Errorf("%s: %w", *keyFile, err)
	}
	site := gitops.Site{Environment: *env, Cluster: *cluster, Actor: *actor}
	if site.Actor == "" {
		site.Actor = "evident-watch-" + mode + "/" + *cluster
	}

	reg := prometheus.NewRegistry()
	sp, err := spool.Open(*spoolDir+"/spool", spool.Options{MaxBytes: *maxSpoolMB << 20, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	defer sp.Close()

	cfg := gitops.Config{Signer: signer, Spool: sp, StateDir: *spoolDir + "/state", Logger: log, Registerer: reg, Namespace: *namespace}
	flux := watchDerivers(&cfg, mode, site, *rollouts)
	if mode != "webhook" {
		if err := watchCluster(&cfg, *kubeconfig, log); err != nil {
			return err
		}
	}
	w, err := gitops.New(ctx, cfg)
	if err != nil {
		return err
	}

	mux := watchMux(w, reg)
	if mode == "webhook" {
		if *secretFile == "" {
			return usageErrorf("webhook: --secret-file is required")
		}
		secret, err := os.ReadFile(*secretFile)
		if err != nil {
			return fmt.Errorf("read secret: %w", err)
		}
		rcv, err := webhook.New(webhook.Config{Secret: []byte(strings.TrimSpace(string(secret))), Sink: w, Flux: flux, Logger: log, Registry: reg})
		if err != nil {
			return err
		}
		mux.Handle("/webhooks/", rcv)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
	}
	fmt.Fprintf(stdout, "evident watch listening on http://%s\n", ln.Addr())

	api := client.New(*server)
	if err := tlsFlags.apply(api); err != nil {
		return errors.Join(err, ln.Close())
	}
	return serveWatch(ctx, w, sp, api, srv, ln, log)
}

// watchDerivers sets the derivers of mode's records; it returns the Flux
// Kustomization deriver, which the webhook receiver also feeds.
func watchDerivers(cfg *gitops.Config, mode string, site gitops.Site, rollouts bool) *gitops.Flux {
	flux := &gitops.Flux{Site: site, GVR: gitops.KustomizationResource}
	switch mode {
	case "argocd":
		cfg.Derivers = []gitops.Deriver{&gitops.ArgoCD{Site: site}}
		if rollouts {
			cfg.Derivers = append(cfg.Derivers, &gitops.Rollouts{Site: site})
		}
	case "flux":
		cfg.Derivers = []gitops.Deriver{flux, &gitops.Flux{Site: site, GVR: gitops.HelmReleaseResource}}
	case "webhook":
		cfg.Derivers = []gitops.Deriver{&gitops.ArgoCD{Site: site}}
	}
	return flux
}

// watchCluster sets the Kubernetes clients the watcher follows the
// cluster with.
func watchCluster(cfg *gitops.Config, kubeconfig string, log *slog.Logger) error {
	rc, err := kubeConfig(kubeconfig)
	if err != nil {
		return err
	}
	if cfg.Client, err = dynamic.NewForConfig(rc); err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	if cfg.Discovery, err = discovery.NewDiscoveryClientForConfig(rc); err != nil {
		return fmt.Errorf("kubernetes discovery: %w", err)
	}
	// client-go logs through klog: into this command's log instead.
	klog.SetSlogLogger(log.With("component", "client-go"))
	return nil
}

// watchMux serves the watcher's metrics and readiness.
func watchMux(w *gitops.Watcher, reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Ready once the caches have synced; it names the resources the
	// cluster does not serve or does not let the watcher read, which are
	// not followed.
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) {
		if why := w.Ready(); why != "" {
			http.Error(rw, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(rw, "ready")
		for _, m := range w.Missing() {
			fmt.Fprintf(rw, "not served by the API server, not followed: %s\n", m)
		}
		for _, f := range w.Forbidden() {
			fmt.Fprintf(rw, "forbidden to this watcher (RBAC), not followed: %s\n", f)
		}
	})
	return mux
}

// serveWatch runs the watcher, the spool's delivery to the server and the
// HTTP listener until ctx ends.
func serveWatch(ctx context.Context, w *gitops.Watcher, sp *spool.Spool, api *client.Client, srv *http.Server, ln net.Listener, log *slog.Logger) error {
	post := func(ctx context.Context, env []byte) error {
		_, err := api.Post(ctx, env)
		var apiErr *client.APIError
		if errors.As(err, &apiErr) && apiErr.Status/100 == 4 && apiErr.Status != http.StatusTooManyRequests {
			return fmt.Errorf("%w: %w", spool.ErrRejected, err)
		}
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.Run(ctx) })
	g.Go(func() error { return sp.Deliver(ctx, post) })
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shut)
	})
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		log.Info("watcher stopped", "pending_records", sp.Pending())
		return nil
	}
	return err
}

// kubeConfig reads a kubeconfig file, else $KUBECONFIG, else the in-cluster
// service account.
func kubeConfig(path string) (*rest.Config, error) {
	if path == "" {
		path = os.Getenv("KUBECONFIG")
	}
	if path == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no --kubeconfig and not in a cluster: %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return rc, nil
}
