package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"evident.dev/evident/audit"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/client"
	"evident.dev/evident/witness"
)

func runProof(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("proof", stderr)
	server := fs.String("server", defaultServer(), "server URL")
	index := fs.Uint64("index", 0, "entry index")
	logKey := fs.String("log-key", "", "pinned log verifier key (name+hash+key); default: ask the server (trust on first use)")
	old := fs.String("consistent-with", "", "instead of an inclusion proof, prove the latest checkpoint extends this saved checkpoint file")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for a checkpoint covering the entry")
	wf := addWitnessFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	policy, err := wf.policy()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := client.New(*server)
	key, err := pinnedKey(ctx, c, *logKey, stderr)
	if err != nil {
		return err
	}
	if *old != "" {
		return proveConsistency(ctx, c, key, *old, policy, stdout)
	}
	var bundle *client.InclusionBundle
	if policy != nil {
		bundle, err = c.ProveWitnessed(ctx, *index, key, policy)
	} else {
		bundle, err = c.Prove(ctx, *index, key)
	}
	if errors.Is(err, witness.ErrNotWitnessed) {
		return &exitError{1, err}
	}
	if err != nil {
		return err
	}
	what := "signed tree"
	if policy != nil {
		what = "witnessed tree"
	}
	fmt.Fprintf(stderr, "entry %d is included in the %s of size %d: proof verified\n", bundle.Index, what, bundle.TreeSize)
	return writeIndented(stdout, bundle)
}

func pinnedKey(ctx context.Context, c *client.Client, flagKey string, stderr io.Writer) (string, error) {
	if flagKey != "" {
		if b, err := os.ReadFile(flagKey); err == nil {
			flagKey = strings.TrimSpace(string(b))
		}
		return flagKey, nil
	}
	key, err := c.LogKey(ctx)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(stderr, "warning: log key not pinned; using the one the server names: %s\n", key)
	return key, nil
}

func proveConsistency(ctx context.Context, c *client.Client, key, oldFile string, policy *witness.Policy, stdout io.Writer) error {
	_, nv, err := audit.LogPublicKey(key)
	if err != nil {
		return err
	}
	oldNote, err := os.ReadFile(oldFile)
	if err != nil {
		return err
	}
	// A checkpoint signed by a later key is accepted through the log's
	// chain of key rotations, verified from the pinned key.
	var chain *client.KeyChain
	open := func(n []byte) (*checkpoint.Checkpoint, error) {
		cp, err := checkpoint.Open(n, nv.Name(), nv)
		if err == nil {
			return cp, nil
		}
		if chain == nil {
			if chain, err = c.FollowLogKeys(ctx, key); err != nil {
				return nil, err
			}
		}
		return chain.Open(n)
	}
	oldCP, err := open(oldNote)
	if err != nil {
		return fmt.Errorf("%s: %w", oldFile, err)
	}
	fetch, what := c.Checkpoint, "latest checkpoint"
	if policy != nil {
		fetch, what = c.WitnessedCheckpoint, "latest witnessed checkpoint"
	}
	newNote, err := fetch(ctx)
	if err != nil {
		return err
	}
	if policy != nil {
		if _, err := policy.Check(newNote); err != nil {
			return &exitError{1, fmt.Errorf("the %s: %w", what, err)}
		}
	}
	newCP, err := open(newNote)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if newCP.Size < oldCP.Size {
		return &exitError{1, fmt.Errorf("the log shrank: latest checkpoint has %d entries, the saved one %d", newCP.Size, oldCP.Size)}
	}
	var hashes [][]byte
	if oldCP.Size > 0 && newCP.Size > oldCP.Size {
		if hashes, err = c.ConsistencyProof(ctx, oldCP.Size, newCP.Size); err != nil {
			return err
		}
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, oldCP.Size, newCP.Size, hashes, oldCP.Root[:], newCP.Root[:]); err != nil {
		return &exitError{1, fmt.Errorf("the latest checkpoint is NOT consistent with %s: %w", oldFile, err)}
	}
	_, err = fmt.Fprintf(stdout, "consistent: the tree of %d entries extends the saved tree of %d entries\n", newCP.Size, oldCP.Size)
	return err
}
