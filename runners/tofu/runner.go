// Package tofu is Evident's bundled OpenTofu/Terraform runner, built on
// hashicorp/terraform-exec: plan (with its risk summary and the change
// contract), gated apply of exactly the planned file, post-apply
// verification, drift detection, and a force-unlock that exists only with an
// incident reference. Every step posts a signed transition record through
// the client package; plan files, redacted plans and apply logs go to a
// content-addressed artifact store.
//
// The runner never prints or uploads a secret value: it prints counts and
// addresses, the plan JSON it uploads is redacted (see Redact), the engine's
// own output masks sensitive values, and a plan file that holds sensitive
// values is uploaded only encrypted by the engine (OpenTofu's plan
// encryption, keyed by Config.PlanPassphrase); without a passphrase such a
// plan is refused before anything is uploaded.
package tofu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/terraform-exec/tfexec"

	"evident.dev/evident/api"
	"evident.dev/evident/artifacts"
	"evident.dev/evident/evidence"
)

// Store is the artifact store as the runner needs it.
type Store interface {
	Put(ctx context.Context, r io.Reader) (artifacts.Ref, error)
	Get(ctx context.Context, digest string, max int64) ([]byte, error)
}

// Recorder signs and posts one transition record and returns the server's
// receipt. It must return only once the record is durable in the log (or
// fail), so the runner never mutates anything the log has not heard of.
type Recorder interface {
	Record(ctx context.Context, t evidence.Transition) (*api.Receipt, error)
}

// GateRequest asks the apply gate whether one exact plan of one change may
// be applied (POST /v1/gate/apply).
type GateRequest struct {
	ChangeID   string          `json:"changeId"`
	CommitSHA  string          `json:"commitSha"`
	PlanSHA256 string          `json:"planSha256"`
	Target     evidence.Target `json:"target"`
	Actor      string          `json:"actor"`
}

// GateDecision is the gate's answer.
type GateDecision struct {
	Decision          string   `json:"decision"` // allow or deny
	Reasons           []string `json:"reasons,omitempty"`
	RequiredApprovers []string `json:"requiredApprovers,omitempty"`
	// EntryIndex is the gate.decided entry that records the decision.
	EntryIndex uint64 `json:"entryIndex,omitempty"`
}

// Gate is the apply gate. An error means no decision was obtained, and the
// runner does not apply.
type Gate interface {
	AskGate(ctx context.Context, req GateRequest) (*GateDecision, error)
}

// Config wires a runner.
type Config struct {
	// Engine is the path of the tofu (or terraform) binary.
	Engine string
	// EngineName is "opentofu" (default) or "terraform", as records name it.
	EngineName string
	// Env is added to the engine's environment (which is otherwise the
	// process environment), e.g. TF_CLI_CONFIG_FILE.
	Env      map[string]string
	Store    Store
	Recorder Recorder
	Gate     Gate // needed by Apply only
	Catalog  *Catalog
	// PlanPassphrase, when set, makes OpenTofu encrypt plan files (at
	// least 16 characters). A plan holding sensitive values is refused
	// without it.
	PlanPassphrase string
	// LockTimeout is how long the engine waits for the state lock; zero
	// fails at once when the lock is held.
	LockTimeout time.Duration
	// MaxPlanBytes bounds a plan file fetched for apply. Default 256 MiB.
	MaxPlanBytes int64
	// Out receives the human-readable summaries (no values, ever).
	Out io.Writer
	// EngineOutput, if set, receives the engine's own output as it runs
	// (the engine masks sensitive values), apart from the summaries: a
	// long plan or apply shows progress instead of silence.
	EngineOutput io.Writer
	Logger       *slog.Logger
	// Clock is the time records carry; nil means time.Now.
	Clock func() time.Time
}

// Runner runs plan, apply, drift and force-unlock for stacks.
type Runner struct {
	cfg Config
}

// New checks the configuration and returns a runner.
func New(cfg Config) (*Runner, error) {
	if cfg.Engine == "" {
		return nil, errors.New("runner: the engine binary (tofu or terraform) is required")
	}
	if cfg.EngineName == "" {
		cfg.EngineName = "opentofu"
	}
	if cfg.EngineName != "opentofu" && cfg.EngineName != "terraform" {
		return nil, fmt.Errorf("runner: engine %q: want opentofu or terraform", cfg.EngineName)
	}
	if cfg.PlanPassphrase != "" && cfg.EngineName != "opentofu" {
		return nil, errors.New("runner: plan encryption needs OpenTofu")
	}
	if cfg.PlanPassphrase != "" && len(cfg.PlanPassphrase) < 16 {
		return nil, errors.New("runner: the plan passphrase must be at least 16 characters")
	}
	if cfg.Store == nil || cfg.Recorder == nil {
		return nil, errors.New("runner: an artifact store and a recorder are required")
	}
	if cfg.MaxPlanBytes <= 0 {
		cfg.MaxPlanBytes = 256 << 20
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Runner{cfg: cfg}, nil
}

func (r *Runner) now() time.Time { return r.cfg.Clock().UTC() }

// engine returns terraform-exec bound to a stack directory, with the
// runner's environment, and the engine's output kept (it masks sensitive
// values itself) in logw.
func (r *Runner) engine(dir string, logw io.Writer) (*tfexec.Terraform, error) {
	tf, err := tfexec.NewTerraform(dir, r.cfg.Engine)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for k, v := range r.cfg.Env {
		env[k] = v
	}
	if r.cfg.PlanPassphrase != "" {
		env["TF_ENCRYPTION"] = encryptionConfig(r.cfg.PlanPassphrase)
	}
	// terraform-exec refuses to be handed the variables it manages itself
	// (logging, workspace, CLI arguments), and input variables (TF_VAR_*),
	// which it wants as -var flags. Flags would put secret values on the
	// command line, readable in the process table, so input variables are
	// added back to the map after SetEnv checked it: terraform-exec keeps
	// the map and copies it into each command's environment (pinned
	// v0.26.0; TestLifecycle fails if that changes, as its secret variable
	// would be missing).
	vars := map[string]string{}
	for _, k := range tfexec.ProhibitedEnv(env) {
		if strings.HasPrefix(k, "TF_VAR_") {
			vars[k] = env[k]
		}
		delete(env, k)
	}
	if err := tf.SetEnv(env); err != nil {
		return nil, fmt.Errorf("engine environment: %w", err)
	}
	for k, v := range vars {
		env[k] = v
	}
	if logw != nil {
		if r.cfg.EngineOutput != nil {
			logw = io.MultiWriter(logw, r.cfg.EngineOutput)
		}
		tf.SetStdout(logw)
		tf.SetStderr(logw)
	}
	return tf, nil
}

// messageWriter streams the human-readable "@message" of each line of the
// engine's machine-readable (-json) output to w.
type messageWriter struct {
	w       io.Writer
	partial []byte
}

func (m *messageWriter) Write(p []byte) (int, error) {
	m.partial = append(m.partial, p...)
	for {
		i := bytes.IndexByte(m.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		var line struct {
			Message string `json:"@message"`
		}
		if json.Unmarshal(m.partial[:i], &line) == nil && line.Message != "" {
			fmt.Fprintln(m.w, line.Message)
		}
		m.partial = m.partial[i+1:]
	}
}

// encryptionConfig is OpenTofu's TF_ENCRYPTION for plan files only: state
// stays as the backend keeps it.
func encryptionConfig(passphrase string) string {
	return `key_provider "pbkdf2" "evident" {
  passphrase = ` + hclString(passphrase) + `
}
method "aes_gcm" "evident" {
  keys = key_provider.pbkdf2.evident
}
plan {
  method   = method.aes_gcm.evident
  enforced = true
}
`
}

// hclString quotes s as an HCL string literal with no interpolation.
func hclString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case (c == '$' || c == '%') && i+1 < len(s) && s[i+1] == '{':
			b.WriteByte(c) // "$${" is a literal "${"
			b.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// workDir is where the runner keeps its files in a stack: plan files and
// the drift status. It is created on demand and should be git-ignored. It
// is absolute: the engine runs inside the stack, where a path relative to
// the runner's own directory would point elsewhere.
func workDir(stackDir string) (string, error) {
	abs, err := filepath.Abs(stackDir)
	if err != nil {
		return "", fmt.Errorf("runner work directory: %w", err)
	}
	d := filepath.Join(abs, ".evident")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", fmt.Errorf("runner work directory: %w", err)
	}
	return d, nil
}

func (r *Runner) init(ctx context.Context, tf *tfexec.Terraform) error {
	if err := tf.Init(ctx, tfexec.Upgrade(false)); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	return nil
}

// put stores an artifact and names it for a record.
func (r *Runner) put(ctx context.Context, name, mediaType string, b []byte) (evidence.Artifact, error) {
	ref, err := r.cfg.Store.Put(ctx, strings.NewReader(string(b)))
	if err != nil {
		return evidence.Artifact{}, fmt.Errorf("store %s: %w", name, err)
	}
	return evidence.Artifact{Name: name, Digest: ref.Digest, URI: ref.URI, MediaType: mediaType}, nil
}

func (r *Runner) record(ctx context.Context, t evidence.Transition) (*api.Receipt, error) {
	if t.OccurredAt.IsZero() {
		t.OccurredAt = r.now()
	}
	rec, err := r.cfg.Recorder.Record(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", t.Kind, err)
	}
	r.cfg.Logger.Info("recorded", "kind", t.Kind, "change", t.ChangeID, "index", rec.Index)
	return rec, nil
}
