package rekortilestest_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"testing"
	"time"

	v1 "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/rekor-tiles/v2/pkg/client/read"
	"github.com/sigstore/rekor-tiles/v2/pkg/client/write"
	pb "github.com/sigstore/rekor-tiles/v2/pkg/generated/protobuf"
	"github.com/sigstore/sigstore/pkg/signature"

	"evident.dev/evident/internal/rekortilestest"
)

// TestStart writes one entry through the front server with rekor-tiles'
// own client and reads the checkpoint covering it back with its reader,
// checked against the public key Start reports.
func TestStart(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []rekortilestest.Option
	}{{"ed25519", nil}, {"ECDSA", []rekortilestest.Option{rekortilestest.WithECDSAKey()}}} {
		t.Run(c.name, func(t *testing.T) {
			r := rekortilestest.Start(t, c.opts...)
			t.Logf("rekor-tiles started in %v", r.Started.Round(time.Millisecond))
			switch r.PublicKey.(type) {
			case ed25519.PublicKey, *ecdsa.PublicKey:
			default:
				t.Fatalf("public key is a %T", r.PublicKey)
			}
			block, _ := pem.Decode(r.PinnedKeyPEM())
			if block == nil || block.Headers["Origin"] != rekortilestest.Origin {
				t.Fatalf("PinnedKeyPEM: %v", block)
			}

			ctx := context.Background()
			w, err := write.NewWriter(r.URL)
			if err != nil {
				t.Fatal(err)
			}
			// A client key of its own: the entry is any hashedrekord.
			ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			digest := sha256.Sum256([]byte("an artifact"))
			sig, err := ec.Sign(rand.Reader, digest[:], crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			der, err := x509.MarshalPKIXPublicKey(ec.Public())
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			tle, err := w.Add(ctx, &pb.HashedRekordRequestV002{Digest: digest[:], Signature: &pb.Signature{
				Content: sig,
				Verifier: &pb.Verifier{Verifier: &pb.Verifier_PublicKey{PublicKey: &pb.PublicKey{RawBytes: der}},
					KeyDetails: v1.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256},
			}})
			if err != nil {
				t.Fatalf("add an entry: %v", err)
			}
			t.Logf("one entry written in %v", time.Since(start).Round(time.Millisecond))
			if tle.GetInclusionProof().GetTreeSize() != 1 || tle.GetLogIndex() != 0 {
				t.Errorf("first entry: index %d in a tree of %d", tle.GetLogIndex(), tle.GetInclusionProof().GetTreeSize())
			}

			v, err := signature.LoadDefaultVerifier(r.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			rd, err := read.NewReader(r.URL, r.Origin, v)
			if err != nil {
				t.Fatal(err)
			}
			cp, _, err := rd.ReadCheckpoint(ctx)
			if err != nil {
				t.Fatalf("read the checkpoint through the front server: %v", err)
			}
			if cp.Size != 1 {
				t.Errorf("checkpoint of %d entries, want 1", cp.Size)
			}
			if _, err := rd.ReadTile(ctx, 0, 0, 1); err != nil {
				t.Errorf("read the first tile: %v", err)
			}

			// The sequencer's state is not served.
			resp, err := http.Get(r.URL + "/.state/treeState")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("GET /.state/treeState: HTTP %d, want 404", resp.StatusCode)
			}
		})
	}
}
