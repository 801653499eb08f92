// Package artifacts is Evident's content-addressed blob store for restricted
// evidence kept outside the log: plan files, redacted plan documents, apply
// logs. A blob is named by the SHA-256 of its bytes ("sha256:<64 hex>", the
// spelling of evidence.Artifact.Digest), so a record that names a digest
// names exactly one content, and every read checks the bytes against the name:
// a tampered or damaged blob is refused, never returned.
//
// Two backends: a local directory (the default) and any S3-compatible store
// through minio-go, where blobs can be put under object lock with COMPLIANCE
// retention so that nobody, not even the bucket owner, can delete or overwrite
// them before the retention date.
package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
)

// Sentinel errors callers branch on; returned wrapped with context.
var (
	// ErrNotFound: no blob with that digest.
	ErrNotFound = errors.New("artifact not found")
	// ErrDigestMismatch: the stored bytes do not hash to their name (the
	// blob was tampered with or damaged). Nothing of it should be trusted.
	ErrDigestMismatch = errors.New("artifact content does not match its digest")
	// ErrInvalidDigest: a digest not spelled "sha256:<64 lowercase hex>".
	ErrInvalidDigest = errors.New("invalid artifact digest")
	// ErrRetained: the store refused to delete a blob under retention.
	ErrRetained = errors.New("artifact is under retention")
)

// Ref names a stored blob.
type Ref struct {
	Digest string // "sha256:<64 hex>"
	Size   int64
	URI    string // where the backend keeps it, for evidence.Artifact.URI
}

// Store is a content-addressed blob store. Implementations are safe for
// concurrent use. Put returns only once the blob is durable (fsynced, or
// acknowledged by the object store); putting a blob that exists already is a
// no-op that returns its Ref. Open and Get verify the content against the
// digest: a reader from Open returns ErrDigestMismatch (wrapped) at the end
// of a tampered blob, so a caller must read to io.EOF before trusting any of
// it; Get reads it whole and returns nothing but the error.
type Store interface {
	Put(ctx context.Context, r io.Reader) (Ref, error)
	Open(ctx context.Context, digest string) (io.ReadCloser, error)
	Get(ctx context.Context, digest string, max int64) ([]byte, error)
	Exists(ctx context.Context, digest string) (bool, error)
	Delete(ctx context.Context, digest string) error
}

// Digest returns the artifact digest of b.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// parseDigest returns the hex part of a digest, or ErrInvalidDigest.
func parseDigest(d string) (string, error) {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%w: %q (want sha256: and 64 lowercase hex characters)", ErrInvalidDigest, d)
	}
	return h, nil
}

// verifyingReader hashes what it reads and, at EOF, compares with want. A
// blob that hashes to something else ends in ErrDigestMismatch instead of
// io.EOF; so does one longer than max.
type verifyingReader struct {
	r      io.ReadCloser
	h      hash.Hash
	want   string // hex
	digest string // for messages
	n, max int64  // max <= 0: unlimited
	err    error  // sticky final error
}

func newVerifyingReader(r io.ReadCloser, hexWant, digest string, max int64) *verifyingReader {
	return &verifyingReader{r: r, h: sha256.New(), want: hexWant, digest: digest, max: max}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.max > 0 && v.n > v.max {
		v.err = fmt.Errorf("artifact %s: larger than %d bytes", v.digest, v.max)
		return n, v.err
	}
	if errors.Is(err, io.EOF) {
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			v.err = fmt.Errorf("%w: %s holds content hashing to sha256:%s", ErrDigestMismatch, v.digest, got)
			return n, v.err
		}
		v.err = io.EOF
	} else if err != nil {
		v.err = fmt.Errorf("artifact %s: read: %w", v.digest, err)
	}
	return n, v.err
}

func (v *verifyingReader) Close() error { return v.r.Close() }

// readVerified reads a blob whole through a verifying reader.
func readVerified(rc io.ReadCloser, hexWant, digest string, max int64) ([]byte, error) {
	vr := newVerifyingReader(rc, hexWant, digest, max)
	b, err := io.ReadAll(vr)
	if err = errors.Join(err, rc.Close()); err != nil {
		return nil, err
	}
	return b, nil
}
