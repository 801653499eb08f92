# Helpers the bundled rules share. They are complete documents (not
# partial sets), which OPA evaluates once per query and caches.
package evident.lib

# production holds for a change to a production environment (the server's
# productionEnvironments setting decides which are).
production := true if input.change.production

# plan_or_apply holds for plan.created and apply.* records.
plan_or_apply := true if input.record.phase == "plan"

plan_or_apply := true if input.record.phase == "apply"

# replaced is every resource the plan replaces: {type, name, address}.
replaced := r if {
	r := input.plan.actions.replace
} else := []

# changed is every resource change the plan creates or updates (a
# replacement creates).
changed := [r |
	some r in input.plan.resourceChanges
	creates_or_updates(r.actions)
]

creates_or_updates(actions) if "create" in actions

creates_or_updates(actions) if {
	not "create" in actions
	"update" in actions
}
