package approvals_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"evident.dev/evident/approvals"
	"evident.dev/evident/evidence"
)

// Under an open breakglass.opened (same change, opened before the apply,
// not expired, not closed) an apply gets the finding emergency instead of
// the approval findings (docs/approvals.md).
func TestBreakglassCoversApply(t *testing.T) {
	noApproval := []string{approvals.FindingApprovalMissing, approvals.FindingApprovalGroupMissing}
	for name, tc := range map[string]struct {
		records  func(c *change)
		incident string // of the emergency finding; "" for none
		findings []string
	}{
		"open": {
			records: func(c *change) {
				c.breakglass(evidence.KindBreakglassOpened, "INC-1", at(2*time.Minute), at(2*time.Hour))
			},
			incident: "INC-1",
		},
		"open without expiry": {
			records:  func(c *change) { c.breakglass(evidence.KindBreakglassOpened, "INC-1", at(2*time.Minute), time.Time{}) },
			incident: "INC-1",
		},
		"opened after the apply": {
			records: func(c *change) {
				c.breakglass(evidence.KindBreakglassOpened, "INC-1", at(4*time.Minute), at(2*time.Hour))
			},
			findings: noApproval,
		},
		"expired": {
			records: func(c *change) {
				c.breakglass(evidence.KindBreakglassOpened, "INC-1", at(time.Minute), at(2*time.Minute))
			},
			findings: noApproval,
		},
		"expires at the apply": {
			records: func(c *change) {
				c.breakglass(evidence.KindBreakglassOpened, "INC-1", at(time.Minute), at(3*time.Minute))
			},
			findings: noApproval,
		},
		"closed": {
			records: func(c *change) {
				c.breakglass(evidence.KindBreakglassOpened, "INC-1", at(time.Minute), at(2*time.Hour))
				c.breakglass(evidence.KindBreakglassClosed, "INC-1", at(2*time.Minute), time.Time{})
			},
			findings: noApproval,
		},
		"another incident closed": {
			records: func(c *change) {
				c.breakglass(evidence.KindBreakglassOpened, "INC-1", at(time.Minute), at(2*time.Hour))
				c.breakglass(evidence.KindBreakglassClosed, "INC-2", at(2*time.Minute), time.Time{})
			},
			incident: "INC-1",
		},
		"an earlier incident still open after a later one closed": {
			records: func(c *change) {
				c.breakglass(evidence.KindBreakglassOpened, "INC-1", at(time.Minute), at(2*time.Hour))
				c.breakglass(evidence.KindBreakglassOpened, "INC-2", at(90*time.Second), at(2*time.Hour))
				c.breakglass(evidence.KindBreakglassClosed, "INC-2", at(2*time.Minute), time.Time{})
			},
			incident: "INC-1",
		},
		"both incidents closed": {
			records: func(c *change) {
				c.breakglass(evidence.KindBreakglassOpened, "INC-1", at(time.Minute), at(2*time.Hour))
				c.breakglass(evidence.KindBreakglassOpened, "INC-2", at(90*time.Second), at(2*time.Hour))
				c.breakglass(evidence.KindBreakglassClosed, "INC-2", at(100*time.Second), time.Time{})
				c.breakglass(evidence.KindBreakglassClosed, "INC-1", at(2*time.Minute), time.Time{})
			},
			findings: noApproval,
		},
		"a later incident open, an earlier one closed": {
			records: func(c *change) {
				c.breakglass(evidence.KindBreakglassOpened, "INC-1", at(time.Minute), at(2*time.Hour))
				c.breakglass(evidence.KindBreakglassOpened, "INC-2", at(90*time.Second), at(2*time.Hour))
				c.breakglass(evidence.KindBreakglassClosed, "INC-1", at(2*time.Minute), time.Time{})
			},
			incident: "INC-2",
		},
		"closed, then opened again": {
			records: func(c *change) {
				c.breakglass(evidence.KindBreakglassOpened, "INC-1", at(time.Minute), at(2*time.Hour))
				c.breakglass(evidence.KindBreakglassClosed, "INC-1", at(90*time.Second), time.Time{})
				c.breakglass(evidence.KindBreakglassOpened, "INC-2", at(2*time.Minute), at(2*time.Hour))
			},
			incident: "INC-2",
		},
		"on another change": {
			records: func(c *change) {
				o := c.s.open("CHG-OTHER", "high")
				o.breakglass(evidence.KindBreakglassOpened, "INC-1", at(2*time.Minute), at(2*time.Hour))
			},
			findings: noApproval,
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := newSim(t, approvals.Config{})
			c := s.open("CHG-1", "high")
			c.plan(planA, commitA, at(time.Minute), highRisk())
			tc.records(c)
			applied := c.apply(planA, commitA, at(3*time.Minute))
			if tc.incident == "" {
				wantCodes(t, "apply", applied.Meta.Findings, tc.findings...)
				if as := c.assess(at(3 * time.Minute)); as.Breakglass != nil {
					t.Errorf("assessment under break-glass %+v", as.Breakglass)
				}
				return
			}
			wantCodes(t, "apply", applied.Meta.Findings, approvals.FindingEmergency)
			f := applied.Meta.Findings[0]
			if f.Severity != evidence.SeverityWarning || f.Evidence["incident"] != tc.incident || !strings.Contains(f.Message, "within 24h0m0s") {
				t.Errorf("emergency finding = %+v", f)
			}
			if as := c.assess(at(3 * time.Minute)); as.Breakglass == nil || as.Breakglass.Incident != tc.incident {
				t.Errorf("assessment break-glass = %+v", as.Breakglass)
			}
		})
	}
}

// After an emergency apply an approval of the applied plan must arrive
// within the review window; if none does, the next record of the change
// after the window (breakglass.closed, an apply, gate.decided,
// verification.completed) gets breakglass.review-missing, once, and the gate
// denies the change's applies until an approval of the plan arrives, even a
// late one (docs/approvals.md).
func TestBreakglassReview(t *testing.T) {
	bg := func(t *testing.T, c *change) *evidence.Entry {
		c.breakglass(evidence.KindBreakglassOpened, "INC-1", at(2*time.Minute), at(2*time.Hour))
		applied := c.apply(planA, commitA, at(3*time.Minute))
		wantCodes(t, "emergency apply", applied.Meta.Findings, approvals.FindingEmergency)
		return applied
	}
	cfg := approvals.Config{BreakglassReview: time.Hour} // deadline: at(63m)

	t.Run("reviewed in time", func(t *testing.T) {
		s := newSim(t, cfg)
		c := s.open("CHG-1", "high")
		c.plan(planA, commitA, at(time.Minute), highRisk())
		bg(t, c)
		c.approve(carol, carol, at(30*time.Minute))
		wantCodes(t, "closed after the window", c.breakglass(evidence.KindBreakglassClosed, "INC-1", at(90*time.Minute), time.Time{}).Meta.Findings)
	})

	t.Run("window still open", func(t *testing.T) {
		s := newSim(t, cfg)
		c := s.open("CHG-1", "high")
		c.plan(planA, commitA, at(time.Minute), highRisk())
		bg(t, c)
		wantCodes(t, "at the deadline", c.verification(at(63*time.Minute)).Meta.Findings)
		if d := c.decide(c.request(), at(63*time.Minute)); d.Decision != approvals.Allow || !d.Emergency {
			t.Errorf("gate within the window: %+v", d)
		}
	})

	t.Run("no review", func(t *testing.T) {
		s := newSim(t, cfg)
		c := s.open("CHG-1", "high")
		c.plan(planA, commitA, at(time.Minute), highRisk())
		applied := bg(t, c)
		closed := c.breakglass(evidence.KindBreakglassClosed, "INC-1", at(64*time.Minute), time.Time{})
		wantCodes(t, "closed", closed.Meta.Findings, approvals.FindingBreakglassReviewMissing)
		f := closed.Meta.Findings[0]
		if f.Severity != evidence.SeverityError || f.Evidence["applyEntry"] != fmt.Sprint(applied.Index) ||
			f.Evidence["planSha256"] != planA || f.Evidence["deadline"] != "2026-07-03T10:03:00Z" {
			t.Errorf("review-missing finding = %+v", f)
		}
		// Said once: later records do not repeat it.
		wantCodes(t, "verification", c.verification(at(70*time.Minute)).Meta.Findings)
		wantCodes(t, "gate.decided", c.gateDecided(at(71*time.Minute)).Meta.Findings)

		// The gate denies while the review is missing ...
		d := c.decide(c.request(), at(72*time.Minute))
		if d.Decision != approvals.Deny || !hasReason(d.Reasons, approvals.FindingBreakglassReviewMissing+": emergency apply (entry "+fmt.Sprint(applied.Index)) {
			t.Errorf("gate with the review missing: %+v", d)
		}
		// ... and allows once an approval of the plan arrives, late.
		c.approve(carol, carol, at(80*time.Minute))
		if d := c.decide(c.request(), at(81*time.Minute)); d.Decision != approvals.Allow {
			t.Errorf("gate after the late review: %+v", d)
		}
		// A late review does not make the record-time check pass; it was
		// already flagged, so nothing new.
		wantCodes(t, "later apply", c.apply(planA, commitA, at(82*time.Minute)).Meta.Findings)
	})

	t.Run("flagged by the first record after the window, whatever its kind", func(t *testing.T) {
		for _, next := range []func(c *change) *evidence.Entry{
			func(c *change) *evidence.Entry { return c.verification(at(64 * time.Minute)) },
			func(c *change) *evidence.Entry { return c.gateDecided(at(64 * time.Minute)) },
			func(c *change) *evidence.Entry { return c.apply(planB, commitA, at(64*time.Minute)) },
		} {
			s := newSim(t, cfg)
			c := s.open("CHG-1", "high")
			c.plan(planA, commitA, at(time.Minute), highRisk())
			bg(t, c)
			wantCodes(t, "closed within the window", c.breakglass(evidence.KindBreakglassClosed, "INC-1", at(10*time.Minute), time.Time{}).Meta.Findings)
			e := next(c)
			st, err := e.Statement()
			if err != nil {
				t.Fatal(err)
			}
			if findingOf(e.Meta.Findings, approvals.FindingBreakglassReviewMissing) == nil {
				t.Errorf("%s after the window: findings %v", st.Predicate.Kind, codes(e.Meta.Findings))
			}
		}
	})

	t.Run("what does not review", func(t *testing.T) {
		for name, review := range map[string]func(c *change){
			"approval of another plan": func(c *change) {
				c.approve(carol, carol, at(30*time.Minute), func(a *evidence.Approval) { a.PlanSHA256 = planB })
			},
			"unauthorized approval":     func(c *change) { c.approve(bob, carol, at(30*time.Minute)) },
			"approval after the window": func(c *change) { c.approve(carol, carol, at(64*time.Minute)) },
			"approval before the apply": func(*change) {}, // bg's apply follows the approval below
			"approval dated after the deadline": func(c *change) {
				c.approve(carol, carol, at(62*time.Minute), func(a *evidence.Approval) { a.ApprovedAt = at(63*time.Minute + time.Second) })
			},
		} {
			t.Run(name, func(t *testing.T) {
				s := newSim(t, cfg)
				c := s.open("CHG-1", "high")
				c.plan(planA, commitA, at(time.Minute), highRisk())
				if name == "approval before the apply" {
					c.approve(carol, carol, at(90*time.Second))
				}
				bg(t, c)
				review(c)
				wantCodes(t, "closed", c.breakglass(evidence.KindBreakglassClosed, "INC-1", at(65*time.Minute), time.Time{}).Meta.Findings,
					approvals.FindingBreakglassReviewMissing)
			})
		}
	})

	t.Run("default window is 24h", func(t *testing.T) {
		s := newSim(t, approvals.Config{})
		c := s.open("CHG-1", "high")
		c.plan(planA, commitA, at(time.Minute), highRisk())
		c.breakglass(evidence.KindBreakglassOpened, "INC-1", at(2*time.Minute), time.Time{})
		c.apply(planA, commitA, at(3*time.Minute))
		wantCodes(t, "at 24h", c.verification(at(24*time.Hour+3*time.Minute)).Meta.Findings)
		wantCodes(t, "after 24h", c.verification(at(24*time.Hour+4*time.Minute)).Meta.Findings, approvals.FindingBreakglassReviewMissing)
	})
}
