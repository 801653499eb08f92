package tofu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"evident.dev/evident/evidence"
)

// ForceUnlock removes a state lock held elsewhere. It exists only for
// recovery: it refuses without an incident reference, and records
// lock.forced once the engine has removed the lock.
func (r *Runner) ForceUnlock(ctx context.Context, stackDir string, ch Change, lockID, incident, heldBy string) error {
	if strings.TrimSpace(incident) == "" {
		return errors.New("force-unlock: an incident reference is required")
	}
	if strings.TrimSpace(lockID) == "" {
		return errors.New("force-unlock: the lock ID is required (the apply that found the lock printed it)")
	}
	var log bytes.Buffer
	tf, err := r.engine(stackDir, &log)
	if err != nil {
		return err
	}
	if err := r.init(ctx, tf); err != nil {
		return engineError(err, &log)
	}
	if err := tf.ForceUnlock(ctx, lockID); err != nil {
		return engineError(fmt.Errorf("force-unlock: %w", err), &log)
	}
	t := ch.transition(evidence.KindLockForced)
	t.Lock = &evidence.Lock{Incident: incident, LockID: lockID, HeldBy: heldBy}
	if _, err := r.record(ctx, t); err != nil {
		return err
	}
	fmt.Fprintf(r.cfg.Out, "stack %s: lock %s forced under incident %s\n", ch.StackPath, lockID, incident)
	return nil
}
