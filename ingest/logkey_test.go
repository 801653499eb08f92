package ingest_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"evident.dev/evident/audit"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

const rotationOrigin = "evident.test/rotation"

type rotationKeys struct {
	old, next            ed25519.PrivateKey
	oldSigner, newSigner *checkpoint.Signer
}

func newRotationKeys(t *testing.T) rotationKeys {
	t.Helper()
	var k rotationKeys
	var err error
	for _, p := range []*ed25519.PrivateKey{&k.old, &k.next} {
		if _, *p, err = ed25519.GenerateKey(rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	if k.oldSigner, err = checkpoint.NewSigner(rotationOrigin, k.old); err != nil {
		t.Fatal(err)
	}
	if k.newSigner, err = checkpoint.NewSigner(rotationOrigin, k.next); err != nil {
		t.Fatal(err)
	}
	return k
}

// rotatedLog builds a real log (Badger and segment files) that starts with
// the old key, then reopens with the new key and the old one as previous,
// appends the rotation entry signed by rotateWith, and records a trust
// change signed by the new key. It returns the log's directory and the
// rotation entry's index.
func rotatedLog(t *testing.T, k rotationKeys, rotateWith ed25519.PrivateKey) (string, uint64) {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	lg, err := ledger.Open(ledger.Config{Dir: dir, Origin: rotationOrigin, Signer: k.oldSigner})
	if err != nil {
		t.Fatal(err)
	}
	g := ingest.Genesis{Operator: "ops@example.com", Origin: rotationOrigin, LogKey: k.oldSigner.VerifierKey(), Now: now}
	if err := ingest.EnsureTrust(ctx, lg, k.old, verifier.TrustConfig{}, g); err != nil {
		t.Fatal(err)
	}
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	lg, err = ledger.Open(ledger.Config{Dir: dir, Origin: rotationOrigin, Signer: k.newSigner, PreviousSigner: k.oldSigner})
	if err != nil {
		t.Fatal(err)
	}
	if err := ingest.RotateLogKey(ctx, lg, rotateWith, k.newSigner.VerifierKey(), "ops@example.com", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	rotation := lg.Size() - 1
	if keys := lg.LogKeys(); len(keys) != 2 || keys[1] != (ledger.LogKey{At: rotation, VerifierKey: k.newSigner.VerifierKey()}) {
		t.Fatalf("the log's chain of keys is %+v after the rotation entry %d", keys, rotation)
	}
	g.Now = now.Add(2 * time.Hour)
	changed := verifier.TrustConfig{Groups: map[string][]string{"platform": {"erin@example.com"}}}
	if err := ingest.EnsureTrust(ctx, lg, k.next, changed, g); err != nil {
		t.Fatal(err)
	}
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, rotation
}

// editedLog is a log whose checkpoints an attacker replaced.
type editedLog struct {
	audit.LogSource
	checkpoints [][]byte
}

func (e editedLog) Checkpoints(context.Context) ([][]byte, error) { return e.checkpoints, nil }

func snapshot(t *testing.T, dir string) *ledger.Snapshot {
	t.Helper()
	store, err := ledger.OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	snap, err := store.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snap.Close() })
	return snap
}

func checkRotated(src audit.LogSource, k rotationKeys, signatures bool) (*audit.CheckReport, error) {
	return audit.CheckLog(context.Background(), src, audit.CheckOptions{
		Origin: rotationOrigin, LogKey: k.oldSigner.VerifierKey(), Signatures: signatures,
	})
}

// resign replaces the signatures of a checkpoint note by those of signers.
func resign(t *testing.T, cp []byte, signers ...note.Signer) []byte {
	t.Helper()
	text, _, ok := bytes.Cut(cp, []byte("\n\n"))
	if !ok {
		t.Fatalf("not a signed note: %q", cp)
	}
	signed, err := note.Sign(&note.Note{Text: string(text) + "\n"}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func noteSize(t *testing.T, cp []byte) uint64 {
	t.Helper()
	lines := strings.SplitN(string(cp), "\n", 3)
	n, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLogKeyRotation: a log rotated honestly verifies from the old (genesis)
// key; a rotation entry signed by the new key alone, a first checkpoint
// after it without the old key's signature, and a later checkpoint signed
// by the old key alone are each refused, naming the entry or checkpoint.
func TestLogKeyRotation(t *testing.T) {
	k := newRotationKeys(t)
	dir, rotation := rotatedLog(t, k, k.old)
	snap := snapshot(t, dir)
	for _, signatures := range []bool{true, false} {
		rep, err := checkRotated(snap, k, signatures)
		if err != nil {
			t.Fatalf("signatures=%v: the honestly rotated log fails: %v", signatures, err)
		}
		if len(rep.Rotations) != 1 || rep.Rotations[0].Entry != rotation || rep.Rotations[0].To != k.newSigner.VerifierKey() || rep.Rotations[0].CheckpointSize <= rotation {
			t.Fatalf("signatures=%v: rotations %+v, want one at entry %d", signatures, rep.Rotations, rotation)
		}
	}
	if _, err := audit.CheckLog(t.Context(), snap, audit.CheckOptions{Origin: rotationOrigin, LogKey: k.newSigner.VerifierKey(), Signatures: true}); err == nil {
		t.Fatal("pinned to the new key, the log verifies, though its genesis names the old one")
	}

	cps, err := snap.Checkpoints(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	first := -1 // the cross-signed checkpoint
	for i, cp := range cps {
		if noteSize(t, cp) > rotation {
			first = i
			break
		}
	}
	if first < 0 || first == len(cps)-1 {
		t.Fatalf("want a cross-signed checkpoint and one after it; checkpoints: %q", cps)
	}
	forged := func(i int, signers ...note.Signer) editedLog {
		e := editedLog{LogSource: snap, checkpoints: append([][]byte(nil), cps...)}
		e.checkpoints[i] = resign(t, cps[i], signers...)
		return e
	}
	for _, c := range []struct {
		name string
		src  editedLog
		want string
	}{
		{"first checkpoint after the rotation signed by the new key alone", forged(first, k.newSigner),
			"the first after the log key rotation of entry " + strconv.FormatUint(rotation, 10) + ", is not signed by the key it replaces"},
		{"first checkpoint after the rotation signed by the old key alone", forged(first, k.oldSigner),
			"is not signed by the new key " + k.newSigner.VerifierKey()},
		{"later checkpoint signed by the old key alone", forged(len(cps)-1, k.oldSigner),
			"is not signed by the log key in force since entry " + strconv.FormatUint(rotation, 10)},
	} {
		for _, signatures := range []bool{true, false} {
			_, err := checkRotated(c.src, k, signatures)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s (signatures=%v): err = %v, want %q", c.name, signatures, err, c.want)
			}
		}
	}

	t.Run("rotation entry signed by the new key alone", func(t *testing.T) {
		dir, rotation := rotatedLog(t, k, k.next)
		snap := snapshot(t, dir)
		for _, signatures := range []bool{true, false} {
			_, err := checkRotated(snap, k, signatures)
			var bad *audit.BadEntryError
			if !errors.As(err, &bad) || bad.Index != rotation || !strings.Contains(err.Error(), "untrusted") {
				t.Fatalf("signatures=%v: err = %v, want entry %d refused as signed by an untrusted key", signatures, err, rotation)
			}
		}
	})
}

// TestLogKeyRotationRetiresTheOldKey: once the chain names the new key, a
// log opened with the old key alone signs no checkpoint and takes nothing.
func TestLogKeyRotationRetiresTheOldKey(t *testing.T) {
	k := newRotationKeys(t)
	dir, _ := rotatedLog(t, k, k.old)
	lg, err := ledger.Open(ledger.Config{Dir: dir, Origin: rotationOrigin, Signer: k.oldSigner})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	// The chain names the new key: the old one alone cannot sign.
	err = ingest.EnsureTrust(t.Context(), lg, k.old, verifier.TrustConfig{}, ingest.Genesis{Operator: "ops@example.com", Origin: rotationOrigin, Now: time.Now()})
	if !errors.Is(err, ledger.ErrKey) || !strings.Contains(err.Error(), k.newSigner.VerifierKey()) {
		t.Fatalf("appending with only the old key: %v, want a refusal naming the missing log key", err)
	}
}

// TestLogKeyRotationFollower: a follower log pinned to the genesis key
// mirrors the rotated log, checkpoint by checkpoint, across the rotation,
// and refuses the first checkpoint after it when the old key's signature
// is missing.
func TestLogKeyRotationFollower(t *testing.T) {
	k := newRotationKeys(t)
	dir, rotation := rotatedLog(t, k, k.old)
	snap := snapshot(t, dir)
	var leaves [][]byte
	if err := snap.Leaves(t.Context(), func(_ uint64, leaf []byte) error {
		leaves = append(leaves, bytes.Clone(leaf))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cps, err := snap.Checkpoints(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	mirror := func(t *testing.T, edit func(i int, cp []byte) []byte) error {
		f, err := ledger.Open(ledger.Config{Dir: t.TempDir(), Origin: rotationOrigin, VerifierKey: k.oldSigner.VerifierKey()})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		done := uint64(0)
		for i, cp := range cps {
			size := noteSize(t, cp)
			if size <= done {
				continue
			}
			if _, err := f.AppendLeaves(t.Context(), leaves[done:size], edit(i, cp)); err != nil {
				return err
			}
			done = size
		}
		if keys := f.LogKeys(); len(keys) != 2 || f.VerifierKey() != k.newSigner.VerifierKey() {
			t.Fatalf("the follower's chain of keys: %+v", keys)
		}
		return nil
	}
	if err := mirror(t, func(_ int, cp []byte) []byte { return cp }); err != nil {
		t.Fatalf("the follower refuses the honest rotation: %v", err)
	}
	err = mirror(t, func(i int, cp []byte) []byte {
		if noteSize(t, cp) > rotation && (i == 0 || noteSize(t, cps[i-1]) <= rotation) {
			return resign(t, cp, k.newSigner)
		}
		return cp
	})
	if !errors.Is(err, ledger.ErrMirror) || !strings.Contains(err.Error(), "not signed by the log key") {
		t.Fatalf("a first checkpoint after the rotation signed by the new key alone: %v, want ErrMirror", err)
	}
}

// TestLogKeyRotationCrash: a crash after the rotation entry reached the
// segment files but before Badger recorded it (and the cross-signed
// checkpoint) leaves the rotation unfinished. Reopened with the new key
// alone, the log signs nothing (it would need the old key too); with both
// keys it writes the cross-signed checkpoint for the replayed entry, and
// the log verifies from the genesis key.
func TestLogKeyRotationCrash(t *testing.T) {
	k := newRotationKeys(t)
	ctx := t.Context()
	dir := t.TempDir()
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	lg, err := ledger.Open(ledger.Config{Dir: dir, Origin: rotationOrigin, Signer: k.oldSigner})
	if err != nil {
		t.Fatal(err)
	}
	if err := ingest.EnsureTrust(ctx, lg, k.old, verifier.TrustConfig{}, ingest.Genesis{Operator: "ops@example.com", Origin: rotationOrigin, LogKey: k.oldSigner.VerifierKey(), Now: now}); err != nil {
		t.Fatal(err)
	}
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "index")
	copyTree(t, filepath.Join(dir, "index"), backup)

	lg, err = ledger.Open(ledger.Config{Dir: dir, Origin: rotationOrigin, Signer: k.newSigner, PreviousSigner: k.oldSigner})
	if err != nil {
		t.Fatal(err)
	}
	if err := ingest.RotateLogKey(ctx, lg, k.old, k.newSigner.VerifierKey(), "ops@example.com", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	rotation := lg.Size() - 1
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	// The crash: Badger's state is back to before the rotation; the
	// segment files hold the rotation entry.
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}
	copyTree(t, backup, filepath.Join(dir, "index"))

	lg, err = ledger.Open(ledger.Config{Dir: dir, Origin: rotationOrigin, Signer: k.newSigner})
	if err != nil {
		t.Fatal(err)
	}
	if keys := lg.LogKeys(); len(keys) != 2 || keys[1].At != rotation || lg.CheckpointSize() > rotation {
		t.Fatalf("after replay: keys %+v, checkpoint of %d entries; want the rotation at %d replayed and not yet cross-signed", keys, lg.CheckpointSize(), rotation)
	}
	err = ingest.EnsureTrust(ctx, lg, k.next, verifier.TrustConfig{Groups: map[string][]string{"ops": {"ops@example.com"}}}, ingest.Genesis{Operator: "ops@example.com", Origin: rotationOrigin, Now: now.Add(2 * time.Hour)})
	if !errors.Is(err, ledger.ErrKey) || !strings.Contains(err.Error(), k.oldSigner.VerifierKey()) {
		t.Fatalf("appending without the old key: %v, want ErrKey naming the old key", err)
	}
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}

	lg, err = ledger.Open(ledger.Config{Dir: dir, Origin: rotationOrigin, Signer: k.newSigner, PreviousSigner: k.oldSigner})
	if err != nil {
		t.Fatal(err)
	}
	// The replayed rotation is cross-signed by the next checkpoint, which
	// the sequencer signs at start (recovered entries need one).
	deadline := time.Now().Add(10 * time.Second)
	for lg.CheckpointSize() <= rotation {
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint past the replayed rotation at %d after 10s (checkpoint of %d entries)", rotation, lg.CheckpointSize())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := checkRotated(snapshot(t, dir), k, true)
	if err != nil {
		t.Fatalf("the log after the crash and the cross-signing: %v", err)
	}
	if len(rep.Rotations) != 1 || rep.Rotations[0].Entry != rotation {
		t.Fatalf("rotations %+v, want one at entry %d", rep.Rotations, rotation)
	}
}

// copyTree copies a closed Badger directory.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}
