// Package evidence defines the transition record: an in-toto Statement v1
// (https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md) whose
// predicate, of type https://evident.dev/transition/v1, carries one state
// transition of an infrastructure or deployment change, with the change contract
// fields and one kind-specific block.
//
// The JSON Schema of the statement is schema/transition.v1.schema.json; every
// kind is documented with an example in docs/kinds.md.
//
// The package knows nothing of signatures, storage or transport.
package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Identifiers of the record format.
const (
	// PayloadType is the DSSE payloadType of every record.
	PayloadType = "application/vnd.in-toto+json"
	// StatementType is the in-toto Statement v1 _type.
	StatementType = "https://in-toto.io/Statement/v1"
	// PredicateType identifies Evident's transition predicate.
	PredicateType = "https://evident.dev/transition/v1"
)

// Statement is an in-toto Statement v1 carrying a Transition.
type Statement struct {
	Type          string     `json:"_type"`
	Subject       []Subject  `json:"subject"`
	PredicateType string     `json:"predicateType"`
	Predicate     Transition `json:"predicate"`
}

// Subject is an artifact the transition is about: a plan file, an image, a commit.
type Subject struct {
	Name   string            `json:"name,omitempty"`
	Digest map[string]string `json:"digest"`
}

// Transition is the predicate: the change contract plus one kind-specific block.
type Transition struct {
	Kind       Kind       `json:"kind"`
	ChangeID   string     `json:"changeId"`
	OccurredAt time.Time  `json:"occurredAt"`
	Actor      string     `json:"actor"`
	Source     Source     `json:"source,omitzero"`
	Target     Target     `json:"target,omitzero"`
	RiskClass  string     `json:"riskClass,omitempty"`
	Emergency  bool       `json:"emergency,omitempty"`
	Artifacts  []Artifact `json:"artifacts,omitempty"`
	// LogOrigin, when set, is the origin of the one log the record is meant
	// for: a log refuses a record naming another origin, so a signed record
	// cannot be replayed into another log (docs/keys.md).
	LogOrigin string `json:"logOrigin,omitempty"`

	Change            *Change            `json:"change,omitempty"`
	Plan              *Plan              `json:"plan,omitempty"`
	Policy            *Policy            `json:"policy,omitempty"`
	Approval          *Approval          `json:"approval,omitempty"`
	Gate              *Gate              `json:"gate,omitempty"`
	Apply             *Apply             `json:"apply,omitempty"`
	Verification      *Verification      `json:"verification,omitempty"`
	Sync              *Sync              `json:"sync,omitempty"`
	Health            *Health            `json:"health,omitempty"`
	Drift             *Drift             `json:"drift,omitempty"`
	Rollout           *Rollout           `json:"rollout,omitempty"`
	ArtifactAdmission *ArtifactAdmission `json:"artifactAdmission,omitempty"`
	Exception         *Exception         `json:"exception,omitempty"`
	Breakglass        *Breakglass        `json:"breakglass,omitempty"`
	Lock              *Lock              `json:"lock,omitempty"`
	Trust             *Trust             `json:"trust,omitempty"`
	Bootstrap         *Bootstrap         `json:"bootstrap,omitempty"`
	Anchor            *Anchor            `json:"anchor,omitempty"`
}

// Source is the Git ledger: what was wanted.
type Source struct {
	Repository  string `json:"repository,omitempty"`
	PullRequest int    `json:"pullRequest,omitempty"`
	CommitSHA   string `json:"commitSha,omitempty"`
	Branch      string `json:"branch,omitempty"`
}

// Target is where the change lands.
type Target struct {
	Environment string `json:"environment,omitempty"`
	Cloud       string `json:"cloud,omitempty"`
	Account     string `json:"account,omitempty"`
	Region      string `json:"region,omitempty"`
	Stack       string `json:"stack,omitempty"`
	Cluster     string `json:"cluster,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Application string `json:"application,omitempty"`
	Service     string `json:"service,omitempty"`
	DataClass   string `json:"dataClass,omitempty"`
}

// Artifact is restricted evidence kept outside the log, named by digest.
type Artifact struct {
	Name      string `json:"name"`
	Digest    string `json:"digest"` // "sha256:<64 hex>"
	URI       string `json:"uri,omitempty"`
	MediaType string `json:"mediaType,omitempty"`
}

// Change is the machine-readable change contract.
type Change struct {
	Title                string   `json:"title,omitempty"`
	Author               string   `json:"author"`
	TargetBranch         string   `json:"targetBranch,omitempty"`
	MutationType         string   `json:"mutationType,omitempty"`
	RequiresApprovalFrom []string `json:"requiresApprovalFrom,omitempty"`
	EvidenceRequired     []string `json:"evidenceRequired,omitempty"`
}

// Plan is the plan stage's risk summary.
type Plan struct {
	PlanSHA256             string           `json:"planSha256"`
	Engine                 string           `json:"engine,omitempty"`
	EngineVersion          string           `json:"engineVersion,omitempty"`
	Stack                  string           `json:"stack,omitempty"`
	Actions                ActionCounts     `json:"actions"`
	HighRiskResources      []string         `json:"highRiskResources,omitempty"`
	Destructive            bool             `json:"destructive"`
	Replacement            []string         `json:"replacement,omitempty"`
	SensitiveChanges       []string         `json:"sensitiveChanges,omitempty"`
	RequiresManualApproval bool             `json:"requiresManualApproval"`
	ResourceChanges        []ResourceChange `json:"resourceChanges,omitempty"`
}

// ActionCounts counts the plan's actions by type.
type ActionCounts struct {
	Create  int `json:"create"`
	Update  int `json:"update"`
	Delete  int `json:"delete"`
	Replace int `json:"replace"`
}

// ResourceChange is one resource the plan changes.
type ResourceChange struct {
	Address string   `json:"address"`
	Type    string   `json:"type"`
	Actions []string `json:"actions"`
	// Attributes are planned values of non-sensitive attributes the
	// policies read, such as an IAM policy document or a bucket ACL; values
	// that are not strings are JSON text. Runners leave sensitive values out.
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Policy is a structured policy evaluation (docs/policies.md).
type Policy struct {
	Result       string     `json:"result"`
	BundleSHA256 string     `json:"bundleSha256,omitempty"`
	Decisions    []Decision `json:"decisions,omitempty"` // Decode reads null, which older clients wrote, as absent
}

// Decision is one rule's verdict.
type Decision struct {
	Result            string   `json:"result"`
	Severity          string   `json:"severity,omitempty"`
	RuleID            string   `json:"ruleId"`
	Message           string   `json:"message,omitempty"`
	RequiredApprovers []string `json:"requiredApprovers,omitempty"`
	Evidence          []string `json:"evidence,omitempty"`
	ExceptionID       string   `json:"exceptionId,omitempty"`
}

// Approval binds an approver to one exact change (docs/approvals.md).
type Approval struct {
	PullRequest          int       `json:"pullRequest,omitempty"`
	CommitSHA            string    `json:"commitSha"`
	PlanSHA256           string    `json:"planSha256"`
	PolicyDecisionSHA256 string    `json:"policyDecisionSha256,omitempty"`
	Approver             string    `json:"approver"`
	Groups               []string  `json:"groups,omitempty"`
	ApprovedAt           time.Time `json:"approvedAt"`
	ExpiresAt            time.Time `json:"expiresAt,omitzero"`
	Reason               string    `json:"reason,omitempty"`
}

// Gate is the apply gate's answer.
type Gate struct {
	Decision   string   `json:"decision"`
	PlanSHA256 string   `json:"planSha256,omitempty"`
	Reasons    []string `json:"reasons,omitempty"`
}

// Apply reports an apply of one exact plan file.
type Apply struct {
	PlanSHA256       string    `json:"planSha256"`
	Engine           string    `json:"engine,omitempty"`
	StartedAt        time.Time `json:"startedAt,omitzero"`
	CompletedAt      time.Time `json:"completedAt,omitzero"`
	ResourcesChanged []string  `json:"resourcesChanged,omitempty"`
	// ResourcesFailed are the resources whose change failed: with
	// ResourcesChanged, what a partial apply left behind.
	ResourcesFailed []string `json:"resourcesFailed,omitempty"`
	Error           string   `json:"error,omitempty"`
	LogSHA256       string   `json:"logSha256,omitempty"`
}

// Verification is the post-apply check.
type Verification struct {
	Result   string   `json:"result"`
	Method   string   `json:"method,omitempty"`
	ExitCode int      `json:"exitCode,omitempty"`
	Checks   []string `json:"checks,omitempty"`
}

// Sync is a GitOps reconciliation (docs/gitops.md).
type Sync struct {
	Application string          `json:"application,omitempty"`
	Revision    string          `json:"revision"`
	SourceRepo  string          `json:"sourceRepo,omitempty"`
	SourcePath  string          `json:"sourcePath,omitempty"`
	InitiatedBy string          `json:"initiatedBy,omitempty"`
	Policy      *SyncPolicy     `json:"syncPolicy,omitempty"`
	Resources   []SyncedObject  `json:"resources,omitempty"`
	Pruned      []string        `json:"pruned,omitempty"`
	Message     string          `json:"message,omitempty"`
	Operation   string          `json:"operation,omitempty"`
	Ignored     []IgnoredChange `json:"ignoreDifferences,omitempty"`
	// Controller is the controller identity that reconciled, e.g.
	// "argocd/argocd-application-controller" or "flux/kustomize-controller".
	Controller string     `json:"controller,omitempty"`
	Boundary   *Boundary  `json:"boundary,omitempty"`
	Object     *ObjectRef `json:"object,omitempty"`
}

// Boundary is the tenant boundary a GitOps-managed object is confined to:
// its Argo CD AppProject, or a Flux object's namespace and service account.
type Boundary struct {
	Project        string   `json:"project,omitempty"`
	ServiceAccount string   `json:"serviceAccount,omitempty"`
	SourceRepos    []string `json:"sourceRepos,omitempty"`
	// Destinations are "server-or-name/namespace" pairs the project may deploy to.
	Destinations []string `json:"destinations,omitempty"`
	// ClusterResources are the "group/kind" the project may create at cluster scope.
	ClusterResources []string `json:"clusterResources,omitempty"`
}

// ObjectRef names the Kubernetes object a GitOps record was derived from and
// the spec generation observed, so the evidence captures the object's
// revision. The resourceVersion is left out on purpose: it changes on
// every status write, and records must be re-derived byte for byte.
type ObjectRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	UID        string `json:"uid,omitempty"`
	Generation int64  `json:"generation,omitempty"`
}

// SyncPolicy is the controls in force on a GitOps-managed object.
type SyncPolicy struct {
	Automated bool `json:"automated"`
	Prune     bool `json:"prune"`
	SelfHeal  bool `json:"selfHeal"`
}

// SyncedObject is one Kubernetes object a sync touched.
type SyncedObject struct {
	Group     string `json:"group,omitempty"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Status    string `json:"status,omitempty"`
	// ServiceType is a core Service's spec.type (ClusterIP, NodePort,
	// LoadBalancer, ExternalName), read from the cluster by the watcher:
	// a LoadBalancer Service exposes the workload, a ClusterIP one does
	// not, and the sync result alone cannot tell them apart.
	ServiceType string `json:"serviceType,omitempty"`
}

// IgnoredChange is a difference the GitOps controller is told to ignore.
type IgnoredChange struct {
	Group        string   `json:"group,omitempty"`
	Kind         string   `json:"kind"`
	JSONPointers []string `json:"jsonPointers,omitempty"`
}

// Health is an application's health change.
type Health struct {
	Status  string     `json:"status"`
	Message string     `json:"message,omitempty"`
	Object  *ObjectRef `json:"object,omitempty"`
}

// Drift is a difference between desired and live state and its reconciliation.
type Drift struct {
	Resources  []string   `json:"resources"`
	DetectedBy string     `json:"detectedBy,omitempty"`
	Method     string     `json:"method,omitempty"` // revert, import, accept
	Summary    string     `json:"summary,omitempty"`
	Revision   string     `json:"revision,omitempty"` // the desired revision the live state differs from
	Object     *ObjectRef `json:"object,omitempty"`
}

// Rollout is a progressive-delivery step.
type Rollout struct {
	Revision    string           `json:"revision"`
	Strategy    string           `json:"strategy,omitempty"`
	ImageDigest string           `json:"imageDigest,omitempty"`
	Analysis    []AnalysisResult `json:"analysis,omitempty"`
	AbortReason string           `json:"abortReason,omitempty"`
	// ServiceVersion is the version serving when the step ended: the
	// promoted image, or the stable one an abort fell back to.
	ServiceVersion string     `json:"serviceVersion,omitempty"`
	PromotedAt     time.Time  `json:"promotedAt,omitzero"`
	AnalysisRun    string     `json:"analysisRun,omitempty"`
	Object         *ObjectRef `json:"object,omitempty"`
}

// AnalysisResult is one metric check of a rollout analysis.
type AnalysisResult struct {
	Template string `json:"template,omitempty"`
	Metric   string `json:"metric"`
	Query    string `json:"query,omitempty"`
	Result   string `json:"result"`
	Value    string `json:"value,omitempty"` // the measured value, as the provider returned it
}

// ArtifactAdmission is a supply-chain gate's verdict on an artifact
// (docs/approvals.md).
type ArtifactAdmission struct {
	Image           string `json:"image"`
	Digest          string `json:"digest"`
	Signed          bool   `json:"signed"`
	SignerIdentity  string `json:"signerIdentity,omitempty"`
	SourceBranch    string `json:"sourceBranch,omitempty"`
	ProtectedBranch bool   `json:"protectedBranch"`
	SBOMDigest      string `json:"sbomDigest,omitempty"`
	Provenance      string `json:"provenance,omitempty"`
	Result          string `json:"result"`
	// SignatureBundle is the image's Sigstore signature bundle (JSON, as
	// cosign or sigstore-go write it) over the image digest; the verifier
	// checks it and the expected signer of the source repository.
	SignatureBundle json.RawMessage `json:"signatureBundle,omitempty"`
	// ProvenanceBundle is the Sigstore bundle of the image's SLSA
	// provenance attestation (a DSSE in-toto statement about the digest).
	ProvenanceBundle json.RawMessage `json:"provenanceBundle,omitempty"`
}

// Exception is a time-bound waiver of one rule (docs/policies.md).
type Exception struct {
	ID                   string    `json:"id"`
	RuleID               string    `json:"ruleId,omitempty"`
	Scope                string    `json:"scope,omitempty"`
	Justification        string    `json:"justification,omitempty"`
	CompensatingControls []string  `json:"compensatingControls,omitempty"`
	Owner                string    `json:"owner,omitempty"`
	ApprovedBy           []string  `json:"approvedBy,omitempty"`
	ExpiresAt            time.Time `json:"expiresAt,omitzero"`
}

// Breakglass is an emergency access path, opened and closed with review.
type Breakglass struct {
	Incident   string    `json:"incident"`
	Reason     string    `json:"reason,omitempty"`
	ApprovedBy []string  `json:"approvedBy,omitempty"`
	ExpiresAt  time.Time `json:"expiresAt,omitzero"`
	ReviewedBy string    `json:"reviewedBy,omitempty"`
}

// Lock is a forced state unlock.
type Lock struct {
	Incident string `json:"incident"`
	LockID   string `json:"lockId"`
	HeldBy   string `json:"heldBy,omitempty"`
}

// Trust is a change of the log's trust configuration.
type Trust struct {
	Digest      string          `json:"digest"`
	Description string          `json:"description,omitempty"`
	Config      json.RawMessage `json:"config,omitempty"` // the new trust configuration, a JSON object; required unless LogKey is set
	// Policies is the active policy set from this entry on, when the server
	// judges records with policies: the bundleSha256 its decisions carry.
	Policies *PolicySet `json:"policies,omitempty"`
	// LogKey, set when the entry rotates the log key, is the note verifier
	// key (name+hash+key) that signs the log's checkpoints and own records
	// from this entry on. The entry itself is signed by the key it replaces,
	// and the first checkpoint after it by both keys (docs/keys.md).
	LogKey string `json:"logKey,omitempty"`
}

// PolicySet is the policy set that decides: its digest and the files it
// is made of, so that an auditor can recompute the digest from the files.
type PolicySet struct {
	// BundleSHA256 is the hex SHA-256 of the lines "<file sha256>  <path>\n"
	// of Modules, in the order listed (sorted by path): sha256sum's output.
	BundleSHA256 string         `json:"bundleSha256"`
	Modules      []PolicyModule `json:"modules,omitempty"`
}

// PolicyModule is one file of a policy set: a Rego module or a data document.
type PolicyModule struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// Bootstrap is the genesis entry: the log's first record.
type Bootstrap struct {
	Operator    string            `json:"operator"`
	LogOrigin   string            `json:"logOrigin"`
	LogKey      string            `json:"logKey"`
	TrustDigest string            `json:"trustDigest"`
	Trust       json.RawMessage   `json:"trust"` // the initial trust configuration, a JSON object; trustDigest is its SHA-256
	Versions    map[string]string `json:"versions,omitempty"`
	// Policies is the policy set active from the genesis on, when the
	// server judges records with policies.
	Policies *PolicySet `json:"policies,omitempty"`
}

// Anchor records that one of the log's signed checkpoints was entered in an
// independent transparency log (Rekor) as a hashedrekord entry: the SHA-512
// of the checkpoint's note text, signed by the log key (Ed25519ph). Rewriting
// the log's history would then also need rewriting that log. The fields are
// Rekor's answer as Rekor signs and proves it, so an auditor re-checks them
// offline with Rekor's public key.
//
// A Rekor v1 anchor (Version 0, left out) spreads Rekor's answer over LogID
// to InclusionProof. A Rekor v2 anchor (Version 2) has no signed entry
// timestamp or integrated time, so those fields stay empty: it keeps
// Rekor's answer whole in TransparencyLogEntry, as a sigstore bundle does.
type Anchor struct {
	// Version is 2 for an entry in Rekor v2 (rekor-tiles); 0 (left out)
	// or 1 for Rekor v1.
	Version int `json:"version,omitempty"`
	// CheckpointSize and RootHash (hex SHA-256) are the anchored checkpoint
	// of this log: its note text is origin, size and base64 root, one a line.
	CheckpointSize uint64 `json:"checkpointSize"`
	RootHash       string `json:"rootHash"`
	// Rekor is the base URL the entry was submitted to (information only:
	// the LogID, or the Rekor v2 entry's log ID, names the Rekor log).
	Rekor string `json:"rekor,omitempty"`
	// LogID is the hex SHA-256 of Rekor's public key (PKIX DER). Rekor v1.
	LogID string `json:"logId,omitempty"`
	// LogIndex is the entry's index in Rekor (across its shards); for
	// Rekor v2, the TransparencyLogEntry's logIndex, repeated.
	LogIndex int64 `json:"logIndex"`
	// IntegratedTime is when Rekor integrated the entry, Unix seconds.
	// Rekor v1.
	IntegratedTime int64 `json:"integratedTime,omitempty"`
	// Body is the entry as Rekor stores it (base64 canonical JSON). Rekor v1.
	Body string `json:"body,omitempty"`
	// SignedEntryTimestamp is Rekor's signature (base64) over body,
	// integratedTime, logIndex and logID. Rekor v1.
	SignedEntryTimestamp string               `json:"signedEntryTimestamp,omitempty"`
	InclusionProof       *RekorInclusionProof `json:"inclusionProof,omitempty"` // Rekor v1
	// TransparencyLogEntry is Rekor v2's answer, a sigstore
	// TransparencyLogEntry in protobuf JSON: the entry (canonicalizedBody),
	// its logIndex and logId, and the inclusion proof up to Rekor's signed
	// checkpoint. Rekor v2.
	TransparencyLogEntry json.RawMessage `json:"transparencyLogEntry,omitempty"`
}

// RekorInclusionProof proves a Rekor entry is in Rekor's tree (RFC 6962).
type RekorInclusionProof struct {
	LogIndex int64    `json:"logIndex"` // in the tree of this shard
	TreeSize int64    `json:"treeSize"`
	RootHash string   `json:"rootHash"`         // hex SHA-256
	Hashes   []string `json:"hashes,omitempty"` // hex SHA-256 audit path
	// Checkpoint is Rekor's signed checkpoint note for TreeSize and RootHash.
	Checkpoint string `json:"checkpoint"`
}

// Digest is the hex SHA-256 of the decision's JSON encoding (fields in
// declaration order, no insignificant whitespace): the policyDecisionSha256
// an approval binds to. An auditor recomputes it from the entry's metadata.
func (p *Policy) Digest() string {
	b, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("evidence: encode policy decision: %v", err)) // plain strings and slices always encode
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// EscapeChangeID writes a change id as a URL path: each '/'-separated part
// path-escaped, so that ids the runner makes (infra-live#4812/prod/...)
// keep their '#' and their parts in links and routes.
func EscapeChangeID(id string) string {
	parts := strings.Split(id, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}
