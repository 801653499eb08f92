package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config names a bucket of an S3-compatible store.
type S3Config struct {
	Endpoint  string // host:port, e.g. "s3.amazonaws.com" or "127.0.0.1:9000"
	Insecure  bool   // plain HTTP (a local MinIO); HTTPS otherwise
	Region    string
	Bucket    string
	Prefix    string // key prefix, e.g. "evident/"; blobs are <prefix>sha256/<hex>
	AccessKey string
	SecretKey string
	// SessionToken is for temporary credentials (an assumed role).
	SessionToken string
	// Retention, when positive, puts every new blob under object lock until
	// now + Retention in RetentionMode. The bucket must have object lock
	// enabled (EnsureBucket creates it so).
	Retention time.Duration
	// RetentionMode is "COMPLIANCE" (default: nobody can shorten it or
	// delete the blob) or "GOVERNANCE" (privileged users can bypass it).
	RetentionMode string
	// TempDir spools a blob while its digest is computed; default os.TempDir.
	TempDir string
	// Clock gives the time retention counts from; nil means time.Now.
	Clock func() time.Time
}

// S3 keeps blobs in an S3-compatible bucket.
type S3 struct {
	cfg  S3Config
	mode minio.RetentionMode
	mc   *minio.Client
}

// NewS3 returns a store for the configured bucket. It does not contact the
// server: call EnsureBucket at start to create or check the bucket.
func NewS3(cfg S3Config) (*S3, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("s3 artifact store: endpoint and bucket are required")
	}
	if cfg.Prefix != "" && !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	mode := minio.Compliance
	switch strings.ToUpper(cfg.RetentionMode) {
	case "", "COMPLIANCE":
	case "GOVERNANCE":
		mode = minio.Governance
	default:
		return nil, fmt.Errorf("s3 artifact store: retention mode %q: want COMPLIANCE or GOVERNANCE", cfg.RetentionMode)
	}
	mc, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure: !cfg.Insecure,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 artifact store: %w", err)
	}
	return &S3{cfg: cfg, mode: mode, mc: mc}, nil
}

// EnsureBucket creates the bucket (with object lock when retention is
// configured) if it does not exist, and refuses a bucket without object lock
// when retention is configured: blobs put there could be deleted at will.
func (s *S3) EnsureBucket(ctx context.Context) error {
	ok, err := s.mc.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("s3 artifact store: bucket %s: %w", s.cfg.Bucket, err)
	}
	if !ok {
		err := s.mc.MakeBucket(ctx, s.cfg.Bucket, minio.MakeBucketOptions{Region: s.cfg.Region, ObjectLocking: s.cfg.Retention > 0})
		if err != nil && minio.ToErrorResponse(err).Code != "BucketAlreadyOwnedByYou" {
			return fmt.Errorf("s3 artifact store: create bucket %s: %w", s.cfg.Bucket, err)
		}
	}
	if s.cfg.Retention <= 0 {
		return nil
	}
	status, _, _, _, err := s.mc.GetObjectLockConfig(ctx, s.cfg.Bucket)
	if err != nil || status != "Enabled" {
		return fmt.Errorf("s3 artifact store: bucket %s has no object lock enabled (%v), so retention cannot be enforced: "+
			"create the bucket with object lock, or set no retention", s.cfg.Bucket, err)
	}
	return nil
}

func (s *S3) key(hexDigest string) string {
	return s.cfg.Prefix + "sha256/" + hexDigest
}

func (s *S3) uri(hexDigest string) string {
	return "s3://" + path.Join(s.cfg.Bucket, s.key(hexDigest))
}

// Put spools r to a temporary file to learn its digest, then uploads it
// under that name, with retention when configured. A blob already stored is
// not uploaded again (under object lock that would only add a version).
func (s *S3) Put(ctx context.Context, r io.Reader) (Ref, error) {
	tmp, err := os.CreateTemp(s.cfg.TempDir, "evident-artifact-*")
	if err != nil {
		return Ref{}, fmt.Errorf("put artifact: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), ctxReader{ctx, r})
	if err != nil {
		return Ref{}, fmt.Errorf("put artifact: %w", err)
	}
	hexDigest := hex.EncodeToString(h.Sum(nil))
	ref := Ref{Digest: "sha256:" + hexDigest, Size: n, URI: s.uri(hexDigest)}
	if ok, err := s.Exists(ctx, ref.Digest); err != nil {
		return Ref{}, err
	} else if ok {
		return ref, nil
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return Ref{}, fmt.Errorf("put artifact: %w", err)
	}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", SendContentMd5: true}
	if s.cfg.Retention > 0 {
		opts.Mode = s.mode
		opts.RetainUntilDate = s.cfg.Clock().Add(s.cfg.Retention).UTC()
	}
	if _, err := s.mc.PutObject(ctx, s.cfg.Bucket, s.key(hexDigest), tmp, n, opts); err != nil {
		return Ref{}, fmt.Errorf("put artifact %s: %w", ref.Digest, err)
	}
	return ref, nil
}

// Open returns a reader that verifies the blob's digest at its end.
func (s *S3) Open(ctx context.Context, digest string) (io.ReadCloser, error) {
	h, obj, err := s.open(ctx, digest)
	if err != nil {
		return nil, err
	}
	return newVerifyingReader(obj, h, digest, 0), nil
}

// Get reads a whole blob of at most max bytes (max <= 0: no limit) and
// returns it only if it matches its digest.
func (s *S3) Get(ctx context.Context, digest string, max int64) ([]byte, error) {
	h, obj, err := s.open(ctx, digest)
	if err != nil {
		return nil, err
	}
	return readVerified(obj, h, digest, max)
}

func (s *S3) open(ctx context.Context, digest string) (string, *minio.Object, error) {
	h, err := parseDigest(digest)
	if err != nil {
		return "", nil, err
	}
	obj, err := s.mc.GetObject(ctx, s.cfg.Bucket, s.key(h), minio.GetObjectOptions{})
	if err == nil {
		_, err = obj.Stat() // GetObject is lazy: learn now whether it exists
	}
	if err != nil {
		if obj != nil {
			obj.Close()
		}
		if isNotFound(err) {
			return "", nil, fmt.Errorf("%w: %s", ErrNotFound, digest)
		}
		return "", nil, fmt.Errorf("get artifact %s: %w", digest, err)
	}
	return h, obj, nil
}

// Exists reports whether a blob is stored (without reading it).
func (s *S3) Exists(ctx context.Context, digest string) (bool, error) {
	h, err := parseDigest(digest)
	if err != nil {
		return false, err
	}
	_, err = s.mc.StatObject(ctx, s.cfg.Bucket, s.key(h), minio.StatObjectOptions{})
	switch {
	case err == nil:
		return true, nil
	case isNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("stat artifact %s: %w", digest, err)
}

// Delete removes every version of a blob. Under object lock a version whose
// retention has not passed cannot be removed: that is ErrRetained, and the
// blob stays readable. (It never adds a delete marker, which would hide a
// retained blob without removing it.)
func (s *S3) Delete(ctx context.Context, digest string) error {
	h, err := parseDigest(digest)
	if err != nil {
		return err
	}
	key := s.key(h)
	found := false
	for obj := range s.mc.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: key, WithVersions: true}) {
		if obj.Err != nil {
			return fmt.Errorf("delete artifact %s: list versions: %w", digest, obj.Err)
		}
		if obj.Key != key {
			continue
		}
		found = true
		err := s.mc.RemoveObject(ctx, s.cfg.Bucket, key, minio.RemoveObjectOptions{VersionID: obj.VersionID})
		if err != nil {
			if resp := minio.ToErrorResponse(err); isRetained(resp) {
				return fmt.Errorf("%w: %s: %s", ErrRetained, digest, resp.Message)
			}
			return fmt.Errorf("delete artifact %s: %w", digest, err)
		}
	}
	if !found {
		return fmt.Errorf("%w: %s", ErrNotFound, digest)
	}
	return nil
}

// Retention returns the retention mode and date of a stored blob.
func (s *S3) Retention(ctx context.Context, digest string) (mode string, until time.Time, err error) {
	h, err := parseDigest(digest)
	if err != nil {
		return "", time.Time{}, err
	}
	m, u, err := s.mc.GetObjectRetention(ctx, s.cfg.Bucket, s.key(h), "")
	if err != nil {
		return "", time.Time{}, fmt.Errorf("retention of artifact %s: %w", digest, err)
	}
	if m != nil {
		mode = string(*m)
	}
	if u != nil {
		until = *u
	}
	return mode, until, nil
}

func isNotFound(err error) bool {
	resp := minio.ToErrorResponse(err)
	if resp.Code == "NoSuchBucket" {
		return false // a missing bucket is a configuration error, not a missing blob
	}
	return resp.Code == "NoSuchKey" || resp.Code == "NotFound" || resp.StatusCode == http.StatusNotFound
}

// isRetained reports whether a refused delete is object lock at work, and
// not, say, missing permissions. MinIO answers 400 InvalidRequest "Object
// is WORM protected and cannot be overwritten"; AWS S3 403 AccessDenied
// "Access Denied because object protected by object lock".
func isRetained(resp minio.ErrorResponse) bool {
	if resp.Code == "ObjectLocked" {
		return true
	}
	msg := strings.ToLower(resp.Message)
	return (resp.Code == "AccessDenied" || resp.Code == "InvalidRequest") &&
		(strings.Contains(msg, "worm") || strings.Contains(msg, "object lock") || strings.Contains(msg, "retention"))
}
