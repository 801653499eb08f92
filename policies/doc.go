// Package policies judges records with policy as code: bundled Rego rules
// (embedded from rego/) and the operators' own, evaluated with OPA's rego
// package over an enriched input, producing the structured decision an
// entry carries and approvals bind to (evidence.Policy, whose Digest is the
// policyDecisionSha256). It also enforces the exception invariants and
// tracks evidence completeness against the change classes' contracts.
//
// The walk-through is docs/policies.md. The pieces:
//
//   - Load reads the policy set (bundled modules plus a directory or an OPA
//     bundle) and prepares the one query, data.evident.decisions, once.
//   - Judge is an ingest.Judge: for each record it reads the change's
//     entries from the log, builds the input, evaluates, and returns the
//     decision and findings; it refuses exceptions that break an invariant.
//   - Contracts (contracts.yaml, overridable) name the evidence each change
//     class must have; Tracker tails the log and keeps every change's
//     completeness and the exceptions, for the query and metrics side.
package policies
