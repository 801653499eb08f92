package tofu

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/terraform-exec/tfexec"
	tfjson "github.com/hashicorp/terraform-json"

	"evident.dev/evident/artifacts"
	"evident.dev/evident/evidence"
)

// Errors Apply returns for conditions a caller branches on.
var (
	// ErrGateDenied: the gate refused the apply; nothing was changed.
	ErrGateDenied = errors.New("the apply gate denied the apply")
	// ErrPlanMismatch: the fetched plan file does not hash to the plan
	// SHA-256 the change was approved for.
	ErrPlanMismatch = errors.New("the plan file does not match the planned SHA-256")
	// ErrApplyFailed: the engine failed; apply.failed was recorded.
	ErrApplyFailed = errors.New("apply failed")
)

// DeniedError carries the gate's reasons.
type DeniedError struct {
	Decision GateDecision
}

func (e *DeniedError) Error() string {
	msg := ErrGateDenied.Error()
	if len(e.Decision.Reasons) > 0 {
		msg += ": " + strings.Join(e.Decision.Reasons, "; ")
	}
	if len(e.Decision.RequiredApprovers) > 0 {
		msg += " (required approvers: " + strings.Join(e.Decision.RequiredApprovers, ", ") + ")"
	}
	return msg
}

func (e *DeniedError) Unwrap() error { return ErrGateDenied }

// LockedError: the state is locked by someone else. The runner reports it
// and never forces the lock; see ForceUnlock.
type LockedError struct {
	ID, Who, Operation string
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("the state is locked (lock ID %s, held by %s for %s): not forcing it; "+
		"investigate, then use force-unlock with an incident reference if the holder is gone", e.ID, e.Who, e.Operation)
}

// ApplyResult is what Apply did.
type ApplyResult struct {
	Changed      []string // resources the engine reports as changed
	Failed       []string // resources whose change failed
	Verification evidence.Verification
}

// Apply fetches the plan file named by ref, checks its SHA-256, asks the
// gate, and only on allow records apply.started, applies exactly that plan
// file, stores the apply log, records apply.completed or apply.failed (a
// partial apply names the resources that did change), then runs the
// post-apply verification plan and records verification.completed.
func (r *Runner) Apply(ctx context.Context, stackDir string, ch Change, ref PlanRef) (*ApplyResult, error) {
	if r.cfg.Gate == nil {
		return nil, errors.New("apply: no gate configured; the runner never applies without asking the gate")
	}
	if ref.ChangeID != ch.ID {
		return nil, fmt.Errorf("apply: the plan is for change %q, not %q", ref.ChangeID, ch.ID)
	}
	if ref.CommitSHA != ch.Source.CommitSHA {
		return nil, fmt.Errorf("apply: the plan was made at commit %s, this run is at %s: plan again", ref.CommitSHA, ch.Source.CommitSHA)
	}
	planBytes, err := r.cfg.Store.Get(ctx, ref.PlanArtifact, r.cfg.MaxPlanBytes)
	if err != nil {
		return nil, fmt.Errorf("apply: fetch plan: %w", err)
	}
	if sum := sha256.Sum256(planBytes); hex.EncodeToString(sum[:]) != ref.PlanSHA256 {
		return nil, fmt.Errorf("%w: %s hashes to %x, want %s", ErrPlanMismatch, ref.PlanArtifact, sum, ref.PlanSHA256)
	}
	if artifacts.Digest(planBytes) != "sha256:"+ref.PlanSHA256 {
		return nil, fmt.Errorf("%w: artifact %s", ErrPlanMismatch, ref.PlanArtifact)
	}

	dec, err := r.cfg.Gate.AskGate(ctx, GateRequest{
		ChangeID: ch.ID, CommitSHA: ch.Source.CommitSHA, PlanSHA256: ref.PlanSHA256, Target: ch.Target, Actor: ch.Actor,
	})
	if err != nil {
		return nil, fmt.Errorf("apply: ask the gate: %w", err)
	}
	if dec.Decision != "allow" {
		fmt.Fprintf(r.cfg.Out, "change %s: the gate denied the apply of plan %s (gate.decided entry %d)\n", ch.ID, ref.PlanSHA256, dec.EntryIndex)
		for _, reason := range dec.Reasons {
			fmt.Fprintf(r.cfg.Out, "  - %s\n", reason)
		}
		return nil, &DeniedError{Decision: *dec}
	}
	fmt.Fprintf(r.cfg.Out, "change %s: the gate allowed the apply of plan %s (gate.decided entry %d)\n", ch.ID, ref.PlanSHA256, dec.EntryIndex)

	wd, err := workDir(stackDir)
	if err != nil {
		return nil, err
	}
	planPath := filepath.Join(wd, "apply.tfplan")
	if err := os.WriteFile(planPath, planBytes, 0o600); err != nil {
		return nil, fmt.Errorf("apply: write plan file: %w", err)
	}
	defer os.Remove(planPath)
	var initLog bytes.Buffer
	tf, err := r.engine(stackDir, &initLog)
	if err != nil {
		return nil, err
	}
	if err := r.init(ctx, tf); err != nil {
		return nil, engineError(err, &initLog)
	}

	startedAt := r.now()
	started := ch.transition(evidence.KindApplyStarted)
	started.Apply = &evidence.Apply{PlanSHA256: ref.PlanSHA256, Engine: r.cfg.EngineName, StartedAt: startedAt}
	if _, err := r.record(ctx, started); err != nil {
		return nil, err
	}

	var applyLog bytes.Buffer
	tf.SetStdout(nil)
	tf.SetStderr(nil)
	var applyOut io.Writer = &applyLog
	if r.cfg.EngineOutput != nil {
		applyOut = io.MultiWriter(&applyLog, &messageWriter{w: r.cfg.EngineOutput})
	}
	applyErr := tf.ApplyJSON(ctx, applyOut, tfexec.DirOrPlan(planPath), tfexec.LockTimeout(r.cfg.LockTimeout.String()))
	// Once the engine has run, what it did is reported even if ctx ended
	// (a cancelled CI job): an apply.started without its outcome would be
	// incomplete evidence.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	ev := parseApplyLog(applyLog.Bytes())
	res := &ApplyResult{Changed: ev.changed, Failed: ev.failed}
	logArt, err := r.put(rctx, "apply-log", "application/x-ndjson", applyLog.Bytes())
	if err != nil {
		return nil, err
	}
	logSum := strings.TrimPrefix(logArt.Digest, "sha256:")
	done := ch.transition(evidence.KindApplyCompleted)
	done.Artifacts = []evidence.Artifact{logArt}
	done.Apply = &evidence.Apply{
		PlanSHA256: ref.PlanSHA256, Engine: r.cfg.EngineName, StartedAt: startedAt, CompletedAt: r.now(),
		ResourcesChanged: ev.changed, LogSHA256: logSum,
	}
	var locked *LockedError
	if applyErr != nil {
		done.Kind = evidence.KindApplyFailed
		locked = ev.locked
		switch {
		case locked != nil:
			done.Apply.Error = locked.Error()
		case ev.errSummary != "":
			done.Apply.Error = truncate(ev.errSummary, 4000)
		default:
			done.Apply.Error = truncate(applyErr.Error(), 4000)
		}
		done.Apply.ResourcesFailed = ev.failed
	}
	if _, err := r.record(rctx, done); err != nil {
		return nil, err
	}
	if locked != nil {
		fmt.Fprintf(r.cfg.Out, "change %s: %v\n", ch.ID, locked)
		return res, locked
	}
	if applyErr != nil {
		fmt.Fprintf(r.cfg.Out, "change %s: apply failed after changing %d resources (%s); failed: %s\n",
			ch.ID, len(ev.changed), strings.Join(ev.changed, ", "), strings.Join(ev.failed, ", "))
	} else {
		fmt.Fprintf(r.cfg.Out, "change %s: applied, %d resources changed\n", ch.ID, len(ev.changed))
	}

	// Post-apply verification: a plan of the same configuration must now
	// show no changes (-detailed-exitcode 0).
	v, verr := r.verify(ctx, stackDir, ch)
	if verr != nil {
		return res, errors.Join(applyFailure(applyErr), verr)
	}
	res.Verification = v
	return res, applyFailure(applyErr)
}

func applyFailure(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrApplyFailed, err)
}

// verify runs a plan with -detailed-exitcode and records
// verification.completed: pass (exit 0), drift (exit 2, with the
// addresses that still differ) or fail (the plan itself failed).
func (r *Runner) verify(ctx context.Context, stackDir string, ch Change) (evidence.Verification, error) {
	wd, err := workDir(stackDir)
	if err != nil {
		return evidence.Verification{}, err
	}
	var log bytes.Buffer
	tf, err := r.engine(stackDir, &log)
	if err != nil {
		return evidence.Verification{}, err
	}
	planPath := filepath.Join(wd, "verify.tfplan")
	defer os.Remove(planPath)
	v := evidence.Verification{Method: r.cfg.EngineName + " plan -detailed-exitcode"}
	changes, perr := tf.Plan(ctx, tfexec.Out(planPath), tfexec.LockTimeout(r.cfg.LockTimeout.String()))
	switch {
	case perr != nil:
		v.Result, v.ExitCode = "fail", 1
		v.Checks = []string{"plan failed: " + truncate(firstLine(perr.Error()), 900)}
	case changes:
		v.Result, v.ExitCode = "drift", 2
		addrs, err := changedAddresses(ctx, tf, planPath)
		if err != nil {
			return v, engineError(err, &log)
		}
		for _, a := range addrs {
			v.Checks = append(v.Checks, "differs: "+a)
		}
	default:
		v.Result = "pass"
		v.Checks = []string{"no changes"}
	}
	t := ch.transition(evidence.KindVerificationCompleted)
	t.Verification = &v
	if _, err := r.record(ctx, t); err != nil {
		return v, err
	}
	fmt.Fprintf(r.cfg.Out, "change %s: verification %s\n", ch.ID, v.Result)
	return v, nil
}

// changedAddresses lists the resources a saved plan changes or found
// drifted, sorted.
func changedAddresses(ctx context.Context, tf *tfexec.Terraform, planPath string) ([]string, error) {
	// show -json holds every variable's value, sensitive ones included:
	// it is parsed, never echoed or kept with the engine's output.
	tf.SetStdout(nil)
	p, err := tf.ShowPlanFile(ctx, planPath)
	if err != nil {
		return nil, fmt.Errorf("show plan: %w", err)
	}
	var out []string
	for _, list := range [][]*tfjson.ResourceChange{p.ResourceDrift, p.ResourceChanges} {
		for _, rc := range list {
			if rc.Change == nil || rc.Change.Actions.NoOp() || rc.Change.Actions.Read() {
				continue
			}
			if !slices.Contains(out, rc.Address) {
				out = append(out, rc.Address)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// applyEvents is what the engine's machine-readable apply output says.
type applyEvents struct {
	changed, failed []string
	errSummary      string
	locked          *LockedError
}

// parseApplyLog reads the engine's -json output: one JSON object a line.
func parseApplyLog(b []byte) applyEvents {
	var ev applyEvents
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	var errs []string
	for sc.Scan() {
		var m struct {
			Type string `json:"type"`
			Hook struct {
				Resource struct {
					Addr string `json:"addr"`
				} `json:"resource"`
			} `json:"hook"`
			Diagnostic struct {
				Severity string `json:"severity"`
				Summary  string `json:"summary"`
				Detail   string `json:"detail"`
			} `json:"diagnostic"`
		}
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		addr := m.Hook.Resource.Addr
		switch m.Type {
		case "apply_complete":
			if addr != "" && !slices.Contains(ev.changed, addr) {
				ev.changed = append(ev.changed, addr)
			}
		case "apply_errored":
			if addr != "" && !slices.Contains(ev.failed, addr) {
				ev.failed = append(ev.failed, addr)
			}
		case "diagnostic":
			if m.Diagnostic.Severity != "error" {
				continue
			}
			if strings.Contains(m.Diagnostic.Summary, "acquiring the state lock") {
				ev.locked = parseLockInfo(m.Diagnostic.Detail)
			}
			errs = append(errs, m.Diagnostic.Summary)
		}
	}
	ev.errSummary = strings.Join(errs, "; ")
	return ev
}

// parseLockInfo reads the "Lock Info:" block of a state lock error.
func parseLockInfo(detail string) *LockedError {
	l := &LockedError{ID: "unknown", Who: "unknown", Operation: "unknown"}
	for _, line := range strings.Split(detail, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "ID":
			l.ID = v
		case "Who":
			l.Who = v
		case "Operation":
			l.Operation = v
		}
	}
	return l
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}
