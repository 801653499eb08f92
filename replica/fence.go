package replica

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// WriterPath is the key of the writer claim: which writer the bucket takes
// writes from. It is not part of the tlog-tiles layout; readers ignore it.
const WriterPath = "writer"

// ErrFenced: another writer claimed the bucket after this one; this writer
// must stop writing to it (and acknowledging records it cannot export).
var ErrFenced = errors.New("another writer has claimed the bucket")

// Claim is a writer's hold on a bucket. Object stores have no locks, so
// the hold is checked, not enforced: every object the exporter overwrites
// or replaces, and every acknowledgement it releases, is preceded by Check,
// and objects it creates use conditional puts. A writer stalled past its
// turn (a paused process, a lost lease) therefore fails at its next write
// or acknowledgement and never overwrites its successor's checkpoint.
type Claim struct {
	store  Store
	etag   string // of this writer's claim object
	Writer string
}

type claimBody struct {
	Writer    string    `json:"writer"`
	ClaimedAt time.Time `json:"claimedAt"`
	Nonce     string    `json:"nonce"` // makes every claim's ETag unique
}

// ClaimBucket makes writer the bucket's only writer. It replaces the claim
// object on condition that it is still the one it read, so of two writers
// claiming at once exactly one succeeds; a writer that claimed before
// finds out at its next Check.
func ClaimBucket(ctx context.Context, store Store, writer string) (*Claim, error) {
	cond := Cond{IfAbsent: true}
	etag, err := store.Stat(ctx, WriterPath)
	switch {
	case err == nil:
		cond = Cond{IfMatch: etag}
	case !errors.Is(err, ErrNotExist):
		return nil, fmt.Errorf("claiming the bucket: %w", err)
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	body, err := json.Marshal(claimBody{Writer: writer, ClaimedAt: time.Now().UTC(), Nonce: hex.EncodeToString(nonce)})
	if err != nil {
		return nil, err
	}
	etag, err = store.Put(ctx, WriterPath, body, cond)
	if errors.Is(err, ErrPrecondition) {
		return nil, fmt.Errorf("%w: another writer claimed it at the same moment", ErrFenced)
	}
	if err != nil {
		return nil, fmt.Errorf("claiming the bucket: %w", err)
	}
	return &Claim{store: store, etag: etag, Writer: writer}, nil
}

// Check returns nil while the bucket's claim is still this one, and an
// error wrapping ErrFenced, naming the new writer, once another has claimed
// the bucket.
func (c *Claim) Check(ctx context.Context) error {
	etag, err := c.store.Stat(ctx, WriterPath)
	if errors.Is(err, ErrNotExist) {
		return fmt.Errorf("%w: the writer claim was removed", ErrFenced)
	}
	if err != nil {
		return fmt.Errorf("checking the writer claim: %w", err)
	}
	if etag == c.etag {
		return nil
	}
	var other claimBody
	if b, err := c.store.Get(ctx, WriterPath); err == nil {
		_ = json.Unmarshal(b, &other) // only to name the other writer
	}
	return fmt.Errorf("%w: %q claimed it at %s; this writer (%q) stops", ErrFenced, other.Writer, other.ClaimedAt.Format(time.RFC3339), c.Writer)
}

// putOnce stores an object that never changes once written: a tile or an
// entry bundle of a given width. Finding one there already is normal after
// a retry (same bytes). Different bytes were left by another writer, of a
// log this writer's bucket does not hold: they are replaced only while this
// writer holds the claim, so a fenced writer stops instead.
func putOnce(ctx context.Context, store Store, claim *Claim, key string, data []byte) (replaced bool, err error) {
	_, err = store.Put(ctx, key, data, Cond{IfAbsent: true})
	if !errors.Is(err, ErrPrecondition) {
		return false, err
	}
	old, err := store.Get(ctx, key)
	if err != nil {
		return false, err
	}
	if bytes.Equal(old, data) {
		return false, nil
	}
	if err := claim.Check(ctx); err != nil {
		return false, fmt.Errorf("%s holds other bytes: %w", key, err)
	}
	if _, err := store.Put(ctx, key, data, Cond{}); err != nil {
		return false, err
	}
	return true, nil
}
