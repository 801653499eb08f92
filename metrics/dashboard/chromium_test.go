package dashboard_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"evident.dev/evident/internal/testenv"
)

// The pages in headless Chromium (scripts/setup.d/50-chromium.sh installs
// it) at a desktop and a phone width: nothing overflows sideways, the chart
// scales to the page and carries its date axis, the navigation and the
// change search are on screen, and the search opens a change whose id holds
// '#' and '/'. The screenshots are kept as test artifacts (go test
// -artifacts) for a person to look at.
func TestPagesInChromium(t *testing.T) {
	f := start(t)
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 60*time.Second)
	defer cancel()

	for _, width := range []int64{1280, 375} {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 900), chromedp.Navigate(f.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`#completeness svg.chart`))); err != nil {
			t.Fatalf("%d px: %v", width, err)
		}
		layout, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]float64](`(() => {
			const r = s => document.querySelector(s).getBoundingClientRect();
			return {
				scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
				chartWidth: r('svg.chart').width, search: r('form.search input').width, nav: r('header nav').width,
				ticks: document.querySelectorAll('svg.chart text.tick').length,
			};
		})()`))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case layout["scrollWidth"] > layout["innerWidth"]:
			t.Errorf("%d px: the page is %v px wide: it scrolls sideways", width, layout["scrollWidth"])
		case layout["chartWidth"] > layout["innerWidth"] || layout["chartWidth"] < layout["innerWidth"]/2:
			t.Errorf("%d px: the chart is %v px wide, not scaled to the page", width, layout["chartWidth"])
		case layout["search"] == 0 || layout["nav"] == 0:
			t.Errorf("%d px: the navigation or the change search is not shown: %v", width, layout)
		case layout["ticks"] < 2:
			t.Errorf("%d px: the chart has %v date labels, want an axis", width, layout["ticks"])
		}
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(shot))
		if err != nil || int64(img.Bounds().Dx()) != width {
			t.Errorf("%d px: the screenshot (%v) is not a page %d px wide (%v)", width, err, width, img)
		}
		if err := os.WriteFile(filepath.Join(t.ArtifactDir(), fmt.Sprintf("overview-%dpx.png", width)), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The search opens a change by id, escaped on the way.
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`#change-id`), runnerChangeID),
		chromedp.Submit(chromedp.CSS(`form.search`)),
		chromedp.WaitVisible(chromedp.CSS(`ol.timeline`)),
	); err != nil {
		t.Fatalf("search for %s: %v", runnerChangeID, err)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.HasSuffix(loc, "/changes/infra-live%234812/prod/web") {
		t.Errorf("the search landed on %s (%v)", loc, err)
	}
}
