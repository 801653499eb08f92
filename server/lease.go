package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"evident.dev/evident/replica"
)

// Lease names the Kubernetes Lease that writer candidates contend for.
type Lease struct {
	Namespace, Name string
	// Kube returns the Kubernetes API's configuration; it is called once
	// the server's own configuration has been checked.
	Kube func() (*rest.Config, error)
}

// Lead runs this server as one of several writer candidates: it waits for
// the lease, restores what the bucket (cfg.ObjectStore.URL) holds beyond its
// data directory, starts the writer, calls serving with it, and serves
// until it loses the lease or ctx ends (the orchestrator restarts a
// candidate that lost it as a standby).
func Lead(ctx context.Context, cfg *Config, lease Lease, logger *slog.Logger, serving func(*Server)) error {
	if cfg.ObjectStore.URL == "" {
		return errors.New("--lease needs objectStore.url: a new leader resumes the log from it")
	}
	if cfg.Durability != durabilityObjectStore {
		logger.Warn("--lease without durability object-store: records acknowledged but not yet exported are lost when the writer's disk is")
	}
	restCfg, err := lease.Kube()
	if err != nil {
		return fmt.Errorf("--lease: Kubernetes API: %w", err)
	}
	leases, err := coordinationv1.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("--lease: Kubernetes API: %w", err)
	}
	identity := firstOf(os.Getenv("POD_NAME"), hostname())
	klog.SetSlogLogger(logger.With("component", "lease"))
	return replica.Lead(ctx, replica.LeaseConfig{
		Leases: leases, Namespace: lease.Namespace, Name: lease.Name, Identity: identity, Logger: logger,
	}, func(ctx context.Context) error {
		if err := resume(ctx, cfg, logger); err != nil {
			return err
		}
		srv, err := Start(ctx, cfg, logger)
		if err != nil {
			return err
		}
		serving(srv)
		return srv.Wait(ctx)
	})
}

// resume makes the data directory hold what the bucket holds, once this
// candidate leads.
func resume(ctx context.Context, cfg *Config, logger *slog.Logger) error {
	if cfg.Log.VerifierKey == "" {
		var err error
		if cfg.Log.VerifierKey, err = RestoreKey(cfg, ""); err != nil {
			return err
		}
	}
	// Claim the bucket before reading it: from then on the previous
	// leader, if it still runs, cannot acknowledge a record this
	// restore would miss.
	store, err := openObjectStore(ctx, cfg.ObjectStore)
	if err != nil {
		return err
	}
	if cfg.ObjectStore.claim, err = replica.ClaimBucket(ctx, store, writerIdentity()); err != nil {
		return err
	}
	n, cpSize, err := Restore(ctx, cfg, logger, nil)
	if err != nil {
		return err
	}
	logger.Info("resumed from object storage", "entries", n, "checkpoint", cpSize)
	return nil
}

// writerIdentity names this process in the bucket's writer claim.
func writerIdentity() string {
	return fmt.Sprintf("%s pid %d", firstOf(os.Getenv("POD_NAME"), hostname()), os.Getpid())
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "evident"
	}
	return h
}
