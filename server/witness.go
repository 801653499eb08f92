package server

import (
	"log/slog"
	"path/filepath"

	"evident.dev/evident/ledger"
	"evident.dev/evident/replica"
	"evident.dev/evident/witness"
)

// WitnessConfig lists the witnesses that cosign the log's checkpoints
// (C2SP tlog-witness, docs/anchoring.md). Witnessing is off without
// witnesses.
type WitnessConfig struct {
	Witnesses []witness.Witness `yaml:"witnesses"`
	// Quorum is how many of them must cosign a checkpoint before it is
	// served as witnessed; 0 means all.
	Quorum int `yaml:"quorum"`
}

// witnessedFile keeps the latest witnessed checkpoint in the data
// directory, so that a restarted server serves it at once.
const witnessedFile = "witnessed-checkpoint"

// collector builds the writer's witness collector, or nil when witnessing
// is off.
func (c *Config) collector(lg *ledger.Log, logger *slog.Logger) (*witness.Collector, error) {
	w := c.Witness
	if len(w.Witnesses) == 0 {
		if w.Quorum != 0 {
			return nil, usageErrorf("witness: a quorum without witnesses")
		}
		return nil, nil
	}
	return witness.New(witness.Config{
		Log: lg, Witnesses: w.Witnesses, Quorum: w.Quorum,
		State:  filepath.Join(c.Data, witnessedFile),
		Logger: logger.With("component", "witness"),
	})
}

// witnessedTiles is the log as tlog-tiles clients read it once witnessing
// is on: its checkpoint is the latest one the witnesses cosigned, so that
// a client with a witness policy can check it, as with a Tessera log.
type witnessedTiles struct {
	*ledger.Log
	witnessed func() []byte
}

func (w witnessedTiles) Checkpoint() ([]byte, error) {
	if cp := w.witnessed(); cp != nil {
		return cp, nil
	}
	return nil, ledger.ErrEmpty
}

var _ replica.TileLog = witnessedTiles{}
