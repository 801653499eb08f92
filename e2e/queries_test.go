package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func graphqlPost(t *testing.T, url, token, q string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"query": q})
	req, _ := http.NewRequest(http.MethodPost, url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAuditorWalkthrough is docs/audit-queries.md's walk with the real
// binary: serve, post the demo data set, ask an audit question, download one
// answer's evidence pack, verify it offline, and see a tampered pack fail.
func TestAuditorWalkthrough(t *testing.T) {
	work := t.TempDir()
	// A server with its default configuration, as the page starts it.
	srv := startServe(t, work, "--listen", "127.0.0.1:0")
	evident(t, work, "demo", "--server", srv.URL, "--key", filepath.Join("evident-data", "dev-runner.key"))
	status, body := graphqlPost(t, srv.URL, "", `{ changes(filter: {emergency: true}, appliedWithoutFreshApproval: true) { nodes { id } } }`)
	if status != 200 || !strings.Contains(body, "CHG-2026-06-28-0404") || strings.Contains(body, "CHG-2026-06-24-0101") {
		t.Fatalf("emergency changes without review: %d %s", status, body)
	}
	// The server's approval judge flagged what the document shows, and only that.
	_, body = graphqlPost(t, srv.URL, "", `{ transitions(filter: {findingCode: "approval.missing"}) { nodes { changeId } } }`)
	if body != `{"data":{"transitions":{"nodes":[{"changeId":"CHG-2026-06-30-0909"}]}}}`+"\n" {
		t.Errorf("flagged on the real server: %s", body)
	}
	// The first change is approved, and says so the same way everywhere:
	// its approval counts, and no entry of it carries an approval finding
	// or a denial.
	_, body = graphqlPost(t, srv.URL, "", `{ change(id: "CHG-2026-06-24-0101") { approvals { counts notCountedBecause } timeline { kind findings { code } } } }`)
	if !strings.Contains(body, `"approvals":[{"counts":true,"notCountedBecause":null}]`) || strings.Contains(body, `"code":"approval.`) || strings.Contains(body, `"code":"policy.deny"`) {
		t.Errorf("the demo's first change on a default server: %s", body)
	}
	srv.waitCheckpoint(srv.size())
	r := evident(t, work, "pack", "--server", srv.URL, "--change", "CHG-2026-06-24-0101", "--out", "pack.json", "--log-key", srv.LogKey, "-o", "json")
	var packed packOutput
	if err := json.Unmarshal([]byte(r.stdout), &packed); err != nil || !packed.OK || packed.Out != "pack.json" || packed.Records != 6 {
		t.Fatalf("pack -o json: %+v %v\n%s", packed, err, r.stdout)
	}
	r = evident(t, work, "verify", "--pack", "pack.json", "--log-key", srv.LogKey)
	mustContain(t, "verify --pack", r.stdout, "OK: evidence pack of CHG-2026-06-24-0101: 6 records", "6 signatures re-verified")
	srv.stop()
	// Offline: the server is gone.
	evident(t, work, "verify", "--pack", "pack.json", "--log-key", srv.LogKey)
	b, err := os.ReadFile(filepath.Join(work, "pack.json"))
	if err != nil {
		t.Fatal(err)
	}
	tampered := strings.Replace(string(b), `"change":"CHG-2026-06-24-0101"`, `"change":"CHG-2026-06-25-0202"`, 1)
	writeFile(t, filepath.Join(work, "tampered.json"), tampered)
	r = evidentFails(t, work, 1, "verify", "--pack", "tampered.json", "--log-key", srv.LogKey)
	mustContain(t, "tampered pack", r.stderr+r.stdout, "verify FAILED")

	// -o json: one object a script reads, for a pack that verifies and for
	// one that does not (exit 1 all the same).
	var res packOutput
	r = evident(t, work, "verify", "--pack", "pack.json", "--log-key", srv.LogKey, "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || !res.OK || res.Change != "CHG-2026-06-24-0101" ||
		res.Records != 6 || res.Signatures != 6 || !res.Trust || len(res.Root) != 64 || len(res.Kinds) == 0 {
		t.Fatalf("verify --pack -o json: %+v %v\n%s", res, err, r.stdout)
	}
	r = evidentFails(t, work, 1, "verify", "--pack", "tampered.json", "--log-key", srv.LogKey, "-o", "json")
	res = packOutput{}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.OK || res.Error == "" {
		t.Fatalf("verify --pack -o json of a tampered pack: %+v %v\n%s", res, err, r.stdout)
	}
}

// packOutput is what `pack -o json` and `verify --pack -o json` print, as a
// script reads it: the field names are the contract, not the command's Go
// type.
type packOutput struct {
	OK         bool     `json:"ok"`
	Error      string   `json:"error"`
	Change     string   `json:"change"`
	Records    int      `json:"records"`
	Root       string   `json:"root"`
	Signatures int      `json:"signaturesVerified"`
	Trust      bool     `json:"carriesTrust"`
	Kinds      []string `json:"kinds"`
	Out        string   `json:"out"`
}

// TestServeAccessConfig: with access configured, GraphQL needs a token, a
// tenant sees only its scope, the whole-log endpoints answer only auditors,
// and every query is in the access log with its caller.
func TestServeAccessConfig(t *testing.T) {
	work := t.TempDir()
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	writeFile(t, filepath.Join(work, "evident.yaml"), `data: data
access:
  accessLog: reads.jsonl
  tokens:
    - {name: audit, sha256: `+sum("auditor-token")+`, role: auditor}
    - {name: staging-team, sha256: `+sum("staging-token")+`, role: tenant, scope: {environments: [staging]}}
`)
	srv := startServe(t, work, "--config", filepath.Join(work, "evident.yaml"), "--listen", "127.0.0.1:0")
	evident(t, work, "demo", "--server", srv.URL, "--key", filepath.Join(work, "data", "dev-runner.key"))
	if status, _ := graphqlPost(t, srv.URL, "", `{ whoami { role } }`); status != 401 {
		t.Errorf("no token: status %d", status)
	}
	_, body := graphqlPost(t, srv.URL, "staging-token", `{ transitions(first: 100) { nodes { changeId target { environment } } } }`)
	if strings.Contains(body, `"prod"`) || !strings.Contains(body, "CHG-2026-06-30-0909") {
		t.Errorf("tenant sees %s", body)
	}
	// Completeness and expiring exceptions come from the policies' tracker
	// (on by default), wired into GraphQL by serve; a tenant gets only its
	// own environment's aggregate and exceptions. The staging change is
	// complete here, unlike in docs/audit-queries.md: this server's
	// policies judged its plan, which is its policy evidence.
	const projection = `{ prod: completeness(environment: "prod") { changes closed }
		staging: completeness(environment: "staging") { changes closed complete missing classes { class } }
		c: change(id: "CHG-2026-06-30-0909") { completeness { class closed } }
		expiringExceptions(withinDays: 30) { nodes { id } } }`
	for _, c := range []struct{ token, want string }{
		{"auditor-token", `{"data":{"c":{"completeness":{"class":"non-production-infra-change","closed":true}},` +
			`"expiringExceptions":{"nodes":[{"id":"EXC-12"}]},"prod":{"changes":8,"closed":3},` +
			`"staging":{"changes":1,"classes":[{"class":"non-production-infra-change"}],"closed":1,"complete":1,"missing":[]}}}` + "\n"},
		{"staging-token", `{"data":{"c":{"completeness":{"class":"non-production-infra-change","closed":true}},` +
			`"expiringExceptions":{"nodes":[]},"prod":null,` +
			`"staging":{"changes":1,"classes":[{"class":"non-production-infra-change"}],"closed":1,"complete":1,"missing":[]}}}` + "\n"},
	} {
		if _, body := graphqlPost(t, srv.URL, c.token, projection); body != c.want {
			t.Errorf("%s: completeness %s\nwant %s", c.token, body, c.want)
		}
	}
	srv.get("/v1/entries/1", http.StatusUnauthorized)
	srv.get("/v1/export", http.StatusUnauthorized)
	srv.get("/v1/checkpoint", http.StatusOK)
	// tlog-tiles: hashes for everyone, entry bundles (whole entries) for
	// auditors only.
	srv.get("/checkpoint", http.StatusOK)
	srv.get("/tile/0/000.p/1", http.StatusOK)
	srv.get("/tile/entries/000.p/1", http.StatusUnauthorized)
	srv.stop()
	log, err := os.ReadFile(filepath.Join(work, "reads.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "access log", string(log), `"subject":"token:staging-team"`)
	if strings.Contains(string(log), "staging-token") {
		t.Error("the access log holds a token")
	}
}

// TestQueryLoadCommand runs the query load command briefly while ingesting.
func TestQueryLoadCommand(t *testing.T) {
	work := t.TempDir()
	data := filepath.Join(work, "data")
	srv := startServe(t, work, "--listen", "127.0.0.1:0", "--data", data)
	evident(t, work, "demo", "--server", srv.URL, "--key", filepath.Join(data, "dev-runner.key"))
	r := evident(t, work, "query-load", "--server", srv.URL, "--key", filepath.Join(data, "dev-runner.key"),
		"--seed", "76", "--clients", "4", "--duration", "2s", "--ingest-rate", "50")
	mustContain(t, "query-load", r.stdout, "Who approved production database changes last month?", "timeline of one change", "ingest meanwhile")
	// Every record offered in the 2 s at 50/s is awaited and counted; the
	// line's shape is what scripts/soak.sh reads.
	m := regexp.MustCompile(`(?m)^ingest meanwhile: (\d+) records acknowledged \((\d+)/s, target 50/s\).*, 0 errors$`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no ingest line in the shape scripts/soak.sh reads:\n%s", r.stdout)
	}
	if n, _ := strconv.Atoi(m[1]); n < 90 {
		t.Errorf("%s records acknowledged at 50/s for 2 s, want about 100:\n%s", m[1], r.stdout)
	}
}
