package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"evident.dev/evident/internal/fulciotest"
	"evident.dev/evident/internal/rekortest"
	"evident.dev/evident/internal/testenv"
	"evident.dev/evident/verifier"
)

// TestRunnerKeyless runs `evident runner plan` with no key, in a job that
// holds an OIDC token, against a real OpenTofu stack, a real Fulcio (its
// ephemeral CA trusting an OIDC issuer the test serves) and a real Rekor.
// The server trusts that CA and Rekor and one keyless identity: the
// runner's records are entries signed by the certificate identity. The same
// runner with a token for another identity is refused and adds nothing.
func TestRunnerKeyless(t *testing.T) {
	if testing.Short() {
		t.Skip("runs OpenTofu, Fulcio, Rekor and the server")
	}
	tofuBin := testenv.Tool(t, "tofu")
	f := fulciotest.Start(t)
	rekor := rekortest.Start(t)
	dir := t.TempDir()
	trustedRoot, err := f.TrustedRoot(rekor.URL, rekor.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "trusted_root.json"), string(trustedRoot))
	const runner = "runner@ci.example"
	writeFile(t, filepath.Join(dir, "evident.yaml"), fmt.Sprintf(`
trust:
  identities:
    - {name: ci-runner, san: %q, issuer: %q, scope: {environments: [prod]}}
  sigstore:
    trustedRoot: trusted_root.json
`, runner, f.Issuer))
	srv := startServe(t, dir, "--config", "evident.yaml", "--data", "data", "--listen", "127.0.0.1:0")

	stack := filepath.Join(dir, "infra-live", "stacks", "prod", "aws", "account-web-prod", "eu-west-1", "web")
	writeFile(t, filepath.Join(stack, "main.tf"), `
terraform {
  backend "local" {}
}
resource "terraform_data" "web" {
  input = "v1"
}
`)
	tofurc := filepath.Join(dir, "tofurc")
	writeFile(t, tofurc, "")
	// The job's environment, without any token this machine's own
	// environment might hold.
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k != "SIGSTORE_ID_TOKEN" && !strings.HasPrefix(k, "ACTIONS_ID_TOKEN_") && !strings.HasPrefix(k, "GITHUB_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"PATH="+filepath.Dir(tofuBin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"TF_CLI_CONFIG_FILE="+tofurc, "TF_IN_AUTOMATION=1",
		"GITHUB_REPOSITORY=example/infra-live", "GITHUB_REF=refs/pull/77/merge", "GITHUB_SHA="+e2eCommit,
		"GITHUB_ACTOR=alice@example.com", "GITHUB_BASE_REF=main")
	args := []string{"plan", "--stack", stack, "--server", srv.URL, "--artifacts", filepath.Join(dir, "artifacts"),
		"--fulcio-url", f.URL, "--rekor-url", rekor.URL}

	// A GitHub Actions job with id-token: write: the runner requests a
	// token for the Sigstore audience and signs keyless.
	tokenURL, requestToken := f.GitHubRequest(runner)
	r := runnerEnv{t: t, dir: dir, env: append(env, "ACTIONS_ID_TOKEN_REQUEST_URL="+tokenURL, "ACTIONS_ID_TOKEN_REQUEST_TOKEN="+requestToken)}
	out := r.run(0, args...)
	mustContain(t, "plan output", out.stdout, "actions: create 1, update 0, delete 0, replace 0")
	mustContain(t, "plan stderr", out.stderr, "signing keyless: OIDC token from GitHub Actions", f.URL, rekor.URL)
	if strings.Contains(out.String(), requestToken) {
		t.Errorf("the runner printed the token request credential:\n%s", out)
	}

	type keylessEntry struct {
		Signer struct{ Name, Issuer, KeyID string }
		// A keyless entry keeps the whole Sigstore bundle.
		Envelope struct {
			MediaType            string
			VerificationMaterial struct {
				Certificate struct{ RawBytes string }
				TlogEntries []struct{ LogIndex string }
			}
			DSSEEnvelope struct{ Payload string } `json:"dsseEnvelope"`
		}
	}
	var kinds []string
	for i := uint64(0); i < srv.size(); i++ {
		var e keylessEntry
		srv.getJSON(fmt.Sprintf("/v1/entries/%d", i), &e)
		if e.Signer.Name == verifier.LogSigner {
			continue // the log's own records: bootstrap, trust
		}
		payload, err := base64.StdEncoding.DecodeString(e.Envelope.DSSEEnvelope.Payload)
		if err != nil || len(payload) == 0 {
			t.Fatalf("entry %d is not a Sigstore bundle with a DSSE envelope: %+v", i, e)
		}
		var st struct {
			Predicate struct{ Kind, ChangeID string }
		}
		if err := json.Unmarshal(payload, &st); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, st.Predicate.Kind)
		if e.Signer.Name != runner || e.Signer.Issuer != f.Issuer {
			t.Errorf("%s entry %d signed by %+v, want %s from %s", st.Predicate.Kind, i, e.Signer, runner, f.Issuer)
		}
		if e.Envelope.MediaType != "application/vnd.dev.sigstore.bundle.v0.3+json" || e.Envelope.VerificationMaterial.Certificate.RawBytes == "" ||
			len(e.Envelope.VerificationMaterial.TlogEntries) != 1 {
			t.Errorf("%s entry %d: want a v0.3 bundle with a certificate and one Rekor entry: %+v", st.Predicate.Kind, i, e.Envelope)
		}
	}
	if strings.Join(kinds, ",") != "change.opened,plan.created" {
		t.Fatalf("the runner's entries are %v, want change.opened and plan.created", kinds)
	}

	// A token for another identity, named by --oidc-token-env: Fulcio
	// certifies it, the server refuses it, nothing is appended.
	size := srv.size()
	intruderToken := f.Token(t, "intruder@ci.example")
	r.env = append(env, "RUNNER_OIDC="+intruderToken)
	out = r.run(1, append(args, "--oidc-token-env", "RUNNER_OIDC")...)
	mustContain(t, "refused plan", out.stderr, "signing keyless: OIDC token from RUNNER_OIDC", "403",
		`certificate identity "intruder@ci.example"`, "is not in the trust configuration")
	if strings.Contains(out.String(), intruderToken) || strings.Contains(out.String(), strings.Split(intruderToken, ".")[2]) {
		t.Errorf("the runner printed the OIDC token:\n%s", out)
	}
	if got := srv.size(); got != size {
		t.Errorf("the refused runner added %d entries", got-size)
	}

	// An explicit key and an explicit token source contradict each other.
	out = r.run(2, append(args, "--oidc-token-env", "RUNNER_OIDC", "--key", "keys/ci.key")...)
	mustContain(t, "both", out.stderr, "give --key or --oidc-token-env, not both")

	// Offline, every keyless signature re-verifies against the trusted
	// root the log recorded.
	srv.stop()
	res := evident(t, dir, "verify", "--data", "data", "--log-key", srv.LogKey)
	mustContain(t, "verify", res.stdout, "signatures re-verified")
}
