package artifacts_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"evident.dev/evident/artifacts"
	"evident.dev/evident/internal/testenv"
)

// checkStore runs the behaviour every store shares. tamper replaces the
// stored bytes of a digest behind the store's back.
func checkStore(t *testing.T, s artifacts.Store, tamper func(t *testing.T, digest string, b []byte)) {
	ctx := context.Background()
	content := []byte("plan file bytes\n")
	ref, err := s.Put(ctx, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	if ref.Digest != artifacts.Digest(content) || ref.Size != int64(len(content)) || ref.URI == "" {
		t.Fatalf("Put returned %+v, want digest %s size %d and a URI", ref, artifacts.Digest(content), len(content))
	}
	again, err := s.Put(ctx, bytes.NewReader(content))
	if err != nil || again != ref {
		t.Fatalf("second Put of the same content = %+v, %v; want %+v", again, err, ref)
	}
	got, err := s.Get(ctx, ref.Digest, 0)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if _, err := s.Get(ctx, ref.Digest, 4); err == nil {
		t.Fatal("Get with a limit below the blob's size succeeded")
	}
	rc, err := s.Open(ctx, ref.Digest)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("Open+ReadAll = %q, %v", got, err)
	}
	if ok, err := s.Exists(ctx, ref.Digest); !ok || err != nil {
		t.Fatalf("Exists(stored) = %v, %v", ok, err)
	}
	missing := artifacts.Digest([]byte("never stored"))
	if ok, err := s.Exists(ctx, missing); ok || err != nil {
		t.Fatalf("Exists(missing) = %v, %v", ok, err)
	}
	if _, err := s.Get(ctx, missing, 0); !errors.Is(err, artifacts.ErrNotFound) {
		t.Fatalf("Get(missing) error = %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"", "sha256:abc", "md5:" + strings.Repeat("a", 64), "sha256:" + strings.Repeat("A", 64), "sha256:../" + strings.Repeat("a", 61)} {
		if _, err := s.Get(ctx, bad, 0); !errors.Is(err, artifacts.ErrInvalidDigest) {
			t.Errorf("Get(%q) error = %v, want ErrInvalidDigest", bad, err)
		}
	}

	// A tampered blob is refused by Get, and by Open's reader at its end.
	victim, err := s.Put(ctx, strings.NewReader("apply log: 3 resources changed\n"))
	if err != nil {
		t.Fatal(err)
	}
	tamper(t, victim.Digest, []byte("apply log: 0 resources changed\n"))
	if b, err := s.Get(ctx, victim.Digest, 0); !errors.Is(err, artifacts.ErrDigestMismatch) || b != nil {
		t.Fatalf("Get(tampered) = %q, %v; want nothing and ErrDigestMismatch", b, err)
	}
	rc, err = s.Open(ctx, victim.Digest)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, artifacts.ErrDigestMismatch) {
		t.Fatalf("reading a tampered blob through Open ended with %v, want ErrDigestMismatch", err)
	}
}

func TestLocal(t *testing.T) {
	dir := t.TempDir()
	s, err := artifacts.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkStore(t, s, func(t *testing.T, digest string, b []byte) {
		hexDigest := strings.TrimPrefix(digest, "sha256:")
		p := filepath.Join(dir, "sha256", hexDigest[:2], hexDigest)
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	})
	ref, err := s.Put(context.Background(), strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(context.Background(), ref.Digest); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Exists(context.Background(), ref.Digest); ok {
		t.Fatal("blob still exists after Delete")
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".put-*"))
	if len(leftovers) > 0 {
		t.Fatalf("temporary files left behind: %v", leftovers)
	}
}

// TestS3 runs against a real MinIO server with object lock: COMPLIANCE
// retention refuses deletion, and a blob overwritten behind the store's back
// is refused on read.
func TestS3(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a MinIO server")
	}
	m := testenv.StartMinIO(t)
	ctx := context.Background()
	cfg := artifacts.S3Config{
		Endpoint: m.Endpoint, Insecure: true, Bucket: "evidence", Prefix: "runs",
		AccessKey: m.AccessKey, SecretKey: m.SecretKey, Retention: time.Hour,
	}
	s, err := artifacts.NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(ctx); err != nil {
		t.Fatalf("EnsureBucket on an existing locked bucket: %v", err)
	}
	// The root user can write any object: that is how an attacker with
	// the store's credentials would tamper with a blob.
	raw, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	checkStore(t, s, func(t *testing.T, digest string, b []byte) {
		key := "runs/sha256/" + strings.TrimPrefix(digest, "sha256:")
		if _, err := raw.PutObject(ctx, "evidence", key, bytes.NewReader(b), int64(len(b)),
			minio.PutObjectOptions{SendContentMd5: true}); err != nil {
			t.Fatal(err)
		}
	})

	ref, err := s.Put(ctx, strings.NewReader("retained evidence"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ref.URI, "s3://evidence/runs/sha256/") {
		t.Fatalf("URI = %q", ref.URI)
	}
	mode, until, err := s.Retention(ctx, ref.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if mode != "COMPLIANCE" || time.Until(until) < 50*time.Minute {
		t.Fatalf("retention = %s until %v, want COMPLIANCE about an hour from now", mode, until)
	}
	if err := s.Delete(ctx, ref.Digest); !errors.Is(err, artifacts.ErrRetained) {
		r := minio.ToErrorResponse(errors.Unwrap(err))
		t.Fatalf("Delete under COMPLIANCE retention = %v (code %q status %d), want ErrRetained", err, r.Code, r.StatusCode)
	}
	// Not even the root user gets rid of the version.
	info, err := raw.StatObject(ctx, "evidence", "runs/sha256/"+strings.TrimPrefix(ref.Digest, "sha256:"), minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = raw.RemoveObject(ctx, "evidence", info.Key, minio.RemoveObjectOptions{VersionID: info.VersionID, GovernanceBypass: true})
	if err == nil {
		t.Fatal("the root user deleted a version under COMPLIANCE retention")
	}
	if got, err := s.Get(ctx, ref.Digest, 0); err != nil || string(got) != "retained evidence" {
		t.Fatalf("after refused deletes, Get = %q, %v", got, err)
	}

	// Retention configured on a bucket without object lock is refused.
	if err := raw.MakeBucket(ctx, "unlocked", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg.Bucket = "unlocked"
	unlocked, err := artifacts.NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := unlocked.EnsureBucket(ctx); err == nil || !strings.Contains(err.Error(), "object lock") {
		t.Fatalf("EnsureBucket with retention on a bucket without object lock = %v", err)
	}
}

// Digests come from records, which come from outside: whatever the string,
// a local store answers ErrInvalidDigest or ErrNotFound and never reads a
// file that is not a blob.
func FuzzLocalDigest(f *testing.F) {
	dir := f.TempDir()
	s, err := artifacts.NewLocal(filepath.Join(dir, "store"))
	if err != nil {
		f.Fatal(err)
	}
	// A file a traversing digest could reach.
	if err := os.WriteFile(filepath.Join(dir, strings.Repeat("a", 64)), []byte("x"), 0o600); err != nil {
		f.Fatal(err)
	}
	f.Add("sha256:" + strings.Repeat("a", 64))
	f.Add("sha256:../../" + strings.Repeat("a", 58))
	f.Add("sha256:/" + strings.Repeat("a", 63))
	f.Fuzz(func(t *testing.T, d string) {
		_, err := s.Get(context.Background(), d, 0)
		if !errors.Is(err, artifacts.ErrInvalidDigest) && !errors.Is(err, artifacts.ErrNotFound) {
			t.Fatalf("Get(%q) = %v", d, err)
		}
		if ok, err := s.Exists(context.Background(), d); ok || (err != nil && !errors.Is(err, artifacts.ErrInvalidDigest)) {
			t.Fatalf("Exists(%q) = %v, %v", d, ok, err)
		}
	})
}
