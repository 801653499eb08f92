package evidence

import "slices"

// Kind names one state transition of a change. Kinds are extended, never renamed:
// a renamed kind would orphan every record already in a log.
type Kind string

// The transitions Evident records (DESIGN.md, "Records").
const (
	KindChangeOpened          Kind = "change.opened"
	KindPlanCreated           Kind = "plan.created"
	KindPolicyEvaluated       Kind = "policy.evaluated"
	KindApprovalGranted       Kind = "approval.granted"
	KindApprovalRevoked       Kind = "approval.revoked"
	KindGateDecided           Kind = "gate.decided"
	KindApplyStarted          Kind = "apply.started"
	KindApplyCompleted        Kind = "apply.completed"
	KindApplyFailed           Kind = "apply.failed"
	KindVerificationCompleted Kind = "verification.completed"
	KindSyncStarted           Kind = "sync.started"
	KindSyncSucceeded         Kind = "sync.succeeded"
	KindSyncFailed            Kind = "sync.failed"
	KindHealthDegraded        Kind = "health.degraded"
	KindDriftDetected         Kind = "drift.detected"
	KindDriftReconciled       Kind = "drift.reconciled"
	KindRolloutPromoted       Kind = "rollout.promoted"
	KindRolloutAborted        Kind = "rollout.aborted"
	KindArtifactAdmitted      Kind = "artifact.admitted"
	KindExceptionGranted      Kind = "exception.granted"
	KindExceptionExpired      Kind = "exception.expired"
	KindBreakglassOpened      Kind = "breakglass.opened"
	KindBreakglassClosed      Kind = "breakglass.closed"
	KindLockForced            Kind = "lock.forced"
	KindTrustUpdated          Kind = "trust.updated"
	KindBootstrap             Kind = "bootstrap"
	KindCheckpointAnchored    Kind = "checkpoint.anchored"
)

// Kinds returns every known kind in lifecycle order.
func Kinds() []Kind {
	return []Kind{
		KindChangeOpened, KindPlanCreated, KindPolicyEvaluated, KindApprovalGranted,
		KindApprovalRevoked, KindGateDecided, KindApplyStarted, KindApplyCompleted,
		KindApplyFailed, KindVerificationCompleted, KindSyncStarted, KindSyncSucceeded,
		KindSyncFailed, KindHealthDegraded, KindDriftDetected, KindDriftReconciled,
		KindRolloutPromoted, KindRolloutAborted, KindArtifactAdmitted, KindExceptionGranted,
		KindExceptionExpired, KindBreakglassOpened, KindBreakglassClosed, KindLockForced,
		KindTrustUpdated, KindBootstrap, KindCheckpointAnchored,
	}
}

// Ordinal is k's position in Kinds, or -1 for an unknown kind.
func (k Kind) Ordinal() int {
	return slices.Index(Kinds(), k)
}

// Block returns the JSON name of the kind-specific block a record of this kind
// carries, and false for an unknown kind.
func (k Kind) Block() (string, bool) {
	switch k {
	case KindChangeOpened:
		return "change", true
	case KindPlanCreated:
		return "plan", true
	case KindPolicyEvaluated:
		return "policy", true
	case KindApprovalGranted, KindApprovalRevoked:
		return "approval", true
	case KindGateDecided:
		return "gate", true
	case KindApplyStarted, KindApplyCompleted, KindApplyFailed:
		return "apply", true
	case KindVerificationCompleted:
		return "verification", true
	case KindSyncStarted, KindSyncSucceeded, KindSyncFailed:
		return "sync", true
	case KindHealthDegraded:
		return "health", true
	case KindDriftDetected, KindDriftReconciled:
		return "drift", true
	case KindRolloutPromoted, KindRolloutAborted:
		return "rollout", true
	case KindArtifactAdmitted:
		return "artifactAdmission", true
	case KindExceptionGranted, KindExceptionExpired:
		return "exception", true
	case KindBreakglassOpened, KindBreakglassClosed:
		return "breakglass", true
	case KindLockForced:
		return "lock", true
	case KindTrustUpdated:
		return "trust", true
	case KindBootstrap:
		return "bootstrap", true
	case KindCheckpointAnchored:
		return "anchor", true
	}
	return "", false
}

// LogWide reports whether records of this kind describe the log itself rather
// than a change to some environment, so they carry no target environment.
func (k Kind) LogWide() bool {
	return k == KindBootstrap || k == KindTrustUpdated || k == KindCheckpointAnchored
}

// LogWritten reports whether only the log itself writes records of this kind,
// signed with the log key: its genesis, trust changes, the anchors of its
// checkpoints in an outside transparency log, and the apply gate's
// decisions. The log key signs nothing else.
func (k Kind) LogWritten() bool {
	return k.LogWide() || k == KindGateDecided
}

// needsSource reports whether records of this kind must name the Git change
// they are about: the Git ledger is what binds plan, approval and apply.
func (k Kind) needsSource() bool {
	switch k {
	case KindChangeOpened, KindPlanCreated, KindApprovalGranted,
		KindApplyStarted, KindApplyCompleted, KindApplyFailed:
		return true
	}
	return false
}
