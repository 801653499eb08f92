package tofu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/terraform-exec/tfexec"

	"evident.dev/evident/evidence"
)

// DriftResult is what one drift check found.
type DriftResult struct {
	Drifted    []string // addresses whose live state differs from the desired one
	Reconciled []string // addresses reported drifted before and clean now
}

// driftStatus is kept in <stack>/.evident/drift.json between checks, so a
// later clean check knows which drift it reconciles.
type driftStatus struct {
	ChangeID  string    `json:"changeId"`
	Resources []string  `json:"resources"`
	Since     time.Time `json:"since"`
}

// Drift plans with -detailed-exitcode (refreshing live state first) and
// records drift.detected with the addresses that differ from the desired
// configuration (whether changed out of band in the live objects or in the
// state). When a later check is clean and drift was recorded before, it
// records drift.reconciled for those addresses with method (revert,
// import or accept; default revert). A check that finds the same drift as
// the last one does not record it again.
func (r *Runner) Drift(ctx context.Context, stackDir string, ch Change, method string) (*DriftResult, error) {
	if method == "" {
		method = "revert"
	}
	wd, err := workDir(stackDir)
	if err != nil {
		return nil, err
	}
	var log bytes.Buffer
	tf, err := r.engine(stackDir, &log)
	if err != nil {
		return nil, err
	}
	if err := r.init(ctx, tf); err != nil {
		return nil, engineError(err, &log)
	}
	planPath := filepath.Join(wd, "drift.tfplan")
	defer os.Remove(planPath)
	changes, err := tf.Plan(ctx, tfexec.Out(planPath), tfexec.Refresh(true), tfexec.LockTimeout(r.cfg.LockTimeout.String()))
	if err != nil {
		return nil, engineError(fmt.Errorf("drift plan: %w", err), &log)
	}
	statusPath := filepath.Join(wd, "drift.json")
	prev, err := readDriftStatus(statusPath)
	if err != nil {
		return nil, err
	}
	res := &DriftResult{}
	if changes {
		if res.Drifted, err = changedAddresses(ctx, tf, planPath); err != nil {
			return nil, engineError(err, &log)
		}
	}
	switch {
	case len(res.Drifted) > 0:
		if prev != nil && slices.Equal(prev.Resources, res.Drifted) {
			fmt.Fprintf(r.cfg.Out, "stack %s: still drifted since %s: %s\n", ch.StackPath, prev.Since.Format(time.RFC3339), strings.Join(res.Drifted, ", "))
			return res, nil
		}
		t := ch.transition(evidence.KindDriftDetected)
		t.Drift = &evidence.Drift{
			Resources:  res.Drifted,
			DetectedBy: "evident runner drift",
			Summary:    fmt.Sprintf("%d resources differ from the desired configuration", len(res.Drifted)),
		}
		if _, err := r.record(ctx, t); err != nil {
			return nil, err
		}
		if err := writeDriftStatus(statusPath, driftStatus{ChangeID: ch.ID, Resources: res.Drifted, Since: r.now()}); err != nil {
			return nil, err
		}
		fmt.Fprintf(r.cfg.Out, "stack %s: drift detected: %s\n", ch.StackPath, strings.Join(res.Drifted, ", "))
	case prev != nil:
		res.Reconciled = prev.Resources
		t := ch.transition(evidence.KindDriftReconciled)
		t.Drift = &evidence.Drift{
			Resources:  prev.Resources,
			DetectedBy: "evident runner drift",
			Method:     method,
			Summary:    "live state matches the desired configuration again",
		}
		if _, err := r.record(ctx, t); err != nil {
			return nil, err
		}
		if err := os.Remove(statusPath); err != nil {
			return nil, fmt.Errorf("drift status: %w", err)
		}
		fmt.Fprintf(r.cfg.Out, "stack %s: drift reconciled (%s): %s\n", ch.StackPath, method, strings.Join(prev.Resources, ", "))
	default:
		fmt.Fprintf(r.cfg.Out, "stack %s: no drift\n", ch.StackPath)
	}
	return res, nil
}

// Watch runs Drift every interval until ctx ends (the schedule mode). A
// failed check is reported through report and does not stop the schedule.
func (r *Runner) Watch(ctx context.Context, stackDir string, ch Change, every time.Duration, report func(error)) error {
	if every <= 0 {
		return errors.New("drift schedule: the interval must be positive")
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := r.Drift(ctx, stackDir, ch, ""); err != nil && ctx.Err() == nil {
			report(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func readDriftStatus(p string) (*driftStatus, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("drift status: %w", err)
	}
	var s driftStatus
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("drift status %s: %w", p, err)
	}
	return &s, nil
}

func writeDriftStatus(p string, s driftStatus) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("drift status: %w", err)
	}
	return os.Rename(tmp, p)
}
