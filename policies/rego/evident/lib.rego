# Helpers the bundled rules share.
package evident.lib

# production holds for a change to a production environment (the server's
# productionEnvironments setting decides which are).
production if input.change.production

# plan_or_apply holds for plan.created and apply.* records.
plan_or_apply if input.record.phase in {"plan", "apply"}

# replaced is every resource the plan replaces: {type, name, address}.
replaced contains r if some r in input.plan.actions.replace

# changed is every resource change the plan creates or updates.
changed contains r if {
	some r in input.plan.resourceChanges
	some a in r.actions
	a in {"create", "update"}
}
