// Failover: one Evident writer at a time among several replicas
// of it runs, through a Kubernetes Lease (client-go leader election). The leader
// resumes the log from object storage (Restore) before it writes, so a
// standby that takes over continues the same log; with durability
// object-store, nothing the previous leader acknowledged is lost.
//
// A lease is not a fence: a leader that stalls past its lease (a paused
// process, a partitioned node) still believes it leads when it resumes. The
// bucket is fenced instead: a new leader claims it (ClaimBucket)
// before it restores from it, and the old leader's exporter checks its
// claim before it releases an acknowledgement or replaces an object, and
// replaces the checkpoint only if it is still the one it stored. A stalled
// leader therefore stops with ErrFenced at its next write, having
// acknowledged nothing its successor lacks.

package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaseConfig configures the election. Leases, Namespace, Name and Identity are
// required.
type LeaseConfig struct {
	Leases    coordinationv1.LeasesGetter
	Namespace string
	Name      string // of the Lease object
	Identity  string // this candidate, e.g. the pod name
	Logger    *slog.Logger
	// LeaseDuration is how long a lease lasts without renewal: how long a
	// crashed leader blocks a takeover. Default 15s.
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader keeps trying to renew before it
	// gives up leading. Default 10s.
	RenewDeadline time.Duration
	// RetryPeriod is how often candidates try. Default 2s.
	RetryPeriod time.Duration
}

// ErrLostLease: the candidate led, then lost its lease while still running.
var ErrLostLease = errors.New("lost the writer lease")

// Lead waits until this candidate holds the lease, then runs lead with a
// context that ends when the lease is lost. It returns lead's error, or
// ErrLostLease when the lease was lost first, or ctx's error if ctx ended
// before this candidate led. A process should exit after Lead returns: a
// standby is a fresh process.
func Lead(ctx context.Context, cfg LeaseConfig, lead func(ctx context.Context) error) error {
	if cfg.Leases == nil || cfg.Namespace == "" || cfg.Name == "" || cfg.Identity == "" {
		return errors.New("lease: Leases, Namespace, Name and Identity are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = 15 * time.Second
	}
	if cfg.RenewDeadline <= 0 {
		cfg.RenewDeadline = 10 * time.Second
	}
	if cfg.RetryPeriod <= 0 {
		cfg.RetryPeriod = 2 * time.Second
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		started atomic.Bool
		result  error
		done    = make(chan struct{})
	)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: cfg.Namespace, Name: cfg.Name},
			Client:     cfg.Leases,
			LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.Identity},
		},
		LeaseDuration:   cfg.LeaseDuration,
		RenewDeadline:   cfg.RenewDeadline,
		RetryPeriod:     cfg.RetryPeriod,
		ReleaseOnCancel: true, // a clean shutdown hands over at once
		Name:            cfg.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leadCtx context.Context) {
				if parent.Err() != nil {
					return // Lead has returned or is returning ctx's error
				}
				started.Store(true)
				cfg.Logger.Info("leading: this is the writer", "lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity)
				result = lead(leadCtx)
				if result == nil && leadCtx.Err() != nil && parent.Err() == nil {
					result = ErrLostLease
				}
				close(done)
				cancel() // stop renewing: this process is done
			},
			OnStoppedLeading: func() {
				cfg.Logger.Info("no longer leading", "identity", cfg.Identity)
			},
			OnNewLeader: func(id string) {
				if id != cfg.Identity {
					cfg.Logger.Info("standing by", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	le.Run(ctx) // returns once leadership ends or ctx ends
	if parent.Err() == nil {
		// Run returns early only after leading: the lease was lost, or
		// lead returned and cancelled ctx.
		<-done
		return result
	}
	if started.Load() {
		<-done
		return result
	}
	return parent.Err()
}
