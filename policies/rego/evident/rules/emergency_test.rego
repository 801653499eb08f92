package evident.rules.emergency_test

import data.evident.rules.emergency

test_emergency_apply_warned if {
	count(emergency.warn) == 1 with input as {"record": {"phase": "apply"}, "change": {"emergency": true}}
}

test_regular_apply_not_warned if {
	count(emergency.warn) == 0 with input as {"record": {"phase": "apply"}, "change": {"emergency": false}}
}

test_close_without_review_denied if {
	some d in emergency.deny with input as {
		"record": {"phase": "review"},
		"change": {"emergency": true},
		"breakglass": {"incident": "INC-7", "reviewedBy": ""},
		"approvals": {"groups": []},
	}
	d.requiredApprovers == ["change-review"]
	d.evidence == ["breakglass.INC-7"]
}

test_close_with_reviewer_allowed if {
	count(emergency.deny) == 0 with input as {
		"record": {"phase": "review"},
		"breakglass": {"incident": "INC-7", "reviewedBy": "dave@example.com"},
		"approvals": {"groups": []},
	}
}

test_close_with_review_approval_allowed if {
	count(emergency.deny) == 0 with input as {
		"record": {"phase": "review"},
		"breakglass": {"incident": "INC-7", "reviewedBy": ""},
		"approvals": {"groups": ["change-review"]},
	}
}
