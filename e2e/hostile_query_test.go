package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHostileQueriesLeaveServerServing sends the real binary GraphQL
// documents built to exhaust graphql-go's validation (fragment cycles once
// killed the process with a stack overflow, which nothing can recover), as
// an anonymous caller and as a tenant, and checks each is refused at once
// and that the server still takes records and answers queries afterwards.
func TestHostileQueriesLeaveServerServing(t *testing.T) {
	work := t.TempDir()
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	cycle := func(n int) string {
		var b strings.Builder
		b.WriteString("{ ...C0 }")
		for i := range n {
			fmt.Fprintf(&b, " fragment C%d on Query { whoami { role } ...C%d }", i, (i+1)%n)
		}
		return b.String()
	}
	hostile := map[string]string{
		"self cycle":      `{ ...A } fragment A on Query { ...A }`,
		"two cycle":       `{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }`,
		"long cycle":      cycle(50),
		"deep selections": strings.Repeat("{ whoami ", 2000) + strings.Repeat("}", 2000),
		"undefined":       `{ ...Nowhere }`,
	}
	for _, c := range []struct {
		name   string
		config string
		token  string
	}{
		{"no access control", "data: data\n", ""},
		{"tenant token", "data: data\naccess:\n  tokens:\n    - {name: staging-team, sha256: " + sum("staging-token") + ", role: tenant, scope: {environments: [staging]}}\n", "staging-token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(work, strings.ReplaceAll(c.name, " ", "-"))
			writeFile(t, filepath.Join(dir, "evident.yaml"), c.config)
			srv := startServe(t, dir, "--config", filepath.Join(dir, "evident.yaml"), "--listen", "127.0.0.1:0")
			signer := newSigner(t, filepath.Join(dir, "data", "dev-runner.key"))
			srv.postRecord(sign(t, signer, planRecord("CHG-HOSTILE-1", "staging", 1)), http.StatusCreated)
			for name, q := range hostile {
				start := time.Now()
				status, body := graphqlPost(t, srv.URL, c.token, q)
				if took := time.Since(start); took > 2*time.Second {
					t.Errorf("%s: answered after %s", name, took)
				}
				if status != http.StatusOK || !strings.Contains(body, `"errors"`) || strings.Contains(body, `"data"`) {
					t.Errorf("%s: %d %s, want a GraphQL error and no data", name, status, body)
				}
			}
			select {
			case <-srv.exited:
				t.Fatalf("the server died: %v\n%s", srv.waitErr, srv.stderr.String())
			default:
			}
			srv.postRecord(sign(t, signer, planRecord("CHG-HOSTILE-2", "staging", 2)), http.StatusCreated)
			status, body := graphqlPost(t, srv.URL, c.token, `{ change(id: "CHG-HOSTILE-2") { id } }`)
			if status != http.StatusOK || !strings.Contains(body, `"id":"CHG-HOSTILE-2"`) {
				t.Errorf("after the hostile queries: %d %s", status, body)
			}
			srv.stop()
		})
	}
}
