package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"

	"evident.dev/evident/api"
	"evident.dev/evident/audit"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/ledger"
)

// LogKeysPath is the key of the log's key rotations (a JSON array of
// api.LogKeyStep, in log order): what a follower pinned to the genesis
// key needs to trust checkpoints a later key signs. Not part of C2SP
// tlog-tiles; absent while the log key was never rotated.
const LogKeysPath = "log-keys.json"

// rotatingLog is a log that knows its chain of keys (*ledger.Log).
type rotatingLog interface {
	LogKeys() []ledger.LogKey
	Rotations(ctx context.Context) ([]ledger.Rotation, error)
}

// ownChain is the log's own chain of keys, which opens the checkpoints the
// exporter reads (the log's and the bucket's) by the chain-of-keys rule.
// A log with no chain (no genesis naming a key) has only its own key.
func ownChain(l interface{ VerifierKey() string }) (checkpoint.Chain, error) {
	keys := []string{l.VerifierKey()}
	var rotations checkpoint.Rotations
	if rl, ok := l.(rotatingLog); ok && len(rl.LogKeys()) > 0 {
		keys = keys[:0]
		for i, k := range rl.LogKeys() {
			keys = append(keys, k.VerifierKey)
			if i > 0 {
				rotations = append(rotations, k.At)
			}
		}
	}
	chain := checkpoint.Chain{Rotations: rotations}
	for _, k := range keys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return checkpoint.Chain{}, fmt.Errorf("replica: log key: %w", err)
		}
		chain.Keys = append(chain.Keys, v)
	}
	return chain, nil
}

// rotationSteps returns the log's rotation proofs in the bucket's format.
func rotationSteps(ctx context.Context, rl rotatingLog) ([]api.LogKeyStep, error) {
	rots, err := rl.Rotations(ctx)
	if err != nil {
		return nil, err
	}
	steps := make([]api.LogKeyStep, 0, len(rots))
	for _, r := range rots {
		proof := make([][]byte, len(r.Proof))
		for i := range r.Proof {
			proof[i] = r.Proof[i][:]
		}
		steps = append(steps, api.LogKeyStep{Index: r.Index, Leaf: r.Leaf, Checkpoint: string(r.Checkpoint), Proof: proof})
	}
	return steps, nil
}

// keyChain is the chain of keys a follower verified from its pinned key.
type keyChain struct {
	steps []api.LogKeyStep
	keys  []string // keys[0] pinned; keys[i+1] introduced by steps[i]
	sizes []uint64 // sizes[i]: the size of steps[i]'s cross-signed checkpoint
}

// followChain reads the bucket's rotations and verifies them from pinned.
func followChain(ctx context.Context, store Store, pinned string) (*keyChain, error) {
	ch := &keyChain{keys: []string{pinned}}
	_, nv, err := audit.LogPublicKey(pinned)
	if err != nil {
		return nil, err
	}
	origin := nv.Name()
	b, err := store.Get(ctx, LogKeysPath)
	if errors.Is(err, ErrNotExist) {
		return ch, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &ch.steps); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadCheckpoint, LogKeysPath, err)
	}
	for i, s := range ch.steps {
		key, _, err := audit.FollowLogKeys(pinned, ch.steps[:i+1])
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadCheckpoint, LogKeysPath, err)
		}
		ch.keys = append(ch.keys, key)
		// Its signatures were checked by FollowLogKeys: only its size is read.
		cp, err := checkpoint.Parse([]byte(s.Checkpoint), origin)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadCheckpoint, LogKeysPath, err)
		}
		size := cp.Size
		ch.sizes = append(ch.sizes, size)
	}
	return ch, nil
}

// open verifies a checkpoint of the followed log: signed by the key in
// force for its size (checkpoint.Chain).
func (ch *keyChain) open(raw []byte, origin string) (*checkpoint.Checkpoint, error) {
	chain := checkpoint.Chain{}
	for i, k := range ch.keys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return nil, err
		}
		chain.Keys = append(chain.Keys, v)
		if i < len(ch.steps) {
			chain.Rotations = append(chain.Rotations, ch.steps[i].Index)
		}
	}
	return chain.Open(raw, origin)
}
