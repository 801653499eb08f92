package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"evident.dev/evident/audit"
	"evident.dev/evident/client"
	"evident.dev/evident/evidence"
	"evident.dev/evident/internal/secret"
	"evident.dev/evident/query"
	"evident.dev/evident/verifier"
	"evident.dev/evident/witness"
)

// runPack downloads a change's evidence pack, checks it against the pinned
// log key before writing it, and writes it.
func runPack(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pack", stderr)
	server := fs.String("server", defaultServer(), "server URL")
	change := fs.String("change", "", "change id")
	out := fs.String("out", "", "file to write (- for standard output)")
	token := fs.String("token", "", "bearer token (default: $EVIDENT_TOKEN)")
	logKey := fs.String("log-key", "", "pinned log verifier key, or a file holding it; default: ask the server (trust on first use)")
	wf := addWitnessFlags(fs)
	format := addOutputFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	policy, err := wf.policy()
	if err != nil {
		return err
	}
	if err := format.check(); err != nil {
		return err
	}
	if *change == "" || *out == "" {
		return usageErrorf("pack: --change and --out are required")
	}
	if *out == "-" && format.json() {
		return usageErrorf("pack: -o json reports on stdout; write the pack to a file (--out FILE)")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	key, err := pinnedKey(ctx, client.New(*server), keyOrFile(*logKey), stderr)
	if err != nil {
		return err
	}
	body, err := getWithToken(ctx, strings.TrimRight(*server, "/")+"/v1/packs/"+evidence.EscapeChangeID(*change), firstOf(*token, os.Getenv("EVIDENT_TOKEN")))
	if err != nil {
		return err
	}
	p, err := audit.ReadPack(bytes.NewReader(body))
	if err != nil {
		return err
	}
	rep, err := audit.CheckPack(p, key)
	if err != nil {
		return fmt.Errorf("the server's pack does not verify: %w", err)
	}
	tree := "signed tree"
	if policy != nil {
		names, err := policy.Check([]byte(p.Checkpoint))
		if err != nil {
			return &exitError{1, fmt.Errorf("the server's pack: %w", err)}
		}
		tree = "tree cosigned by " + strings.Join(names, ", ") + ","
	}
	if *out == "-" {
		_, err = stdout.Write(body)
	} else {
		err = os.WriteFile(*out, body, 0o644)
	}
	if err != nil {
		return err
	}
	if format.json() {
		res := newPackResult(rep, len(p.Trust) > 0, nil)
		res.Out = *out
		return writeIndented(stdout, res)
	}
	fmt.Fprintf(stderr, "wrote the evidence pack of %s: %d records under the %s of size %d, verified\n", *change, rep.Records, tree, rep.TreeSize)
	return nil
}

func getWithToken(ctx context.Context, u, token string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		return nil, fmt.Errorf("%s: %s %s", u, resp.Status, e.Error)
	}
	return body, nil
}

// verifyPack checks a pack offline.
// With a witness policy the pack's checkpoint must carry the cosignatures
// it asks for.
func verifyPack(file, logKey string, policy *witness.Policy, format *output, stdout, stderr io.Writer) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	failed := func(rep *audit.PackReport, trust bool, err error) error {
		if format.json() {
			if werr := writeIndented(stdout, newPackResult(rep, trust, err)); werr != nil {
				return werr
			}
		}
		return &exitError{1, fmt.Errorf("verify FAILED: %w", err)}
	}
	p, err := audit.ReadPack(f)
	if err != nil {
		return failed(nil, false, err)
	}
	key := keyOrFile(logKey)
	if key == "" {
		key = p.LogKey
		fmt.Fprintf(stderr, "warning: log key not pinned; using the key the pack names: %s\n", key)
	}
	rep, err := audit.CheckPack(p, key)
	if err != nil {
		return failed(rep, len(p.Trust) > 0, err)
	}
	var witnesses []string
	if policy != nil {
		if witnesses, err = policy.Check([]byte(p.Checkpoint)); err != nil {
			return failed(rep, len(p.Trust) > 0, fmt.Errorf("the pack's checkpoint: %w", err))
		}
	}
	if format.json() {
		return writeIndented(stdout, newPackResult(rep, len(p.Trust) > 0, nil))
	}
	sigs := fmt.Sprintf("%d signatures re-verified under the trust in force", rep.Signatures)
	if len(p.Trust) == 0 {
		sigs = "signatures not checked (the pack carries no trust entries: a tenant's pack)"
	}
	tree := "signed tree"
	if policy != nil {
		tree = "tree cosigned by " + strings.Join(witnesses, ", ") + ","
	}
	_, err = fmt.Fprintf(stdout, "OK: evidence pack of %s: %d records included in the %s of size %d (root %x); %s\n",
		rep.Change, rep.Records, tree, rep.TreeSize, rep.Root, sigs)
	return err
}

// runDemo signs and posts the demo data set of docs/audit-queries.md.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	server := fs.String("server", defaultServer(), "server URL")
	keyFile := fs.String("key", "", "runner private key trusted for prod and staging (the dev server's dev-runner.key) (a file only its owner may read, or env:VAR)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *keyFile == "" {
		return usageErrorf("demo: --key is required")
	}
	keyPEM, err := secret.ReadPrivateKey(*keyFile)
	if err != nil {
		return err
	}
	key, err := verifier.ParsePrivateKey(keyPEM)
	if err != nil {
		return err
	}
	c := client.New(*server)
	decisions := query.DemoDecisions{}
	for _, st := range query.DemoStatementsAt(time.Now()) {
		decisions.Bind(&st)
		payload, err := json.Marshal(st)
		if err != nil {
			return err
		}
		env, err := verifier.SignEnvelope(key, payload)
		if err != nil {
			return err
		}
		rc, err := c.Post(ctx, env)
		if err != nil {
			return fmt.Errorf("%s of %s: %w", st.Predicate.Kind, st.Predicate.ChangeID, err)
		}
		decisions.Posted(st, rc.PolicyDecisionSHA256)
		fmt.Fprintf(stdout, "%6d %-24s %s\n", rc.Index, st.Predicate.Kind, st.Predicate.ChangeID)
	}
	return nil
}
