package gitops

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMemorySurvivesRestartsAndForgets checks the state file: keys survive a
// reopen, a torn last line (a crash during a write) is ignored, forgotten
// objects stay forgotten, and opening compacts the file to the live state.
func TestMemorySurvivesRestartsAndForgets(t *testing.T) {
	dir := t.TempDir()
	m, err := openMemory(dir)
	if err != nil {
		t.Fatal(err)
	}
	m.set("uid-a", "sync", "2026-07-03T09:45:41Z|running")
	m.set("uid-a", "sync", "2026-07-03T09:45:41Z|succeeded")
	m.set("uid-a", "drift", "out|rev|ConfigMap/orders/a,b \"quoted\"\nnewline")
	m.set("uid-b", "health", "Degraded")
	m.forget("uid-b")
	if err := m.flush(); err != nil {
		t.Fatal(err)
	}
	m.close()
	f, err := os.OpenFile(filepath.Join(dir, "state.log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`uid-c health "Degr`) // torn
	f.Close()

	m, err = openMemory(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	if got := m.get("uid-a", "sync"); got != "2026-07-03T09:45:41Z|succeeded" {
		t.Errorf("sync key after reopen = %q", got)
	}
	if got := m.get("uid-a", "drift"); got != "out|rev|ConfigMap/orders/a,b \"quoted\"\nnewline" {
		t.Errorf("drift key after reopen = %q", got)
	}
	if got := m.get("uid-b", "health"); got != "" {
		t.Errorf("a forgotten object's key came back: %q", got)
	}
	if got := m.get("uid-c", "health"); got != "" {
		t.Errorf("a torn line was read: %q", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, "state.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != 2 || strings.Contains(string(b), "uid-b") {
		t.Errorf("the state file is not compacted to the live state:\n%s", b)
	}
}
