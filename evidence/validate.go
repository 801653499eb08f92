package evidence

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
)

// MaxDepth is the deepest JSON nesting a statement may have. The deepest
// legitimate path (predicate.sync.ignoreDifferences[].jsonPointers[]) is 5.
const MaxDepth = 16

// FieldError names one invalid field by its JSON path.
type FieldError struct {
	Field  string `json:"field"` // e.g. "predicate.approval.planSha256"
	Reason string `json:"reason"`
}

func (e FieldError) Error() string { return e.Field + ": " + e.Reason }

// ValidationError lists every problem found in a statement.
type ValidationError struct {
	Problems []FieldError
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return "invalid record: " + strings.Join(msgs, "; ")
}

// ErrMalformed is wrapped by every error about a payload that is not a
// well-formed statement (as opposed to a well-formed one with invalid fields).
var ErrMalformed = errors.New("malformed statement")

// Decode parses a DSSE payload into a Statement and validates it. Unknown
// fields, duplicate names, invalid UTF-8, trailing data and nesting deeper
// than MaxDepth are refused. Errors wrap ErrMalformed or are a
// *ValidationError.
func Decode(payload []byte) (*Statement, error) {
	if err := CheckDepth(payload, MaxDepth); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var st Statement
	if err := json.Unmarshal(payload, &st, json.RejectUnknownMembers(true)); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrMalformed, DescribeJSONError(err))
	}
	if err := st.Validate(); err != nil {
		return nil, err
	}
	return &st, nil
}

// DescribeJSONError turns a JSON decoding error into a message that names the
// field by its dotted path ("predicate.occurredAt") rather than by Go types.
func DescribeJSONError(err error) string {
	var semErr *json.SemanticError
	if errors.As(err, &semErr) && semErr.JSONPointer != "" {
		field := strings.ReplaceAll(strings.TrimPrefix(string(semErr.JSONPointer), "/"), "/", ".")
		switch {
		case semErr.Err != nil && strings.Contains(semErr.Err.Error(), "unknown object member"):
			return field + ": unknown field"
		case semErr.JSONKind != 0:
			return fmt.Sprintf("%s: wrong type (JSON %s)", field, semErr.JSONKind)
		}
		return field + ": " + strings.TrimPrefix(err.Error(), "json: ")
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "truncated JSON: " + strings.TrimPrefix(err.Error(), "jsontext: ")
	}
	msg := err.Error()
	for _, p := range []string{"json: ", "jsontext: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return "invalid JSON: " + msg
}

// CheckDepth refuses JSON nested deeper than max, before any decoder
// recurses. It skips string contents in bulk: records are mostly strings.
func CheckDepth(b []byte, max int) error {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			// Find the closing quote, stepping over escapes.
			for i++; i < len(b); i++ {
				j := bytes.IndexAny(b[i:], `"\`)
				if j < 0 {
					return nil // unterminated: the decoder reports it
				}
				i += j
				if b[i] == '"' {
					break
				}
				i++ // skip the escaped character
			}
		case '{', '[':
			depth++
			if depth > max {
				return fmt.Errorf("JSON nested deeper than %d levels at byte %d", max, i)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

var (
	hexSHA256   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	commitRe    = regexp.MustCompile(`^[0-9a-f]{7,64}$`)
	labelRe     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$`)
	digestRe    = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	ruleIDRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$`)
	digestAlgRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$`)
)

// problems collects field errors while walking a statement.
type problems []FieldError

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

func (p *problems) text(field, v string, required bool, max int) {
	switch {
	case v == "" && required:
		p.add(field, "required")
	case len(v) > max:
		p.add(field, "longer than %d bytes", max)
	case !utf8.ValidString(v):
		p.add(field, "not valid UTF-8")
	case strings.ContainsFunc(v, isControl):
		p.add(field, "contains control characters")
	}
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func (p *problems) label(field, v string, required bool) {
	switch {
	case v == "" && required:
		p.add(field, "required")
	case v != "" && !labelRe.MatchString(v):
		p.add(field, "must be 1-128 characters of letters, digits, '.', '_', '/' or '-'")
	}
}

func (p *problems) match(field, v string, re *regexp.Regexp, required bool, what string) {
	switch {
	case v == "" && required:
		p.add(field, "required")
	case v != "" && !re.MatchString(v):
		p.add(field, "must be %s", what)
	}
}

func (p *problems) sha256(field, v string, required bool) {
	p.match(field, v, hexSHA256, required, "64 lowercase hex characters (SHA-256)")
}

func (p *problems) oneOf(field, v string, required bool, allowed ...string) {
	if v == "" {
		if required {
			p.add(field, "required (one of %s)", strings.Join(allowed, ", "))
		}
		return
	}
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	p.add(field, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
}

func (p *problems) time(field string, t time.Time, required bool) {
	if t.IsZero() && required {
		p.add(field, "required (RFC 3339 time)")
	}
}

func (p *problems) list(field string, vs []string, required bool, max int) {
	if len(vs) == 0 && required {
		p.add(field, "required (non-empty list)")
	}
	for i, v := range vs {
		p.text(fmt.Sprintf("%s[%d]", field, i), v, true, max)
	}
}

// Validate checks a statement against the transition schema and returns a
// *ValidationError naming every invalid field, or nil.
func (s *Statement) Validate() error {
	var p problems
	if s.Type != StatementType {
		p.add("_type", "must be %q", StatementType)
	}
	if s.PredicateType != PredicateType {
		p.add("predicateType", "must be %q", PredicateType)
	}
	if len(s.Subject) == 0 {
		p.add("subject", "required (at least one artifact with a digest)")
	}
	for i, sub := range s.Subject {
		f := fmt.Sprintf("subject[%d]", i)
		p.text(f+".name", sub.Name, false, 1024)
		if len(sub.Digest) == 0 {
			p.add(f+".digest", "required (at least one algorithm)")
		}
		for alg, d := range sub.Digest {
			if !digestAlgRe.MatchString(alg) || d == "" || len(d) > 256 {
				p.add(f+".digest."+alg, "must map an algorithm name (such as sha256 or gitCommit) to a non-empty digest")
			}
		}
	}
	s.Predicate.validate(&p)
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

func (t *Transition) validate(p *problems) {
	const f = "predicate."
	block, known := t.Kind.Block()
	if !known {
		if t.Kind == "" {
			p.add(f+"kind", "required")
		} else {
			p.add(f+"kind", "unknown kind %q", t.Kind)
		}
	}
	p.text(f+"changeId", t.ChangeID, true, 128)
	p.time(f+"occurredAt", t.OccurredAt, true)
	p.text(f+"actor", t.Actor, true, 256)

	src := t.Source
	p.text(f+"source.repository", src.Repository, known && t.Kind.needsSource(), 512)
	p.match(f+"source.commitSha", src.CommitSHA, commitRe, known && t.Kind.needsSource(), "7-64 lowercase hex characters")
	p.text(f+"source.branch", src.Branch, false, 256)
	if src.PullRequest < 0 {
		p.add(f+"source.pullRequest", "must not be negative")
	}

	tg := t.Target
	p.label(f+"target.environment", tg.Environment, known && !t.Kind.LogWide())
	for _, field := range [...]struct{ name, v string }{
		{"cloud", tg.Cloud}, {"account", tg.Account}, {"region", tg.Region}, {"stack", tg.Stack},
		{"cluster", tg.Cluster}, {"namespace", tg.Namespace}, {"application", tg.Application},
		{"service", tg.Service}, {"dataClass", tg.DataClass},
	} {
		p.label(f+"target."+field.name, field.v, false)
	}
	p.oneOf(f+"riskClass", t.RiskClass, false, "low", "medium", "high", "critical")
	for i, a := range t.Artifacts {
		af := fmt.Sprintf("%sartifacts[%d]", f, i)
		p.text(af+".name", a.Name, true, 256)
		p.match(af+".digest", a.Digest, digestRe, true, `"sha256:" followed by 64 lowercase hex characters`)
		p.text(af+".uri", a.URI, false, 2048)
		p.text(af+".mediaType", a.MediaType, false, 256)
	}
	t.validateBlocks(p, block)
}

// validateBlocks requires exactly the block that belongs to the kind.
func (t *Transition) validateBlocks(p *problems, want string) {
	const f = "predicate."
	found := false
	for _, b := range [...]struct {
		name    string
		present bool
	}{
		{"change", t.Change != nil}, {"plan", t.Plan != nil}, {"policy", t.Policy != nil},
		{"approval", t.Approval != nil}, {"gate", t.Gate != nil}, {"apply", t.Apply != nil},
		{"verification", t.Verification != nil}, {"sync", t.Sync != nil}, {"health", t.Health != nil},
		{"drift", t.Drift != nil}, {"rollout", t.Rollout != nil},
		{"artifactAdmission", t.ArtifactAdmission != nil}, {"exception", t.Exception != nil},
		{"breakglass", t.Breakglass != nil}, {"lock", t.Lock != nil}, {"trust", t.Trust != nil},
		{"bootstrap", t.Bootstrap != nil},
	} {
		switch {
		case b.present && b.name == want:
			found = true
		case b.present && want != "":
			p.add(f+b.name, "not allowed on a %s record (it carries %q)", t.Kind, want)
		}
	}
	if want != "" && !found {
		p.add(f+want, "required for kind %s", t.Kind)
		return
	}
	switch want {
	case "change":
		c := t.Change
		p.text(f+"change.author", c.Author, true, 256)
		p.text(f+"change.title", c.Title, false, 1024)
		p.text(f+"change.targetBranch", c.TargetBranch, false, 256)
		p.oneOf(f+"change.mutationType", c.MutationType, false, "create", "update", "delete", "replace", "mixed")
		p.list(f+"change.requiresApprovalFrom", c.RequiresApprovalFrom, false, 128)
		p.list(f+"change.evidenceRequired", c.EvidenceRequired, false, 128)
	case "plan":
		pl := t.Plan
		p.sha256(f+"plan.planSha256", pl.PlanSHA256, true)
		p.oneOf(f+"plan.engine", pl.Engine, false, "opentofu", "terraform")
		a := pl.Actions
		if a.Create < 0 || a.Update < 0 || a.Delete < 0 || a.Replace < 0 {
			p.add(f+"plan.actions", "counts must not be negative")
		}
		p.list(f+"plan.highRiskResources", pl.HighRiskResources, false, 512)
		p.list(f+"plan.replacement", pl.Replacement, false, 512)
		p.list(f+"plan.sensitiveChanges", pl.SensitiveChanges, false, 512)
		for i, rc := range pl.ResourceChanges {
			rf := fmt.Sprintf("%splan.resourceChanges[%d]", f, i)
			p.text(rf+".address", rc.Address, true, 512)
			p.text(rf+".type", rc.Type, true, 256)
			if len(rc.Actions) == 0 {
				p.add(rf+".actions", "required (non-empty list)")
			}
			for j, act := range rc.Actions {
				p.oneOf(fmt.Sprintf("%s.actions[%d]", rf, j), act, true, "no-op", "create", "read", "update", "delete")
			}
		}
	case "policy":
		po := t.Policy
		p.oneOf(f+"policy.result", po.Result, true, "allow", "deny", "warn")
		p.sha256(f+"policy.bundleSha256", po.BundleSHA256, false)
		for i, d := range po.Decisions {
			df := fmt.Sprintf("%spolicy.decisions[%d]", f, i)
			p.oneOf(df+".result", d.Result, true, "allow", "deny", "warn")
			p.oneOf(df+".severity", d.Severity, false, "info", "low", "medium", "high", "critical")
			p.match(df+".ruleId", d.RuleID, ruleIDRe, true, "a rule identifier such as iac.prod.database.replacement")
			p.text(df+".message", d.Message, false, 2048)
			p.list(df+".requiredApprovers", d.RequiredApprovers, false, 128)
			p.list(df+".evidence", d.Evidence, false, 512)
			p.text(df+".exceptionId", d.ExceptionID, false, 128)
		}
	case "approval":
		ap := t.Approval
		p.match(f+"approval.commitSha", ap.CommitSHA, commitRe, true, "7-64 lowercase hex characters")
		p.sha256(f+"approval.planSha256", ap.PlanSHA256, true)
		p.sha256(f+"approval.policyDecisionSha256", ap.PolicyDecisionSHA256, false)
		p.text(f+"approval.approver", ap.Approver, true, 256)
		p.list(f+"approval.groups", ap.Groups, false, 128)
		p.time(f+"approval.approvedAt", ap.ApprovedAt, true)
		if t.Kind == KindApprovalGranted {
			p.time(f+"approval.expiresAt", ap.ExpiresAt, true)
			if !ap.ExpiresAt.IsZero() && !ap.ExpiresAt.After(ap.ApprovedAt) {
				p.add(f+"approval.expiresAt", "must be after approvedAt")
			}
		}
		p.text(f+"approval.reason", ap.Reason, t.Kind == KindApprovalRevoked, 2048)
	case "gate":
		p.oneOf(f+"gate.decision", t.Gate.Decision, true, "allow", "deny")
		p.sha256(f+"gate.planSha256", t.Gate.PlanSHA256, false)
		p.list(f+"gate.reasons", t.Gate.Reasons, false, 1024)
	case "apply":
		ap := t.Apply
		p.sha256(f+"apply.planSha256", ap.PlanSHA256, true)
		p.oneOf(f+"apply.engine", ap.Engine, false, "opentofu", "terraform")
		p.list(f+"apply.resourcesChanged", ap.ResourcesChanged, false, 512)
		p.text(f+"apply.error", ap.Error, t.Kind == KindApplyFailed, 4096)
		p.sha256(f+"apply.logSha256", ap.LogSHA256, false)
	case "verification":
		v := t.Verification
		p.oneOf(f+"verification.result", v.Result, true, "pass", "fail", "drift")
		p.text(f+"verification.method", v.Method, false, 256)
		p.list(f+"verification.checks", v.Checks, false, 1024)
	case "sync":
		s := t.Sync
		p.text(f+"sync.revision", s.Revision, true, 256)
		p.text(f+"sync.application", s.Application, false, 256)
		p.text(f+"sync.sourceRepo", s.SourceRepo, false, 512)
		p.text(f+"sync.sourcePath", s.SourcePath, false, 512)
		p.text(f+"sync.initiatedBy", s.InitiatedBy, false, 256)
		p.text(f+"sync.message", s.Message, false, 4096)
		p.text(f+"sync.operation", s.Operation, false, 128)
		for i, o := range s.Resources {
			of := fmt.Sprintf("%ssync.resources[%d]", f, i)
			p.text(of+".kind", o.Kind, true, 128)
			p.text(of+".name", o.Name, true, 253)
		}
		p.list(f+"sync.pruned", s.Pruned, false, 512)
		for i, ig := range s.Ignored {
			p.text(fmt.Sprintf("%ssync.ignoreDifferences[%d].kind", f, i), ig.Kind, true, 128)
		}
	case "health":
		p.oneOf(f+"health.status", t.Health.Status, true, "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")
		p.text(f+"health.message", t.Health.Message, false, 4096)
	case "drift":
		d := t.Drift
		p.list(f+"drift.resources", d.Resources, true, 512)
		p.text(f+"drift.detectedBy", d.DetectedBy, false, 256)
		p.oneOf(f+"drift.method", d.Method, t.Kind == KindDriftReconciled, "revert", "import", "accept")
		p.text(f+"drift.summary", d.Summary, false, 4096)
	case "rollout":
		r := t.Rollout
		p.text(f+"rollout.revision", r.Revision, true, 256)
		p.text(f+"rollout.strategy", r.Strategy, false, 64)
		p.match(f+"rollout.imageDigest", r.ImageDigest, digestRe, false, `"sha256:" followed by 64 lowercase hex characters`)
		for i, a := range r.Analysis {
			af := fmt.Sprintf("%srollout.analysis[%d]", f, i)
			p.text(af+".metric", a.Metric, true, 256)
			p.oneOf(af+".result", a.Result, true, "successful", "failed", "inconclusive", "error")
		}
		p.text(f+"rollout.abortReason", r.AbortReason, t.Kind == KindRolloutAborted, 4096)
	case "artifactAdmission":
		a := t.ArtifactAdmission
		p.text(f+"artifactAdmission.image", a.Image, true, 1024)
		p.match(f+"artifactAdmission.digest", a.Digest, digestRe, true, `"sha256:" followed by 64 lowercase hex characters`)
		p.text(f+"artifactAdmission.signerIdentity", a.SignerIdentity, false, 512)
		p.text(f+"artifactAdmission.sourceBranch", a.SourceBranch, false, 256)
		p.oneOf(f+"artifactAdmission.result", a.Result, true, "admitted", "denied")
	case "exception":
		e := t.Exception
		granted := t.Kind == KindExceptionGranted
		p.text(f+"exception.id", e.ID, true, 128)
		p.match(f+"exception.ruleId", e.RuleID, ruleIDRe, granted, "a rule identifier")
		p.text(f+"exception.scope", e.Scope, granted, 1024)
		p.text(f+"exception.justification", e.Justification, granted, 4096)
		p.text(f+"exception.owner", e.Owner, granted, 256)
		p.list(f+"exception.approvedBy", e.ApprovedBy, granted, 256)
		p.list(f+"exception.compensatingControls", e.CompensatingControls, false, 1024)
		p.time(f+"exception.expiresAt", e.ExpiresAt, granted)
	case "breakglass":
		b := t.Breakglass
		p.text(f+"breakglass.incident", b.Incident, true, 128)
		p.text(f+"breakglass.reason", b.Reason, t.Kind == KindBreakglassOpened, 4096)
		p.list(f+"breakglass.approvedBy", b.ApprovedBy, false, 256)
		p.text(f+"breakglass.reviewedBy", b.ReviewedBy, false, 256)
	case "lock":
		p.text(f+"lock.incident", t.Lock.Incident, true, 128)
		p.text(f+"lock.lockId", t.Lock.LockID, true, 256)
		p.text(f+"lock.heldBy", t.Lock.HeldBy, false, 256)
	case "trust":
		p.sha256(f+"trust.digest", t.Trust.Digest, true)
		p.text(f+"trust.description", t.Trust.Description, false, 4096)
	case "bootstrap":
		b := t.Bootstrap
		p.text(f+"bootstrap.operator", b.Operator, true, 256)
		p.text(f+"bootstrap.logOrigin", b.LogOrigin, true, 256)
		p.text(f+"bootstrap.logKey", b.LogKey, true, 512)
		p.sha256(f+"bootstrap.trustDigest", b.TrustDigest, true)
		if len(b.Trust) == 0 {
			p.add(f+"bootstrap.trust", "required")
		}
	}
}
