package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"evident.dev/evident/client"
	"evident.dev/evident/runners/tofu"
	"evident.dev/evident/server"
)

const runnerUsage = `usage: evident runner plan|apply|drift|force-unlock --stack DIR [flags]

  plan          init, plan, risk summary; upload the plan and a redacted plan;
                post change.opened and plan.created; write the plan reference
  apply         fetch the plan, check its hash, ask the gate; on allow apply it,
                post apply.* and verification.completed
  drift         plan -detailed-exitcode; post drift.detected / drift.reconciled;
                exit 0 no drift, 2 drift, 1 error (as the engines' -detailed-exitcode)
                (--every DURATION repeats it until interrupted)
  force-unlock  remove a stuck state lock: needs --lock-id and --incident;
                posts lock.forced

The change contract comes from the stack path (stacks/<env>/<cloud>/<account>/
<region>/<stack>), --catalog, and the CI environment (EVIDENT_CHANGE_ID,
EVIDENT_REPOSITORY, EVIDENT_PULL_REQUEST, EVIDENT_COMMIT_SHA, EVIDENT_ACTOR, or
GitHub Actions / GitLab CI variables). A plan holding sensitive values needs
EVIDENT_PLAN_PASSPHRASE (OpenTofu plan encryption). Records are signed with
--key, or keyless (a Fulcio certificate for the OIDC token's identity, each
signature logged in Rekor) when there is no --key and an OIDC token is
present: --oidc-token-env VAR, SIGSTORE_ID_TOKEN, or a GitHub Actions job
with id-token: write. S3 credentials come from
EVIDENT_S3_ACCESS_KEY / EVIDENT_S3_SECRET_KEY (or the AWS_* variables).
Exit status: 0 done, 1 apply failed, 2 usage or other error, 3 gate denied,
4 state locked.`

func runRunner(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, runnerUsage)
		return errors.New("runner: no subcommand given")
	}
	verb := args[0]
	switch verb {
	case "plan", "apply", "drift", "force-unlock":
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, runnerUsage)
		return nil
	default:
		fmt.Fprintln(stderr, runnerUsage)
		return fmt.Errorf("runner: unknown subcommand %q", verb)
	}
	fs := newFlags("runner "+verb, stderr)
	stack := fs.String("stack", "", "stack directory (…/stacks/<env>/<cloud>/<account>/<region>/<stack>)")
	serverURL := fs.String("server", defaultServer(), "Evident server URL")
	tlsFlags := addClientTLSFlags(fs)
	tokenEnv := fs.String("token-env", "", "environment variable holding the runner's bearer token for the apply gate (needed once the server's access is configured; default $EVIDENT_TOKEN)")
	signing := addSigningFlags(fs)
	catalog := fs.String("catalog", "", "catalog YAML: environments, stacks, risky resource types")
	engine := fs.String("tofu", "", "engine binary (default: tofu, else terraform, on PATH)")
	engineName := fs.String("engine", "", "opentofu or terraform (default from the binary's name)")
	planRef := fs.String("plan-ref", "", "plan reference file (default <stack>/.evident/plan.json)")
	lockTimeout := fs.Duration("lock-timeout", 0, "how long to wait for the state lock")
	var ac server.ArtifactsConfig
	fs.StringVar(&ac.Dir, "artifacts", "", "artifact store directory (or use the --s3-* flags)")
	fs.StringVar(&ac.S3.Endpoint, "s3-endpoint", "", "S3-compatible endpoint host:port")
	fs.StringVar(&ac.S3.Bucket, "s3-bucket", "", "S3 bucket for artifacts")
	fs.StringVar(&ac.S3.Prefix, "s3-prefix", "", "S3 key prefix")
	fs.StringVar(&ac.S3.Region, "s3-region", "", "S3 region")
	fs.BoolVar(&ac.S3.Insecure, "s3-insecure", false, "plain HTTP to the S3 endpoint")
	fs.DurationVar(&ac.S3.Retention, "s3-retention", 0, "object lock COMPLIANCE retention of uploaded artifacts")
	every := fs.Duration("every", 0, "drift: repeat every DURATION until interrupted")
	method := fs.String("method", "revert", "drift: how a reconciled drift was resolved (revert, import, accept)")
	lockID := fs.String("lock-id", "", "force-unlock: the lock ID the engine reported")
	incident := fs.String("incident", "", "force-unlock: the incident reference (required)")
	heldBy := fs.String("held-by", "", "force-unlock: who held the lock, as the engine reported")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *stack == "" {
		return usageErrorf("runner %s: --stack is required", verb)
	}
	if ac.Dir == "" && ac.S3.Bucket == "" {
		return usageErrorf("runner %s: set --artifacts DIR or --s3-bucket (and --s3-endpoint)", verb)
	}
	signer, how, err := signing.signer(os.Getenv)
	if err != nil {
		return fmt.Errorf("runner %s: %w", verb, err)
	}
	store, err := ac.Open(ctx)
	if err != nil {
		return err
	}
	var cat *tofu.Catalog
	if *catalog != "" {
		if cat, err = tofu.LoadCatalog(*catalog); err != nil {
			return err
		}
	}
	bin, name, err := findEngine(*engine, *engineName)
	if err != nil {
		return err
	}
	ci := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		ci[k] = v
	}
	change, err := tofu.DeriveChange(*stack, cat, ci)
	if err != nil {
		return err
	}
	c := client.New(*serverURL)
	if c.Token, err = tokenFromEnv(*tokenEnv); err != nil {
		return err
	}
	if err := tlsFlags.apply(c); err != nil {
		return err
	}
	r, err := tofu.New(tofu.Config{
		Engine: bin, EngineName: name, Store: store,
		Recorder: tofu.ClientRecorder{Client: c, Signer: signer},
		Gate:     clientGate{c: c}, Catalog: cat,
		PlanPassphrase: os.Getenv("EVIDENT_PLAN_PASSPHRASE"),
		LockTimeout:    *lockTimeout, Out: stdout, EngineOutput: stderr, Logger: newLogger(stderr, 0),
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "evident runner "+verb+": "+how)
	switch verb {
	case "plan":
		_, err := r.Plan(ctx, *stack, change, *planRef)
		return err
	case "apply":
		ref := *planRef
		if ref == "" {
			ref = filepath.Join(*stack, ".evident", "plan.json")
		}
		pr, err := tofu.ReadPlanRef(ref)
		if err != nil {
			return err
		}
		_, err = r.Apply(ctx, *stack, change, pr)
		var locked *tofu.LockedError
		switch {
		case errors.Is(err, tofu.ErrGateDenied):
			return &exitError{code: 3, err: err}
		case errors.As(err, &locked):
			return &exitError{code: 4, err: err}
		case errors.Is(err, tofu.ErrApplyFailed):
			return &exitError{code: 1, err: err}
		}
		return err
	case "drift":
		if *every > 0 {
			return r.Watch(ctx, *stack, change, *every, func(err error) {
				fmt.Fprintln(stderr, "evident runner drift:", err)
			})
		}
		res, err := r.Drift(ctx, *stack, change, *method)
		if err == nil && len(res.Drifted) > 0 {
			// As the engines' -detailed-exitcode: 0 clean, 1 error, 2 drift.
			return &exitError{code: 2, err: fmt.Errorf("drift detected: %s", strings.Join(res.Drifted, ", "))}
		}
		return err
	default: // force-unlock
		return r.ForceUnlock(ctx, *stack, change, *lockID, *incident, *heldBy)
	}
}

// findEngine resolves the engine binary and whether it is OpenTofu.
func findEngine(bin, name string) (string, string, error) {
	if bin == "" {
		for _, n := range []string{"tofu", "terraform"} {
			if p, err := exec.LookPath(n); err == nil {
				bin = p
				break
			}
		}
		if bin == "" {
			return "", "", errors.New("runner: neither tofu nor terraform is on PATH; set --tofu")
		}
	}
	if name == "" {
		name = "opentofu"
		if strings.HasPrefix(filepath.Base(bin), "terraform") {
			name = "terraform"
		}
	}
	return bin, name, nil
}

// clientGate asks the server's apply gate through the client package.
type clientGate struct {
	c *client.Client
}

func (g clientGate) AskGate(ctx context.Context, req tofu.GateRequest) (*tofu.GateDecision, error) {
	d, err := g.c.AskGate(ctx, client.GateRequest{
		ChangeID: req.ChangeID, CommitSHA: req.CommitSHA, PlanSHA256: req.PlanSHA256, Target: req.Target, Actor: req.Actor,
	})
	if err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	return &tofu.GateDecision{
		Decision: d.Decision, Reasons: d.Reasons, RequiredApprovers: d.RequiredApprovers, EntryIndex: d.Entry.Index,
	}, nil
}
