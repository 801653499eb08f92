# Emergency changes need a post-hoc review: every judged record of an
# emergency change is flagged, and closing the break-glass session without a
# review is denied.
package evident.rules.emergency

import data.evident.lib

warn contains {
	"ruleId": "change.emergency.post-hoc-review",
	"severity": "medium",
	"message": "Emergency change: a post-hoc review by change-review is required when it closes.",
	"evidence": ["change.emergency"],
} if {
	input.change.emergency
	input.record.phase in {"plan", "apply", "sync"}
}

deny contains {
	"ruleId": "change.emergency.post-hoc-review",
	"severity": "high",
	"message": "Emergency change closed without a post-hoc review.",
	"requiredApprovers": ["change-review"],
	"evidence": [sprintf("breakglass.%s", [input.breakglass.incident])],
} if {
	input.record.phase == "review"
	not reviewed
}

reviewed if input.breakglass.reviewedBy != ""

reviewed if "change-review" in input.approvals.groups
