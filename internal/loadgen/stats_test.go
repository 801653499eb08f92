package loadgen

import (
	"testing"
	"time"
)

func TestPercentiles(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    int
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}} {
		if got := pct(lat, c.p); got != c.want {
			t.Errorf("pct(%d) = %s, want %s", c.p, got, c.want)
		}
	}
	if pct(nil, 50) != 0 {
		t.Error("pct of no samples is not 0")
	}
	if got := serverTiming("proof;dur=1.5"); got != 1500*time.Microsecond {
		t.Errorf("serverTiming = %s", got)
	}
	if got := ms(1500 * time.Microsecond); got != "1.5ms" {
		t.Errorf("ms = %q", got)
	}
	if got := trunc("abcdef", 4); got != "abc…" {
		t.Errorf("trunc = %q", got)
	}
}
