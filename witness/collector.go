package witness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"evident.dev/evident/checkpoint"
)

// Log is the log whose checkpoints are witnessed (*ledger.Log).
type Log interface {
	Origin() string
	// Checkpoint is the latest signed checkpoint note.
	Checkpoint() ([]byte, error)
	// WaitCheckpoint waits until the latest signed checkpoint covers more
	// than size entries, and returns its size.
	WaitCheckpoint(ctx context.Context, size uint64) (uint64, error)
	ConsistencyProof(ctx context.Context, from, to uint64) ([][32]byte, error)
}

// Config is what a Collector needs.
type Config struct {
	Log       Log
	Witnesses []Witness
	// Quorum is how many witnesses must cosign a checkpoint before it is
	// served as witnessed; 0 means all of them.
	Quorum int
	// State is the file that keeps the latest witnessed checkpoint across
	// restarts.
	State  string
	HTTP   *http.Client
	Logger *slog.Logger
	// Timeout bounds one submission to one witness; default 10s.
	Timeout time.Duration
	// Retry is the longest wait before submitting a checkpoint again when
	// the quorum was not reached and the log has signed none newer;
	// default 30s.
	Retry time.Duration
}

// Collector submits each new checkpoint of the log to its witnesses and
// keeps the latest one that gathered the quorum of cosignatures: the log's
// signed note with the witnesses' cosignature lines under the log's own.
type Collector struct {
	cfg       Config
	policy    *Policy
	witnesses []*witnessState

	mu            sync.Mutex
	witnessed     []byte
	witnessedSize uint64
	witnessedAt   time.Time         // when witnessed last grew, or the collector started
	cosigned      map[string]uint64 // by witness: the size it last cosigned
}

// Progress is how far witnessing has come, for the metrics.
type Progress struct {
	// Size is that of the latest witnessed checkpoint, and At when it was
	// witnessed (or when the collector started, before the first).
	Size uint64
	At   time.Time
	// Cosigned is, by witness name, the size of the checkpoint it last
	// cosigned for this log since the collector started.
	Cosigned map[string]uint64
}

// witnessState is what the log knows of one witness. Only Run touches it.
type witnessState struct {
	Witness
	policy *Policy // this witness alone
	// known is the size of the checkpoint the log believes the witness
	// holds; a 409 answer corrects it.
	known uint64
}

// New checks the configuration and reads the latest witnessed checkpoint
// the state file kept, if any.
func New(cfg Config) (*Collector, error) {
	if cfg.Log == nil || cfg.State == "" {
		return nil, errors.New("witness: Log and State are required")
	}
	keys := make([]string, len(cfg.Witnesses))
	c := &Collector{cfg: cfg, witnessedAt: time.Now(), cosigned: map[string]uint64{}}
	for i, w := range cfg.Witnesses {
		if w.URL == "" {
			return nil, fmt.Errorf("witness %q: url is required", w.Name)
		}
		one, err := NewPolicy([]string{w.Key}, 1)
		if err != nil {
			return nil, fmt.Errorf("witness %q: %w", w.Name, err)
		}
		if got := one.Names()[0]; got != w.Name {
			return nil, fmt.Errorf("witness %q: its key names %q", w.Name, got)
		}
		keys[i] = w.Key
		c.witnesses = append(c.witnesses, &witnessState{Witness: w, policy: one})
	}
	policy, err := NewPolicy(keys, cfg.Quorum)
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	c.policy = policy
	if c.cfg.HTTP == nil {
		c.cfg.HTTP = &http.Client{}
	}
	if c.cfg.Logger == nil {
		c.cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if c.cfg.Timeout <= 0 {
		c.cfg.Timeout = 10 * time.Second
	}
	if c.cfg.Retry <= 0 {
		c.cfg.Retry = 30 * time.Second
	}
	kept, err := os.ReadFile(cfg.State)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("witness: read the witnessed checkpoint: %w", err)
	default:
		// A state file that is damaged or no longer meets the policy (a
		// witness dropped from the configuration, say) is not served: the
		// next checkpoint witnessed replaces it.
		cp, err := checkpoint.Parse(kept, cfg.Log.Origin())
		if err == nil {
			_, err = policy.Check(kept)
		}
		if err != nil {
			c.cfg.Logger.Warn("the kept witnessed checkpoint is not served", "file", cfg.State, "err", err)
			break
		}
		c.witnessed, c.witnessedSize = kept, cp.Size
		if st, err := os.Stat(cfg.State); err == nil {
			c.witnessedAt = st.ModTime()
		}
	}
	return c, nil
}

// Policy is the witness policy the collector gathers cosignatures for.
func (c *Collector) Policy() *Policy { return c.policy }

// Witnessed returns the latest checkpoint that gathered the quorum, with
// its cosignatures, or nil before the first.
func (c *Collector) Witnessed() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.witnessed
}

// Progress reports how far witnessing has come.
func (c *Collector) Progress() Progress {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := Progress{Size: c.witnessedSize, At: c.witnessedAt, Cosigned: make(map[string]uint64, len(c.cosigned))}
	for name, size := range c.cosigned {
		p.Cosigned[name] = size
	}
	return p
}

// Run submits every new signed checkpoint to the witnesses until ctx ends.
// A checkpoint that does not gather the quorum is submitted again after a
// while, unless a newer one is signed first; the log goes on meanwhile.
func (c *Collector) Run(ctx context.Context) error {
	for {
		var size uint64 // of the checkpoint submitted last
		witnessed := false
		if signed, err := c.cfg.Log.Checkpoint(); err == nil {
			cp, err := checkpoint.Parse(signed, c.cfg.Log.Origin())
			if err != nil {
				return fmt.Errorf("witness: the log's checkpoint: %w", err)
			}
			size, witnessed = cp.Size, c.round(ctx, signed, cp)
		}
		wait, cancel := ctx, context.CancelFunc(func() {})
		if !witnessed {
			wait, cancel = context.WithTimeout(ctx, c.cfg.Retry)
		}
		_, err := c.cfg.Log.WaitCheckpoint(wait, size)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("witness: wait for a checkpoint: %w", err)
		}
	}
}

// round submits one checkpoint to every witness at once, and publishes it
// with the cosignatures it gathered if they meet the quorum.
func (c *Collector) round(ctx context.Context, signed []byte, cp *checkpoint.Checkpoint) bool {
	cosigs := make([][]byte, len(c.witnesses))
	var wg sync.WaitGroup
	for i, w := range c.witnesses {
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
			defer cancel()
			lines, err := c.submit(sctx, w, signed, cp)
			if err != nil {
				c.cfg.Logger.Warn("witness did not cosign the checkpoint", "witness", w.Name, "size", cp.Size, "err", err)
				return
			}
			cosigs[i] = lines
			c.mu.Lock()
			c.cosigned[w.Name] = cp.Size
			c.mu.Unlock()
		})
	}
	wg.Wait()
	cosigned := append([]byte(nil), signed...)
	for _, lines := range cosigs {
		cosigned = append(cosigned, lines...)
	}
	if _, err := c.policy.Check(cosigned); err != nil {
		c.cfg.Logger.Warn("checkpoint not witnessed", "size", cp.Size, "err", err)
		return false
	}
	if err := writeFileAtomic(c.cfg.State, cosigned); err != nil {
		c.cfg.Logger.Error("keep the witnessed checkpoint", "size", cp.Size, "err", err)
		return false
	}
	c.mu.Lock()
	if c.witnessed == nil || cp.Size > c.witnessedSize {
		c.witnessedAt = time.Now()
	}
	c.witnessed, c.witnessedSize = cosigned, cp.Size
	c.mu.Unlock()
	c.cfg.Logger.Debug("checkpoint witnessed", "size", cp.Size)
	return true
}

// submit gets one witness's cosignature of a checkpoint. The witness
// answers 409 with the size it holds when the log's idea of it is wrong
// (after a restart, say); the checkpoint is then submitted once more with
// the proof from that size.
func (c *Collector) submit(ctx context.Context, w *witnessState, signed []byte, cp *checkpoint.Checkpoint) ([]byte, error) {
	for range 2 {
		if w.known > cp.Size {
			return nil, fmt.Errorf("the witness holds a checkpoint of %d entries, beyond this log's %d: it has seen another history of this log, or this log lost entries", w.known, cp.Size)
		}
		var proof [][32]byte
		if w.known > 0 && w.known < cp.Size {
			var err error
			if proof, err = c.cfg.Log.ConsistencyProof(ctx, w.known, cp.Size); err != nil {
				return nil, fmt.Errorf("consistency proof %d to %d: %w", w.known, cp.Size, err)
			}
		}
		lines, err := AddCheckpoint(ctx, c.cfg.HTTP, w.URL, w.known, proof, signed)
		var conflict *ConflictError
		if errors.As(err, &conflict) {
			w.known = conflict.Known
			continue
		}
		if err != nil {
			return nil, err
		}
		if _, err := w.policy.Check(append(append([]byte(nil), signed...), lines...)); err != nil {
			return nil, fmt.Errorf("the witness's answer: %w", err)
		}
		w.known = cp.Size
		return lines, nil
	}
	return nil, fmt.Errorf("the witness changed its size twice during one submission (now %d)", w.known)
}

// writeFileAtomic replaces path with data so that a crash leaves the old
// file or the new one, whole.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}
