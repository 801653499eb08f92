package tofu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/terraform-exec/tfexec"

	"evident.dev/evident/evidence"
)

// ErrPlanHoldsSecrets: the plan carries sensitive values and no plan
// passphrase is configured, so its file would be uploaded in clear.
var ErrPlanHoldsSecrets = errors.New("the plan holds sensitive values; set a plan passphrase (EVIDENT_PLAN_PASSPHRASE) so the plan file is stored encrypted")

// PlanRef is what a plan run hands to the apply run (a small JSON file,
// by default <stack>/.evident/plan.json): which change, which plan file,
// and where the plan's record is.
type PlanRef struct {
	ChangeID             string          `json:"changeId"`
	StackPath            string          `json:"stackPath"`
	CommitSHA            string          `json:"commitSha"`
	Target               evidence.Target `json:"target"`
	PlanSHA256           string          `json:"planSha256"`
	PlanArtifact         string          `json:"planArtifact"` // digest in the artifact store
	RedactedPlanArtifact string          `json:"redactedPlanArtifact"`
	EntryIndex           uint64          `json:"entryIndex"`
	PolicyDecisionSHA256 string          `json:"policyDecisionSha256,omitempty"`
	HasChanges           bool            `json:"hasChanges"`
}

// PlanResult is what Plan did.
type PlanResult struct {
	Ref     PlanRef
	Summary evidence.Plan
}

// Plan runs init, plan to a file and show -json in stackDir; computes the
// plan's SHA-256 and risk summary; uploads the plan file and the redacted
// plan JSON; posts change.opened (the change contract) and plan.created;
// and writes the PlanRef to refFile (default <stack>/.evident/plan.json).
func (r *Runner) Plan(ctx context.Context, stackDir string, ch Change, refFile string) (*PlanResult, error) {
	wd, err := workDir(stackDir)
	if err != nil {
		return nil, err
	}
	var engineLog bytes.Buffer
	tf, err := r.engine(stackDir, &engineLog)
	if err != nil {
		return nil, err
	}
	if err := r.init(ctx, tf); err != nil {
		return nil, engineError(err, &engineLog)
	}
	planPath := filepath.Join(wd, "plan.tfplan")
	os.Remove(planPath)
	hasChanges, err := tf.Plan(ctx, tfexec.Out(planPath), tfexec.LockTimeout(r.cfg.LockTimeout.String()))
	if err != nil {
		return nil, engineError(fmt.Errorf("plan: %w", err), &engineLog)
	}
	// show -json holds every variable's value, sensitive ones included:
	// it is parsed, never echoed or kept with the engine's output.
	tf.SetStdout(nil)
	plan, err := tf.ShowPlanFile(ctx, planPath)
	if err != nil {
		return nil, engineError(fmt.Errorf("show plan: %w", err), &engineLog)
	}
	if HoldsSecrets(plan) && r.cfg.PlanPassphrase == "" {
		os.Remove(planPath)
		return nil, ErrPlanHoldsSecrets
	}
	planBytes, err := os.ReadFile(planPath)
	if err != nil {
		return nil, fmt.Errorf("read plan file: %w", err)
	}
	sum := sha256.Sum256(planBytes)
	planSHA := hex.EncodeToString(sum[:])

	summary := Summarize(plan, r.cfg.Catalog, ch)
	summary.PlanSHA256 = planSHA
	summary.Engine = r.cfg.EngineName
	ch.RiskClass = riskClass(ch, summary)

	redacted, err := Redact(plan, planSHA)
	if err != nil {
		return nil, err
	}
	planArt, err := r.put(ctx, "plan", "application/vnd.opentofu.plan", planBytes)
	if err != nil {
		return nil, err
	}
	redArt, err := r.put(ctx, "plan.redacted.json", "application/json", redacted)
	if err != nil {
		return nil, err
	}

	contract := ch.transition(evidence.KindChangeOpened)
	contract.Change = &evidence.Change{
		Author:               firstNonEmpty(ch.Author, ch.Actor),
		TargetBranch:         ch.TargetBranch,
		MutationType:         mutationType(summary),
		RequiresApprovalFrom: ch.RequiresApprovalFrom,
		EvidenceRequired:     ch.EvidenceRequired,
	}
	if _, err := r.record(ctx, contract); err != nil {
		return nil, err
	}
	t := ch.transition(evidence.KindPlanCreated)
	t.Artifacts = []evidence.Artifact{planArt, redArt}
	t.Plan = &summary
	rec, err := r.record(ctx, t)
	if err != nil {
		return nil, err
	}
	res := &PlanResult{Summary: summary, Ref: PlanRef{
		ChangeID: ch.ID, StackPath: ch.StackPath, CommitSHA: ch.Source.CommitSHA, Target: ch.Target,
		PlanSHA256: planSHA, PlanArtifact: planArt.Digest, RedactedPlanArtifact: redArt.Digest,
		EntryIndex: rec.Index, PolicyDecisionSHA256: rec.PolicyDecisionSHA256, HasChanges: hasChanges,
	}}
	if refFile == "" {
		refFile = filepath.Join(wd, "plan.json")
	}
	b, err := json.MarshalIndent(res.Ref, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(refFile, append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("write plan reference: %w", err)
	}
	r.printPlan(res, ch, redArt.URI)
	return res, nil
}

// ReadPlanRef reads the file Plan wrote.
func ReadPlanRef(file string) (PlanRef, error) {
	var ref PlanRef
	b, err := os.ReadFile(file)
	if err != nil {
		return ref, fmt.Errorf("plan reference: %w", err)
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		return ref, fmt.Errorf("plan reference %s: %w", file, err)
	}
	if ref.ChangeID == "" || len(ref.PlanSHA256) != 64 || ref.PlanArtifact == "" {
		return ref, fmt.Errorf("plan reference %s: changeId, planSha256 and planArtifact are required", file)
	}
	return ref, nil
}

// printPlan writes the clean plan summary: counts and addresses, never
// values.
func (r *Runner) printPlan(res *PlanResult, ch Change, redactedURI string) {
	s := res.Summary
	w := r.cfg.Out
	fmt.Fprintf(w, "change %s: plan for %s\n", ch.ID, ch.StackPath)
	fmt.Fprintf(w, "  plan sha256: %s\n", s.PlanSHA256)
	fmt.Fprintf(w, "  actions: create %d, update %d, delete %d, replace %d\n",
		s.Actions.Create, s.Actions.Update, s.Actions.Delete, s.Actions.Replace)
	for _, rc := range s.ResourceChanges {
		fmt.Fprintf(w, "    %-10s %s\n", strings.Join(rc.Actions, ","), rc.Address)
	}
	if len(s.Replacement) > 0 {
		fmt.Fprintf(w, "  replacement: %s\n", strings.Join(s.Replacement, ", "))
	}
	if len(s.HighRiskResources) > 0 {
		fmt.Fprintf(w, "  high-risk resources: %s\n", strings.Join(s.HighRiskResources, ", "))
	}
	if len(s.SensitiveChanges) > 0 {
		fmt.Fprintf(w, "  sensitive changes (values withheld): %s\n", strings.Join(s.SensitiveChanges, ", "))
	}
	fmt.Fprintf(w, "  destructive: %v, requires manual approval: %v, risk class: %s\n",
		s.Destructive, s.RequiresManualApproval, riskClass(ch, s))
	if len(ch.RequiresApprovalFrom) > 0 {
		fmt.Fprintf(w, "  requires approval from: %s\n", strings.Join(ch.RequiresApprovalFrom, ", "))
	}
	fmt.Fprintf(w, "  plan.created entry %d", res.Ref.EntryIndex)
	if res.Ref.PolicyDecisionSHA256 != "" {
		fmt.Fprintf(w, ", policy decision sha256 %s", res.Ref.PolicyDecisionSHA256)
	}
	fmt.Fprintf(w, "\n  redacted plan: %s %s\n", res.Ref.RedactedPlanArtifact, redactedURI)
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// engineError adds the tail of the engine's output (which masks sensitive
// values) to an error, since terraform-exec's error often says only the
// exit status.
func engineError(err error, log *bytes.Buffer) error {
	out := strings.TrimSpace(log.String())
	if out == "" {
		return err
	}
	if len(out) > 2000 {
		out = "…" + out[len(out)-2000:]
	}
	return fmt.Errorf("%w\n%s", err, out)
}
