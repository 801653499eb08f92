// Package miniotest starts a real MinIO server on 127.0.0.1 for tests.
package miniotest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Test credentials of the throwaway server.
const (
	AccessKey = "evident-test"
	SecretKey = "evident-test-secret"
)

// Server is a running MinIO.
type Server struct {
	Endpoint string // host:port
	Client   *minio.Client
}

// binary finds minio on PATH or in the tools directory scripts/setup.sh fills.
func binary() string {
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "evident-tools", "bin", "minio")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Start starts MinIO in a temporary directory and stops it when the test
// ends. Without the binary the test is skipped, or fails under
// EVIDENT_REQUIRE_TOOLS=1 (scripts/test.sh).
func Start(t testing.TB) *Server {
	t.Helper()
	bin := binary()
	if bin == "" {
		if os.Getenv("EVIDENT_REQUIRE_TOOLS") == "1" {
			t.Fatal("minio not installed: run scripts/setup.sh")
		}
		t.Skip("minio not installed: run scripts/setup.sh")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // MinIO binds it itself
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "server", t.TempDir(), "--address", addr, "--quiet")
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+AccessKey, "MINIO_ROOT_PASSWORD="+SecretKey, "MINIO_BROWSER=off")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait() // killed: an error by design
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("minio on %s not ready: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	client, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(AccessKey, SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	return &Server{Endpoint: addr, Client: client}
}

// Bucket creates a bucket.
func (s *Server) Bucket(t testing.TB, name string) {
	t.Helper()
	if err := s.Client.MakeBucket(context.Background(), name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
}

// URL is s3://bucket/prefix.
func URL(bucket, prefix string) string { return fmt.Sprintf("s3://%s/%s", bucket, prefix) }
