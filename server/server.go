// Package server assembles a running Evident server from its configuration:
// the writer (the log, ingest, policies, the apply gate, anchoring, the
// export to object storage), a read replica following a writer's export,
// and a writer candidate leading through a Kubernetes Lease; each serves
// the read side (GraphQL, the log's endpoints, metrics, pages) over HTTP
// until its context ends. It also restores a data directory from object
// storage and reads a stopped server's data directory.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
	"golang.org/x/sync/errgroup"

	"evident.dev/evident/anchor"
	"evident.dev/evident/ledger"
	"evident.dev/evident/metrics"
	"evident.dev/evident/query"
)

// Server is a server listening; Wait serves until its context ends.
type Server struct {
	addr   string
	scheme string // http, or https when TLS is configured
	origin string
	log    *ledger.Log
	access *query.AccessLog
	http   *http.Server
	ln     net.Listener
	logger *slog.Logger
	// anchor, if set, anchors new checkpoints in Rekor every anchorEvery.
	anchor      *anchor.Anchorer
	anchorEvery time.Duration
	// metrics tails the log for GET /metrics while the server runs.
	metrics *metrics.Metrics
	// background runs alongside the HTTP server (export, follow) until the
	// server stops; an error from it stops the server.
	background []func(ctx context.Context) error
}

// Addr is the address the server listens on (host:port).
func (s *Server) Addr() string { return s.addr }

// URL is the server's base URL: http, or https when TLS is configured.
func (s *Server) URL() string { return s.scheme + "://" + s.addr }

// Origin is the origin of the log the server serves.
func (s *Server) Origin() string { return s.origin }

// PinKey is the log key auditors pin: the genesis key; after a rotation
// the key signing now follows from it (GET /v1/log-keys, docs/keys.md).
// A rotated log's keys are logged.
func (s *Server) PinKey() string { return pinKey(s.log, s.logger) }

// listen opens the listener; on failure it closes the access log and the log.
func listen(cfg *Config, lg *ledger.Log, access *query.AccessLog, mux *http.ServeMux, logger *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("listen: %w", err), access.Close(), lg.Close())
	}
	ln = netutil.LimitListener(ln, cmp.Or(cfg.Limits.MaxConnections, 4096))
	scheme := "http"
	if cfg.TLS.CertFile != "" || cfg.TLS.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.path(cfg.TLS.CertFile), cfg.path(cfg.TLS.KeyFile))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("tls: %w", err), ln.Close(), access.Close(), lg.Close())
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if err := cfg.clientAuth(tc); err != nil {
			return nil, errors.Join(err, ln.Close(), access.Close(), lg.Close())
		}
		ln = tls.NewListener(ln, tc)
		scheme = "https"
	}
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      5 * time.Minute, // exports stream for a while
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("serving", "addr", ln.Addr().String(), "origin", cfg.Log.Origin, "entries", lg.Size())
	return &Server{addr: ln.Addr().String(), scheme: scheme, origin: cfg.Log.Origin, log: lg, access: access, http: hs, ln: ln, logger: logger}, nil
}

// Wait serves until ctx ends, then drains requests and closes the log.
func (s *Server) Wait(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.http.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	if s.anchor != nil {
		g.Go(func() error { return s.anchor.Run(gctx, s.anchorEvery) })
	}
	for _, fn := range s.background {
		g.Go(func() error {
			if err := fn(gctx); err != nil && gctx.Err() == nil {
				return err
			}
			return nil
		})
	}
	g.Go(func() error { s.tailMetrics(gctx); return nil })
	g.Go(func() error {
		<-gctx.Done()
		return s.shutdown()
	})
	err := g.Wait()
	s.logger.Info("stopped", "entries", s.log.Size())
	return err
}

// tailMetrics feeds GET /metrics from the log until ctx ends.
func (s *Server) tailMetrics(ctx context.Context) {
	err := s.metrics.Tail(ctx)
	// Once shutdown has begun the log is closed under the tail, whose
	// next read fails with ledger.ErrClosed.
	if !errors.Is(err, context.Canceled) && !errors.Is(err, ledger.ErrClosed) && ctx.Err() == nil {
		// A damaged entry stops the metrics, not the server: auditors
		// still need its proofs and export to find the damage.
		s.logger.Error("metrics stopped: /metrics no longer advances", "err", err)
	}
}

// shutdown drains requests, then closes the access log and the log.
func (s *Server) shutdown() error {
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.http.Shutdown(shutdownCtx)
	if err != nil {
		// Requests still running (a long export) lose their
		// connections, so they end and release their snapshots: the
		// log's Close waits for those.
		err = errors.Join(err, s.http.Close())
	}
	return errors.Join(err, s.access.Close(), s.log.Close())
}
