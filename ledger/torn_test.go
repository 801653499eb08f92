package ledger

import (
	"os"
	"strings"
	"testing"
)

// A damaged frame followed by intact ones is damage, not a torn write: the
// intact entries after it were acknowledged and must never be cut off.
func TestCutTornTailRefusesIntactFramesAfterDamage(t *testing.T) {
	s, err := openSegments(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(i int) []byte { return []byte("evident.dev/entry/v1\nlog\n" + strings.Repeat("x", 40+i) + "\n") }
	var data []byte
	data = frame(data, leaf(0))
	first := uint64(len(data))
	data = frame(data, leaf(1))
	data = frame(data, leaf(2))
	data[first+10] ^= 1 // damage entry 1
	if err := os.WriteFile(s.path(0), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.cutTornTail(1, first); err == nil || !strings.Contains(err.Error(), "intact entries follow") {
		t.Fatalf("cutTornTail = %v, want a refusal", err)
	}
	// A genuinely torn tail (half of the last frame) is cut.
	torn := frame(nil, leaf(0))
	whole := uint64(len(torn))
	torn = append(torn, frame(nil, leaf(1))[:20]...)
	if err := os.WriteFile(s.path(0), torn, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.cutTornTail(1, whole); err != nil {
		t.Fatalf("cutTornTail of a torn write: %v", err)
	}
	if st, _ := os.Stat(s.path(0)); uint64(st.Size()) != whole {
		t.Fatalf("segment is %d bytes after the cut, want %d", st.Size(), whole)
	}
}
