# The decisions aggregator: every rule's verdict on one record, after the
# approvals and exceptions the enriched input carries (docs/policies.md).
#
# A rule is a package under data.evident.rules that writes objects
#   {"ruleId", "severity", "message", "requiredApprovers", "evidence"}
# into a set named deny or warn. Operators add rules the same way.
package evident

# decisions is the query the server prepares once and evaluates per record.
decisions contains decision if {
	some name
	some d in data.evident.rules[name].deny
	decision := verdict(base(d), "deny")
}

decisions contains decision if {
	some name
	some d in data.evident.rules[name].warn
	decision := verdict(base(d), "warn")
}

# verdict applies to a rule's decision d (normalised by base), in order: an active exception for the rule waives it (the
# decision names the exception and stays a warning); on an apply, a deny
# whose required approvers all approved this plan is lifted; otherwise the
# rule's result stands, naming any exception for the rule that has expired,
# which therefore failed closed.
verdict(d, result) := object.union(d, {
	"result": "warn",
	"exceptionId": e.id,
	"message": sprintf("%s Waived by exception %s until %s.", [d.message, e.id, e.expiresAt]),
}) if {
	waivers := [x | some x in input.exceptions.active; x.ruleId == d.ruleId]
	count(waivers) > 0
	e := waivers[0]
} else := object.union(d, {
	"result": "allow",
	"message": sprintf("%s Approved by %s.", [d.message, concat(", ", d.requiredApprovers)]),
}) if {
	result == "deny"
	input.record.phase == "apply"
	approved(d.requiredApprovers)
} else := object.union(d, {
	"result": result,
	"evidence": array.concat(d.evidence, [sprintf("exception.expired.%s", [x.id]) | some x in ex]),
	"message": sprintf("%s Exception %s expired at %s.", [d.message, ex[0].id, ex[0].expiresAt]),
}) if {
	ex := expired(d.ruleId)
	count(ex) > 0
} else := object.union(d, {"result": result})

base(d) := {
	"ruleId": d.ruleId,
	"severity": object.get(d, "severity", ""),
	"message": object.get(d, "message", ""),
	"requiredApprovers": object.get(d, "requiredApprovers", []),
	"evidence": object.get(d, "evidence", []),
}

approved(groups) if {
	count(groups) > 0
	every g in groups {
		g in input.approvals.groups
	}
}

expired(rule_id) := [e | some e in input.exceptions.expired; e.ruleId == rule_id]
