package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Local keeps blobs as read-only files under Dir/sha256/<2 hex>/<64 hex>. It
// cannot enforce retention: anyone with write access to the directory can
// delete a blob, but not alter one unnoticed, since reads verify the digest.
type Local struct {
	Dir string
}

// NewLocal returns a store in dir, creating it (mode 0700) if needed.
func NewLocal(dir string) (*Local, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("artifact directory: %w", err)
	}
	return &Local{Dir: dir}, nil
}

func (l *Local) path(hexDigest string) string {
	return filepath.Join(l.Dir, "sha256", hexDigest[:2], hexDigest)
}

// Put writes r to a temporary file while hashing it, fsyncs it and renames
// it to its digest, then fsyncs the directory: a blob is either whole under
// its name or absent.
func (l *Local) Put(ctx context.Context, r io.Reader) (Ref, error) {
	tmp, err := os.CreateTemp(l.Dir, ".put-*")
	if err != nil {
		return Ref{}, fmt.Errorf("put artifact: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), ctxReader{ctx, r})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Ref{}, fmt.Errorf("put artifact: %w", err)
	}
	hexDigest := hex.EncodeToString(h.Sum(nil))
	ref := Ref{Digest: "sha256:" + hexDigest, Size: n, URI: "file://" + l.path(hexDigest)}
	dst := l.path(hexDigest)
	if _, err := os.Stat(dst); err == nil {
		return ref, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return Ref{}, fmt.Errorf("put artifact: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o400); err != nil {
		return Ref{}, fmt.Errorf("put artifact: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return Ref{}, fmt.Errorf("put artifact: %w", err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return Ref{}, fmt.Errorf("put artifact: %w", err)
	}
	return ref, nil
}

// Open returns a reader that verifies the blob's digest at its end.
func (l *Local) Open(_ context.Context, digest string) (io.ReadCloser, error) {
	h, err := parseDigest(digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(l.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, digest)
	}
	if err != nil {
		return nil, fmt.Errorf("open artifact %s: %w", digest, err)
	}
	return newVerifyingReader(f, h, digest, 0), nil
}

// Get reads a whole blob of at most max bytes (max <= 0: no limit) and
// returns it only if it matches its digest.
func (l *Local) Get(ctx context.Context, digest string, max int64) ([]byte, error) {
	h, err := parseDigest(digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(l.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, digest)
	}
	if err != nil {
		return nil, fmt.Errorf("open artifact %s: %w", digest, err)
	}
	return readVerified(f, h, digest, max)
}

// Exists reports whether a blob is stored (without reading it).
func (l *Local) Exists(_ context.Context, digest string) (bool, error) {
	h, err := parseDigest(digest)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(l.path(h))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("stat artifact %s: %w", digest, err)
}

// Delete removes a blob; a local directory has no retention to refuse it.
func (l *Local) Delete(_ context.Context, digest string) error {
	h, err := parseDigest(digest)
	if err != nil {
		return err
	}
	err = os.Remove(l.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, digest)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
