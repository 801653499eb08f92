package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSoak is the test suite's long mode (EVIDENT_LONG=1; not run by
// default): scripts/soak.sh for ten minutes (EVIDENT_SOAK_MINUTES) at 2,000
// records/s with 20 concurrent audit-query clients. The script fails on any
// failed post or query, a server error, an ingest rate below 90% of the
// target, memory still growing in the last third of the run, or a log that
// does not verify. Run it with a long enough -timeout:
//
//	EVIDENT_LONG=1 go test -run TestSoak -timeout 30m -v ./e2e
func TestSoak(t *testing.T) {
	if os.Getenv("EVIDENT_LONG") != "1" {
		t.Skip("the soak runs in long mode only (EVIDENT_LONG=1)")
	}
	minutes := os.Getenv("EVIDENT_SOAK_MINUTES")
	if minutes == "" {
		minutes = "10"
	}
	script, err := filepath.Abs(filepath.Join("..", "scripts", "soak.sh"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", script, minutes, "2000", "20")
	cmd.Env = append(os.Environ(), "EVIDENT_SOAK_SAMPLE=15")
	out, err := cmd.CombinedOutput()
	t.Logf("scripts/soak.sh %s:\n%s", minutes, out)
	if err != nil || !strings.Contains(string(out), "soak: OK") {
		t.Fatalf("soak failed: %v", err)
	}
}
