package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"evident.dev/evident/client"
	"evident.dev/evident/evidence"
)

// runGate is `evident gate check`: ask the apply gate whether a plan may be
// applied. Exit status 0 means allow, 1 deny, 2 the gate could not decide
// (do not apply).
func runGate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		return usageErrorf("usage: evident gate check --change ID --commit SHA (--plan FILE | --plan-sha256 HEX) --env ENV --actor ID [--stack S] [--server URL] [-o json]")
	}
	fs := newFlags("gate check", stderr)
	server := fs.String("server", defaultServer(), "server URL")
	tlsFlags := addClientTLSFlags(fs)
	tokenEnv := fs.String("token-env", "", "environment variable holding a runner's bearer token (needed once the server's access is configured; default $EVIDENT_TOKEN)")
	changeID := fs.String("change", "", "change id")
	commit := fs.String("commit", "", "Git commit SHA the plan was made from")
	planFile := fs.String("plan", "", "the plan file to apply (its SHA-256 is sent)")
	planSHA := fs.String("plan-sha256", "", "or: the plan file's SHA-256, hex")
	actor := fs.String("actor", "", "who asks (the runner's identity)")
	var tg evidence.Target
	fs.StringVar(&tg.Environment, "env", "", "target environment")
	fs.StringVar(&tg.Stack, "stack", "", "target stack")
	fs.StringVar(&tg.Cluster, "cluster", "", "target cluster")
	fs.StringVar(&tg.Namespace, "namespace", "", "target namespace")
	fs.StringVar(&tg.Application, "application", "", "target application")
	asJSON := fs.Bool("json", false, "print the whole answer as JSON (as -o json)")
	out := addOutputFlag(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if err := out.check(); err != nil {
		return err
	}
	*asJSON = *asJSON || out.json()
	if (*planFile == "") == (*planSHA == "") {
		return usageErrorf("gate check: give exactly one of --plan and --plan-sha256")
	}
	if *planFile != "" {
		b, err := os.ReadFile(*planFile)
		if err != nil {
			return fmt.Errorf("gate check: %w", err)
		}
		sum := sha256.Sum256(b)
		*planSHA = hex.EncodeToString(sum[:])
	}
	req := client.GateRequest{ChangeID: *changeID, CommitSHA: *commit, PlanSHA256: strings.ToLower(*planSHA), Target: tg, Actor: *actor}
	if err := req.Check(); err != nil {
		return usageErrorf("gate check: %w", err)
	}
	c := client.New(*server)
	token, err := tokenFromEnv(*tokenEnv)
	if err != nil {
		return fmt.Errorf("gate check: %w", err)
	}
	c.Token = token
	if err := tlsFlags.apply(c); err != nil {
		return fmt.Errorf("gate check: %w", err)
	}
	d, err := c.AskGate(ctx, req)
	if err != nil {
		return fmt.Errorf("gate check: %w (do not apply)", err)
	}
	if *asJSON {
		if err := writeIndented(stdout, d); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "%s: change %s, plan %s, recorded as entry %d\n", strings.ToUpper(d.Decision), req.ChangeID, req.PlanSHA256, d.Entry.Index)
		if len(d.RequiredApprovers) > 0 {
			fmt.Fprintf(stdout, "required approvers: %s\n", strings.Join(d.RequiredApprovers, ", "))
		}
		for _, r := range d.Reasons {
			fmt.Fprintf(stdout, "  - %s\n", r)
		}
	}
	if d.Decision != client.Allow {
		return &exitError{1, fmt.Errorf("the gate denied applying plan %s of change %s", req.PlanSHA256, req.ChangeID)}
	}
	return nil
}
