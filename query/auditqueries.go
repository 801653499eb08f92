package query

// AuditQueries are the questions an auditor asks of the log, each answered
// by one GraphQL query. They are GraphiQL's saved tabs, what
// docs/audit-queries.md shows (a test runs them against the demo data set
// and compares the document) and what `evident query-load` measures. Each
// operation has a name: GraphiQL titles its tabs with it.
func AuditQueries() []ExampleQuery {
	return []ExampleQuery{
		{"Who approved production database changes last month?", `query ProductionDatabaseApprovals {
  changes(filter: {environment: "prod", fact: "database", from: "2026-06-01T00:00:00Z", to: "2026-07-01T00:00:00Z"}, first: 50) {
    nodes {
      id
      target { stack }
      approvals { approver directoryGroups counts notCountedBecause approvedAt planSha256 revoked }
    }
    pageInfo { hasNextPage }
  }
}`},
		{"Which changes modified public ingress?", `query PublicIngressChanges {
  changes(filter: {fact: ["public-exposure", "ingress"]}) {
    nodes {
      id
      target { environment stack cluster namespace application }
      plans { plan { resourceChanges { address type publicExposure cidrBlocks } } }
      syncs { sync { revision resources { kind namespace name } } }
      approvals { approver counts }
    }
  }
}`},
		{"Which emergency changes bypassed normal review?", `query EmergencyChangesWithoutReview {
  changes(filter: {emergency: true}, appliedWithoutFreshApproval: true) {
    nodes {
      id
      approvals { approver }
      appliesWithoutFreshApproval { index occurredAt actor }
      timeline { kind occurredAt breakglass { incident reason approvedBy reviewedBy } }
    }
  }
}`},
		{"Which policies denied production changes?", `query ProductionPolicyDenials {
  transitions(filter: {environment: "prod", policyResult: "deny"}) {
    nodes { changeId occurredAt target { stack } decision { origin result denied { ruleId severity message } } }
  }
}`},
		{"Which deployments used artifacts from unprotected branches?", `query ArtifactsFromUnprotectedBranches {
  changes(filter: {artifactFromProtectedBranch: false}) {
    nodes {
      id
      target { environment cluster application }
      timeline { kind occurredAt artifactAdmission { image digest sourceBranch protectedBranch } }
    }
  }
}`},
		{"Which stacks had drift and how was it reconciled?", `query DriftAndReconciliation {
  changes(filter: {kind: "drift.detected"}) {
    nodes { id target { stack } drift { kind occurredAt drift { resources detectedBy method summary } } }
  }
}`},
		{"Which changes were applied without a fresh approval?", `query AppliedWithoutFreshApproval {
  changes(filter: {kind: "apply.completed"}, appliedWithoutFreshApproval: true) {
    nodes {
      id
      target { environment stack }
      approvals { approver approvedAt expiresAt counts notCountedBecause }
      appliesWithoutFreshApproval { occurredAt apply { planSha256 } findings { code } }
    }
  }
}`},
		{"Which records did the log flag when they arrived?", `query FlaggedOnArrival {
  transitions(filter: {findingCode: "approval.missing"}) {
    nodes { changeId kind occurredAt findings { code severity message } }
  }
}`},
		{"Which approvals were given by the change's own author?", `query SelfApprovals {
  changes(filter: {kind: "approval.granted"}, selfApproved: true) {
    nodes { id contract { author } selfApprovals { approver approvedAt } }
  }
}`},
		{"Which exceptions expire within 30 days?", `query ExpiringExceptions {
  expiringExceptions(withinDays: 30) {
    nodes { id ruleId scope owner expiresAt justification }
  }
}`},
		{"How complete is the evidence, by environment?", `query CompletenessByEnvironment {
  prod: completeness(environment: "prod") {
    changes closed complete rate missing
    classes { class changes closed complete rate }
  }
  staging: completeness(environment: "staging") {
    changes closed complete rate missing
    classes { class changes closed complete rate }
  }
  change(id: "CHG-2026-06-25-0202") { completeness { class closed present missing } }
}`},
		{"Take one answer away with proof", `query EvidenceWithProof {
  change(id: "CHG-2026-06-24-0101") { evidencePack }
  transitions(filter: {changeId: "CHG-2026-06-24-0101", kind: "approval.granted"}) {
    nodes { index kind inclusionProof { treeSize leafHash hashes checkpoint { size rootHash note } } }
  }
}`},
	}
}
