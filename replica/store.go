package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Store is the object storage the tiles live in. Implementations are safe
// for concurrent use. Put returns only once the object is durably stored (an
// S3 PUT is acknowledged after the object is written).
type Store interface {
	// Put stores data under key if cond holds, and returns the stored
	// object's ETag. A condition that does not hold returns an error
	// wrapping ErrPrecondition, and nothing is written.
	Put(ctx context.Context, key string, data []byte, cond Cond) (etag string, err error)
	// Get returns an error wrapping ErrNotExist when there is no such key.
	Get(ctx context.Context, key string) ([]byte, error)
	// Stat returns the ETag of the object under key, or an error wrapping
	// ErrNotExist.
	Stat(ctx context.Context, key string) (etag string, err error)
	// List returns the keys that start with prefix.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete removes an object; a missing one is not an error.
	Delete(ctx context.Context, key string) error
}

// ErrNotExist: no object under that key.
var ErrNotExist = errors.New("no such object")

// ErrPrecondition: a conditional Put found the object other than its
// condition expected.
var ErrPrecondition = errors.New("precondition failed")

// Cond is the precondition of a Put, checked by the object store in the
// same request (S3's If-None-Match and If-Match), so that two writers cannot
// both succeed. The zero Cond writes unconditionally.
type Cond struct {
	// IfAbsent writes only if no object is under the key.
	IfAbsent bool
	// IfMatch writes only if the object under the key has this ETag.
	IfMatch string
}

// S3Config locates a bucket. Credentials are passed in; the command reads
// them from the environment, never from configuration files.
type S3Config struct {
	URL       string // s3://bucket[/prefix]
	Endpoint  string // host:port
	Secure    bool   // TLS
	Region    string
	AccessKey string
	SecretKey string
}

// S3 is a Store in an S3-compatible bucket under a key prefix.
type S3 struct {
	client *minio.Client
	bucket string
	prefix string // "" or "prefix/"
}

// ParseURL splits s3://bucket/prefix.
func ParseURL(raw string) (bucket, prefix string, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return "", "", fmt.Errorf("object store URL %q: want s3://bucket[/prefix]", raw)
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	return u.Host, prefix, nil
}

// OpenS3 connects to the bucket and checks that it exists.
func OpenS3(ctx context.Context, cfg S3Config) (*S3, error) {
	bucket, prefix, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Endpoint == "" {
		return nil, fmt.Errorf("object store %s: no endpoint configured", cfg.URL)
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: cfg.Secure,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", cfg.Endpoint, err)
	}
	ok, err := client.BucketExists(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("object store %s: bucket %s: %w", cfg.Endpoint, bucket, err)
	}
	if !ok {
		return nil, fmt.Errorf("object store %s: bucket %s does not exist", cfg.Endpoint, bucket)
	}
	return &S3{client: client, bucket: bucket, prefix: prefix}, nil
}

// Put implements Store.
func (s *S3) Put(ctx context.Context, key string, data []byte, cond Cond) (string, error) {
	ct := "application/octet-stream"
	if key == CheckpointPath {
		ct = "text/plain; charset=utf-8"
	}
	opts := minio.PutObjectOptions{ContentType: ct, DisableMultipart: true}
	switch {
	case cond.IfAbsent:
		opts.SetMatchETagExcept("*")
	case cond.IfMatch != "":
		opts.SetMatchETag(cond.IfMatch)
	}
	info, err := s.client.PutObject(ctx, s.bucket, s.prefix+key, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		r := minio.ToErrorResponse(err)
		// If-Match on a missing object is answered 404, not 412.
		if r.StatusCode == http.StatusPreconditionFailed || (cond.IfMatch != "" && r.Code == minio.NoSuchKey) {
			return "", fmt.Errorf("put %s: %w", key, ErrPrecondition)
		}
		return "", fmt.Errorf("put %s: %w", key, err)
	}
	return info.ETag, nil
}

// Stat implements Store.
func (s *S3) Stat(ctx context.Context, key string) (string, error) {
	info, err := s.client.StatObject(ctx, s.bucket, s.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return "", fmt.Errorf("stat %s: %w", key, ErrNotExist)
		}
		return "", fmt.Errorf("stat %s: %w", key, err)
	}
	return info.ETag, nil
}

// Get implements Store.
func (s *S3) Get(ctx context.Context, key string) ([]byte, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, s.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.getErr(key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		return nil, s.getErr(key, err)
	}
	return b, nil
}

func (s *S3) getErr(key string, err error) error {
	if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
		return fmt.Errorf("get %s: %w", key, ErrNotExist)
	}
	return fmt.Errorf("get %s: %w", key, err)
}

// List implements Store.
func (s *S3) List(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, obj.Err)
		}
		out = append(out, strings.TrimPrefix(obj.Key, s.prefix))
	}
	return out, nil
}

// Delete implements Store.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := s.client.RemoveObject(ctx, s.bucket, s.prefix+key, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}
