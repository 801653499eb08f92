package server

import (
	"context"
	"errors"
	"os"
	"time"

	"evident.dev/evident/artifacts"
)

// ArtifactsConfig chooses the artifact store: a local directory, or an
// S3-compatible bucket. Credentials come from the environment
// (EVIDENT_S3_ACCESS_KEY and EVIDENT_S3_SECRET_KEY, or AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN), never from a file in the
// repository.
type ArtifactsConfig struct {
	Dir string `yaml:"dir"`
	S3  struct {
		Endpoint      string        `yaml:"endpoint"` // host:port
		Insecure      bool          `yaml:"insecure"` // plain HTTP (a local MinIO)
		Region        string        `yaml:"region"`
		Bucket        string        `yaml:"bucket"`
		Prefix        string        `yaml:"prefix"`
		Retention     time.Duration `yaml:"retention"`     // object lock retention of new blobs
		RetentionMode string        `yaml:"retentionMode"` // COMPLIANCE (default) or GOVERNANCE
	} `yaml:"s3"`
}

// Configured reports whether a store is set.
func (c ArtifactsConfig) Configured() bool { return c.Dir != "" || c.S3.Bucket != "" }

// Open returns the configured store; an S3 bucket is created (with object
// lock when retention is set) or checked first.
func (c ArtifactsConfig) Open(ctx context.Context) (artifacts.Store, error) {
	if c.S3.Bucket == "" {
		if c.Dir == "" {
			return nil, errors.New("artifact store: set a directory or an S3 bucket")
		}
		return artifacts.NewLocal(c.Dir)
	}
	if c.Dir != "" {
		return nil, usageErrorf("artifact store: set a directory or an S3 bucket, not both")
	}
	access := firstOf(os.Getenv("EVIDENT_S3_ACCESS_KEY"), os.Getenv("AWS_ACCESS_KEY_ID"))
	secret := firstOf(os.Getenv("EVIDENT_S3_SECRET_KEY"), os.Getenv("AWS_SECRET_ACCESS_KEY"))
	s, err := artifacts.NewS3(artifacts.S3Config{
		Endpoint: c.S3.Endpoint, Insecure: c.S3.Insecure, Region: c.S3.Region,
		Bucket: c.S3.Bucket, Prefix: c.S3.Prefix,
		AccessKey: access, SecretKey: secret, SessionToken: os.Getenv("AWS_SESSION_TOKEN"),
		Retention: c.S3.Retention, RetentionMode: c.S3.RetentionMode,
	})
	if err != nil {
		return nil, err
	}
	if err := s.EnsureBucket(ctx); err != nil {
		return nil, err
	}
	return s, nil
}
