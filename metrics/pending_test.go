package metrics

import (
	"fmt"
	"testing"
	"time"
)

// A pending table gives back each item's start to the nanosecond and its
// environment, keeps the first start of a key opened twice, and forgets
// the oldest items past its bound.
func TestPendingTable(t *testing.T) {
	tb := newPendingTable()
	starts := map[string]time.Time{
		"CHG-1":                time.Date(2026, 7, 3, 8, 0, 0, 123456789, time.UTC),
		"app:c/ns/web":         time.Date(1969, 12, 31, 23, 59, 59, 1, time.FixedZone("x", 3600)),
		"change:CHG-2/stack-1": time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		"":                     time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	envs := map[string]string{"CHG-1": "prod", "app:c/ns/web": "staging", "change:CHG-2/stack-1": labelNone, "": labelOther}
	for k, at := range starts {
		tb.open(k, at, envs[k])
		tb.open(k, at.Add(time.Hour), "dev") // already open: the first start stays
	}
	seen := 0
	for it := range tb.items() {
		seen++
		if it.env == "dev" {
			t.Errorf("a second open replaced an item: %+v", it)
		}
	}
	if seen != len(starts) {
		t.Fatalf("%d items listed, want %d", seen, len(starts))
	}
	for k, at := range starts {
		it, ok := tb.close(k)
		if !ok || !it.at.Equal(at) || it.env != envs[k] {
			t.Errorf("close(%q) = %+v, %v; want %s in %s", k, it, ok, at, envs[k])
		}
		if _, ok := tb.close(k); ok {
			t.Errorf("close(%q) found it again", k)
		}
	}

	at := time.Date(2026, 7, 3, 8, 0, 0, 0, time.UTC)
	for i := range maxPending + 10 {
		tb.open(fmt.Sprintf("CHG-%d", i), at.Add(time.Duration(i)*time.Second), "prod")
	}
	if len(tb.at) != maxPending {
		t.Fatalf("%d items held, want the bound %d", len(tb.at), maxPending)
	}
	if _, ok := tb.close("CHG-9"); ok {
		t.Error("the oldest items were not forgotten")
	}
	if it, ok := tb.close("CHG-10"); !ok || !it.at.Equal(at.Add(10*time.Second)) {
		t.Errorf("the oldest item kept = %+v, %v", it, ok)
	}
	if len(tb.envs) != 4 {
		t.Errorf("environment labels %q, want one copy each", tb.envs)
	}
}
