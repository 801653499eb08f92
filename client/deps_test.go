package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// A program that only talks to a server (an auditor's tool, a runner)
// must not link the server: no storage engine, policy engine, GraphQL
// server or Kubernetes client among the client's dependencies.
func TestClientDoesNotLinkTheServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, forbidden := range []string{
		"github.com/dgraph-io/badger",
		"github.com/open-policy-agent/opa",
		"github.com/graphql-go/graphql",
		"k8s.io/client-go",
		"evident.dev/evident/ledger",
		"evident.dev/evident/ingest",
		"evident.dev/evident/query",
		"evident.dev/evident/policies",
	} {
		for _, d := range deps {
			if d == forbidden || strings.HasPrefix(d, forbidden+"/") {
				t.Errorf("the client depends on %s", d)
				break
			}
		}
	}
	t.Logf("%d packages", len(deps))
}
