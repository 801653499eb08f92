package query

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/graphql-go/graphql"

	"evident.dev/evident/approvals"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
)

// The schema is written for the domain (changes, approvals, decisions), not
// for storage; every list is filtered by the caller's tenant scope before
// anything is counted, paged or returned.

func nonNull(t graphql.Output) graphql.Output { return graphql.NewNonNull(t) }
func listOf(t graphql.Output) graphql.Output {
	return graphql.NewNonNull(graphql.NewList(graphql.NewNonNull(t)))
}

// optTime resolves a time that may be unset to null.
func optTime(get func(any) time.Time) graphql.FieldResolveFn {
	return func(p graphql.ResolveParams) (any, error) {
		if t := get(p.Source); !t.IsZero() {
			return t.UTC(), nil
		}
		return nil, nil
	}
}

func hexHash(h [32]byte) string { return hex.EncodeToString(h[:]) }

// policyView is a policy decision and where it came from.
type policyView struct {
	evidence.Policy
	Origin string // "log": the log's policies judged the record; "record": a policy.evaluated record reports it
	Index  uint64
}

type approvalView struct {
	evidence.Approval
	Kind    evidence.Kind
	Index   uint64
	ChangeR *record
	change  *changeView  // the change it was listed under; nil under a transition
	verdict *verdictOnce // the approval judge's verdict, asked once for all its fields
}

type verdictOnce struct {
	once sync.Once
	v    *approvals.Verdict
	err  error
}

type exceptionView struct {
	evidence.Exception
	Kind  evidence.Kind
	Index uint64
}

type checkpointView struct {
	Origin string
	Size   uint64
	Root   [32]byte
	Note   string
}

type connection struct {
	Edges   []edge
	HasNext bool
	End     string
}

type edge struct {
	Node   any
	Cursor string
}

// Completeness is one environment's evidence completeness as the policies
// projection computes it.
type Completeness struct {
	Environment string
	Changes     int      // changes a contract class applies to
	Closed      int      // of which closed
	Complete    int      // closed changes whose required evidence is all present
	Missing     []string // evidence missing most often, most frequent first
	Classes     []ClassCompleteness
}

// ClassCompleteness is the completeness of one class of changes of an
// environment; Rate is Complete / Closed, 1 when none is closed.
type ClassCompleteness struct {
	Class                     string
	Changes, Closed, Complete int
	Rate                      float64
}

// Rate is the share of closed changes with all their evidence; 1 when none
// is closed yet.
func (c *Completeness) Rate() float64 {
	if c.Closed == 0 {
		return 1
	}
	return float64(c.Complete) / float64(c.Closed)
}

// ChangeCompleteness is one change's evidence against its contract.
type ChangeCompleteness struct {
	Class                      string // "" when no contract class applies
	Closed                     bool
	Required, Present, Missing []string
}

// CompletenessSource is what the completeness fields read: PolicyCompleteness
// (the policies package's Tracker) on a server judging with its policies;
// nil (the fields are null) with the policies off. Implementations must be safe for concurrent use. They see the
// whole log; the resolvers ask them only what the caller may see in full
// (an environment a tenant's scope covers entirely, a change all of whose
// entries the tenant sees), so aggregates never count others' entries.
type CompletenessSource interface {
	Environment(ctx context.Context, environment string) (*Completeness, error)
	Change(ctx context.Context, changeID string) (*ChangeCompleteness, error)
}

// ExceptionSource lists the exceptions in force at now (granted, not ended,
// not expired) that expire within the window, ordered by expiry then grant
// entry. It sees the whole log; the resolver filters by the caller's scope.
type ExceptionSource interface {
	Expiring(ctx context.Context, now time.Time, within time.Duration) ([]ExpiringException, error)
}

// ExpiringException is an exception in force: its grant's entry and expiry.
type ExpiringException struct {
	Index     uint64
	ExpiresAt time.Time
}

func (g *GraphQL) buildSchema() (graphql.Schema, error) {
	rt := g.newRecordTypes()
	checkpoint, inclusion, consistency := proofTypes()
	changeCompleteness, completeness := completenessTypes()
	transition := g.transitionType(rt, stageTypes(), inclusion)
	change := g.changeType(rt, transition, changeCompleteness)
	// One PageInfo for every connection: a schema may name a type only once.
	pageInfo := pageInfoType()
	query := g.queryType(rootTypes{
		transition: transition, change: change, checkpoint: checkpoint,
		consistency: consistency, completeness: completeness,
		transitions: connectionOf(pageInfo, "Transition", transition),
		changes:     connectionOf(pageInfo, "Change", change),
		expiring:    connectionOf(pageInfo, "Exception", rt.exception),
	})
	return graphql.NewSchema(graphql.SchemaConfig{Query: query})
}

// recordTypes are the types of what every entry carries and of the blocks a
// Change lists across its timeline; Transition, Change and Query share them
// because a schema may name a type only once.
type recordTypes struct {
	signer, source, target, artifact, finding, changeContract *graphql.Object
	policy, approval, exception                               *graphql.Object
}

func (g *GraphQL) newRecordTypes() recordTypes {
	str, integer := graphql.String, graphql.Int
	return recordTypes{
		signer: newObject(graphql.ObjectConfig{Name: "Signer", Description: "The verified identity that signed a record.", Fields: graphql.Fields{
			"name": {Type: nonNull(str)}, "keyId": {Type: nonNull(str)}, "issuer": {Type: str},
		}}),
		source: newObject(graphql.ObjectConfig{Name: "Source", Description: "The Git ledger: what was wanted.", Fields: graphql.Fields{
			"repository": {Type: str}, "pullRequest": {Type: integer}, "commitSha": {Type: str}, "branch": {Type: str},
		}}),
		target: newObject(graphql.ObjectConfig{Name: "Target", Description: "Where the change lands.", Fields: graphql.Fields{
			"environment": {Type: str}, "cloud": {Type: str}, "account": {Type: str}, "region": {Type: str},
			"stack": {Type: str}, "cluster": {Type: str}, "namespace": {Type: str}, "application": {Type: str},
			"service": {Type: str}, "dataClass": {Type: str},
		}}),
		artifact: newObject(graphql.ObjectConfig{Name: "Artifact", Description: "Evidence kept outside the log, named by digest.", Fields: graphql.Fields{
			"name": {Type: nonNull(str)}, "digest": {Type: nonNull(str)}, "uri": {Type: str}, "mediaType": {Type: str},
		}}),
		changeContract: newObject(graphql.ObjectConfig{Name: "ChangeContract", Description: "The pull request contract.", Fields: graphql.Fields{
			"title": {Type: str}, "author": {Type: nonNull(str)}, "targetBranch": {Type: str}, "mutationType": {Type: str},
			"requiresApprovalFrom": {Type: graphql.NewList(str)}, "evidenceRequired": {Type: graphql.NewList(str)},
		}}),
		finding:   findingType(),
		policy:    policyType(),
		approval:  g.approvalType(),
		exception: exceptionType(),
	}
}

func findingType() *graphql.Object {
	str := graphql.String
	return newObject(graphql.ObjectConfig{Name: "Finding", Description: "An observation by the verifier or a policy, stored with the entry.", Fields: graphql.Fields{
		"code": {Type: nonNull(str)}, "severity": {Type: str}, "message": {Type: str},
		"evidence": {Type: listOf(newObject(graphql.ObjectConfig{Name: "FindingEvidence", Fields: graphql.Fields{
			"name": {Type: nonNull(str)}, "value": {Type: nonNull(str)},
		}})), Resolve: func(p graphql.ResolveParams) (any, error) {
			f := p.Source.(evidence.Finding)
			keys := make([]string, 0, len(f.Evidence))
			for k := range f.Evidence {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			out := make([]map[string]string, len(keys))
			for i, k := range keys {
				out[i] = map[string]string{"name": k, "value": f.Evidence[k]}
			}
			return out, nil
		}},
	}})
}

func policyType() *graphql.Object {
	str := graphql.String
	rule := newObject(graphql.ObjectConfig{Name: "RuleDecision", Description: "One rule's verdict.", Fields: graphql.Fields{
		"ruleId": {Type: nonNull(str)}, "result": {Type: nonNull(str)}, "severity": {Type: str}, "message": {Type: str},
		"requiredApprovers": {Type: graphql.NewList(str)}, "evidence": {Type: graphql.NewList(str)}, "exceptionId": {Type: str},
	}})
	return newObject(graphql.ObjectConfig{Name: "PolicyDecision", Description: "A structured policy decision.", Fields: graphql.Fields{
		"result":       {Type: nonNull(str)},
		"bundleSha256": {Type: str},
		"origin":       {Type: nonNull(str), Description: "log: the log's policies judged the record at append; record: a policy.evaluated record reports it", Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(policyView).Origin, nil }},
		"digest":       {Type: nonNull(str), Description: "policyDecisionSha256, what approvals bind to", Resolve: func(p graphql.ResolveParams) (any, error) { d := p.Source.(policyView).Policy; return d.Digest(), nil }},
		"rules":        {Type: listOf(rule), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(policyView).Decisions, nil }},
		"denied":       {Type: listOf(rule), Description: "the rules that denied", Resolve: func(p graphql.ResolveParams) (any, error) { return denied(p.Source.(policyView).Decisions), nil }},
	}})
}

func (g *GraphQL) approvalType() *graphql.Object {
	str, b, integer := graphql.String, graphql.Boolean, graphql.Int
	return newObject(graphql.ObjectConfig{Name: "Approval", Description: "An approver bound to one exact change.", Fields: graphql.Fields{
		"approver": {Type: nonNull(str)},
		"groups":   {Type: graphql.NewList(str), Description: "the groups the approval claims; they decide nothing: see directoryGroups"},
		"counts": {Type: b, Description: "the approval judge counts it: for the change's latest apply of this plan, at the time that apply was judged; for a plan not applied yet, as the apply gate would now. Null for a revocation", Resolve: func(p graphql.ResolveParams) (any, error) {
			v, err := g.approvalVerdict(p.Context, p.Source.(approvalView))
			if err != nil || v == nil {
				return nil, err
			}
			return v.Counts, nil
		}},
		"notCountedBecause": {Type: str, Description: "why the approval judge does not count it: a finding code such as approval.unauthorized-signer or approval.expired", Resolve: func(p graphql.ResolveParams) (any, error) {
			v, err := g.approvalVerdict(p.Context, p.Source.(approvalView))
			if err != nil || v == nil || v.Counts {
				return nil, err
			}
			return v.Reason, nil
		}},
		"directoryGroups": {Type: graphql.NewList(str), Description: "the groups the trust configuration's directory puts the approver in: what approval requirements are checked against", Resolve: func(p graphql.ResolveParams) (any, error) {
			v, err := g.approvalVerdict(p.Context, p.Source.(approvalView))
			if err != nil || v == nil {
				return nil, err
			}
			return v.Groups, nil
		}},
		"revoked": {Type: nonNull(b), Resolve: func(p graphql.ResolveParams) (any, error) {
			return p.Source.(approvalView).Kind == evidence.KindApprovalRevoked, nil
		}},
		"approvedAt":  {Type: graphql.DateTime, Resolve: optTime(func(s any) time.Time { return s.(approvalView).ApprovedAt })},
		"expiresAt":   {Type: graphql.DateTime, Resolve: optTime(func(s any) time.Time { return s.(approvalView).ExpiresAt })},
		"pullRequest": {Type: integer}, "commitSha": {Type: nonNull(str)}, "planSha256": {Type: nonNull(str)},
		"policyDecisionSha256": {Type: str}, "reason": {Type: str},
		"index": {Type: nonNull(integer), Description: "the log entry", Resolve: func(p graphql.ResolveParams) (any, error) { return int(p.Source.(approvalView).Index), nil }},
		"byAuthor": {Type: nonNull(b), Description: "the approver is the change's author (change.opened)", Resolve: func(p graphql.ResolveParams) (any, error) {
			a := p.Source.(approvalView)
			return a.ChangeR != nil && a.ChangeR.P().Change != nil && strings.EqualFold(a.ChangeR.P().Change.Author, a.Approver), nil
		}},
	}})
}

func exceptionType() *graphql.Object {
	str := graphql.String
	return newObject(graphql.ObjectConfig{Name: "Exception", Description: "A time-bound waiver of one rule.", Fields: graphql.Fields{
		"id": {Type: nonNull(str)}, "ruleId": {Type: str}, "scope": {Type: str}, "justification": {Type: str},
		"compensatingControls": {Type: graphql.NewList(str)}, "owner": {Type: str}, "approvedBy": {Type: graphql.NewList(str)},
		"expiresAt": {Type: graphql.DateTime, Resolve: optTime(func(s any) time.Time { return s.(*exceptionView).ExpiresAt })},
		"expired": {Type: nonNull(graphql.Boolean), Description: "this is an exception.expired record", Resolve: func(p graphql.ResolveParams) (any, error) {
			return p.Source.(*exceptionView).Kind == evidence.KindExceptionExpired, nil
		}},
		"index": {Type: nonNull(graphql.Int), Resolve: func(p graphql.ResolveParams) (any, error) { return int(p.Source.(*exceptionView).Index), nil }},
	}})
}

func proofTypes() (checkpoint, inclusion, consistency *graphql.Object) {
	str, integer := graphql.String, graphql.Int
	checkpoint = newObject(graphql.ObjectConfig{Name: "Checkpoint", Description: "A signed C2SP tlog-checkpoint note.", Fields: graphql.Fields{
		"origin":   {Type: nonNull(str), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*checkpointView).Origin, nil }},
		"size":     {Type: nonNull(integer), Resolve: func(p graphql.ResolveParams) (any, error) { return int(p.Source.(*checkpointView).Size), nil }},
		"rootHash": {Type: nonNull(str), Description: "hex", Resolve: func(p graphql.ResolveParams) (any, error) { return hexHash(p.Source.(*checkpointView).Root), nil }},
		"note":     {Type: nonNull(str), Description: "the signed note, verifiable with the log key", Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*checkpointView).Note, nil }},
	}})
	inclusion = newObject(graphql.ObjectConfig{Name: "InclusionProof", Description: "An RFC 6962 audit path of one entry.", Fields: graphql.Fields{
		"index":      {Type: nonNull(integer), Resolve: func(p graphql.ResolveParams) (any, error) { return int(p.Source.(*proof).Index), nil }},
		"treeSize":   {Type: nonNull(integer), Resolve: func(p graphql.ResolveParams) (any, error) { return int(p.Source.(*proof).TreeSize), nil }},
		"leafHash":   {Type: nonNull(str), Resolve: func(p graphql.ResolveParams) (any, error) { return hexHash(p.Source.(*proof).LeafHash), nil }},
		"hashes":     {Type: listOf(str), Description: "hex, in RFC 6962 order", Resolve: func(p graphql.ResolveParams) (any, error) { return hexList(p.Source.(*proof).Hashes), nil }},
		"checkpoint": {Type: checkpoint, Description: "the signed checkpoint of treeSize, when it is the latest", Resolve: func(p graphql.ResolveParams) (any, error) { return nilIfNil(p.Source.(*proof).Checkpoint), nil }},
	}})
	consistency = newObject(graphql.ObjectConfig{Name: "ConsistencyProof", Description: "An RFC 6962 proof that a tree extends an older one.", Fields: graphql.Fields{
		"from": {Type: nonNull(integer)}, "to": {Type: nonNull(integer)}, "hashes": {Type: listOf(str)},
	}})
	return checkpoint, inclusion, consistency
}

// completenessTypes are one change's completeness and one environment's.
func completenessTypes() (change, environment *graphql.Object) {
	str, b := graphql.String, graphql.Boolean
	change = newObject(graphql.ObjectConfig{Name: "ChangeCompleteness", Description: "One change's evidence against its contract, from the policies projection.", Fields: graphql.Fields{
		"required": {Type: listOf(str), Resolve: func(p graphql.ResolveParams) (any, error) {
			return nonNil(p.Source.(*ChangeCompleteness).Required), nil
		}},
		"present": {Type: listOf(str), Resolve: func(p graphql.ResolveParams) (any, error) { return nonNil(p.Source.(*ChangeCompleteness).Present), nil }},
		"class": {Type: str, Description: "the contract class; null when none applies", Resolve: func(p graphql.ResolveParams) (any, error) {
			if c := p.Source.(*ChangeCompleteness).Class; c != "" {
				return c, nil
			}
			return nil, nil
		}},
		"closed":  {Type: nonNull(b), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*ChangeCompleteness).Closed, nil }},
		"missing": {Type: listOf(str), Resolve: func(p graphql.ResolveParams) (any, error) { return nonNil(p.Source.(*ChangeCompleteness).Missing), nil }},
		"complete": {Type: nonNull(b), Resolve: func(p graphql.ResolveParams) (any, error) {
			return len(p.Source.(*ChangeCompleteness).Missing) == 0, nil
		}},
	}})
	return change, environmentCompletenessType()
}

func environmentCompletenessType() *graphql.Object {
	str, integer := graphql.String, graphql.Int
	classCompleteness := newObject(graphql.ObjectConfig{Name: "ClassCompleteness", Description: "Completeness of one class of changes of an environment.", Fields: graphql.Fields{
		"class":    {Type: nonNull(str), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(ClassCompleteness).Class, nil }},
		"changes":  {Type: nonNull(integer), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(ClassCompleteness).Changes, nil }},
		"closed":   {Type: nonNull(integer), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(ClassCompleteness).Closed, nil }},
		"complete": {Type: nonNull(integer), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(ClassCompleteness).Complete, nil }},
		"rate":     {Type: nonNull(graphql.Float), Description: "complete / closed; 1 when none is closed", Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(ClassCompleteness).Rate, nil }},
	}})
	return newObject(graphql.ObjectConfig{Name: "Completeness", Description: "Evidence completeness, from the policies projection.", Fields: graphql.Fields{
		"environment": {Type: nonNull(str), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*Completeness).Environment, nil }},
		"changes":     {Type: nonNull(integer), Description: "changes a contract class applies to", Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*Completeness).Changes, nil }},
		"closed":      {Type: nonNull(integer), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*Completeness).Closed, nil }},
		"complete":    {Type: nonNull(integer), Description: "closed changes with all their required evidence", Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*Completeness).Complete, nil }},
		"rate":        {Type: nonNull(graphql.Float), Description: "complete / closed; 1 when none is closed", Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*Completeness).Rate(), nil }},
		"classes": {Type: listOf(classCompleteness), Resolve: func(p graphql.ResolveParams) (any, error) {
			return nonNil(p.Source.(*Completeness).Classes), nil
		}},
		"missing": {Type: listOf(str), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*Completeness).Missing, nil }},
	}})
}

// stages are the types of the per-kind blocks only a Transition shows.
type stages struct {
	plan, gate, apply, verification, sync, drift, admission, breakglass *graphql.Object
}

func stageTypes() stages {
	str, b, integer := graphql.String, graphql.Boolean, graphql.Int
	return stages{
		plan: planType(),
		gate: newObject(graphql.ObjectConfig{Name: "GateDecision", Fields: graphql.Fields{
			"decision": {Type: nonNull(str)}, "planSha256": {Type: str}, "reasons": {Type: graphql.NewList(str)},
		}}),
		apply: newObject(graphql.ObjectConfig{Name: "Apply", Fields: graphql.Fields{
			"planSha256": {Type: nonNull(str)}, "engine": {Type: str}, "error": {Type: str}, "logSha256": {Type: str},
			"resourcesChanged": {Type: graphql.NewList(str)},
			"resourcesFailed":  {Type: graphql.NewList(str), Description: "what a partial apply failed to change"},
			"startedAt":        {Type: graphql.DateTime, Resolve: optTime(func(s any) time.Time { return s.(*evidence.Apply).StartedAt })},
			"completedAt":      {Type: graphql.DateTime, Resolve: optTime(func(s any) time.Time { return s.(*evidence.Apply).CompletedAt })},
		}}),
		verification: newObject(graphql.ObjectConfig{Name: "Verification", Fields: graphql.Fields{
			"result": {Type: nonNull(str)}, "method": {Type: str}, "exitCode": {Type: integer}, "checks": {Type: graphql.NewList(str)},
		}}),
		sync: syncType(),
		drift: newObject(graphql.ObjectConfig{Name: "Drift", Fields: graphql.Fields{
			"resources": {Type: listOf(str)}, "detectedBy": {Type: str}, "method": {Type: str, Description: "how it was reconciled: revert, import, accept"}, "summary": {Type: str},
		}}),
		admission: newObject(graphql.ObjectConfig{Name: "ArtifactAdmission", Fields: graphql.Fields{
			"image": {Type: nonNull(str)}, "digest": {Type: nonNull(str)}, "signed": {Type: nonNull(b)}, "signerIdentity": {Type: str},
			"sourceBranch": {Type: str}, "protectedBranch": {Type: nonNull(b)}, "sbomDigest": {Type: str}, "provenance": {Type: str}, "result": {Type: nonNull(str)},
		}}),
		breakglass: newObject(graphql.ObjectConfig{Name: "Breakglass", Fields: graphql.Fields{
			"incident": {Type: nonNull(str)}, "reason": {Type: str}, "approvedBy": {Type: graphql.NewList(str)}, "reviewedBy": {Type: str},
			"expiresAt": {Type: graphql.DateTime, Resolve: optTime(func(s any) time.Time { return s.(*evidence.Breakglass).ExpiresAt })},
		}}),
	}
}

func planType() *graphql.Object {
	str, b := graphql.String, graphql.Boolean
	resourceChange := newObject(graphql.ObjectConfig{Name: "ResourceChange", Fields: graphql.Fields{
		"address": {Type: nonNull(str)}, "type": {Type: nonNull(str)}, "actions": {Type: listOf(str)},
		"publicExposure": {Type: nonNull(b), Description: "this resource change opens something to the internet (the public-exposure fact)", Resolve: func(p graphql.ResolveParams) (any, error) {
			rc := p.Source.(evidence.ResourceChange)
			return slices.Contains(evidence.Facts(&evidence.Transition{Plan: &evidence.Plan{ResourceChanges: []evidence.ResourceChange{rc}}}), evidence.FactPublicExposure), nil
		}},
		"cidrBlocks": {Type: str, Description: "the source ranges the change reports, for rules", Resolve: func(p graphql.ResolveParams) (any, error) {
			a := p.Source.(evidence.ResourceChange).Attributes
			for _, k := range []string{"cidr_blocks", "cidr_ipv4", "ipv6_cidr_blocks", "cidr_ipv6", "source_ranges", "source_address_prefix"} {
				if v := a[k]; v != "" {
					return v, nil
				}
			}
			return nil, nil
		}},
	}})
	return newObject(graphql.ObjectConfig{Name: "Plan", Description: "The plan stage's risk summary.", Fields: graphql.Fields{
		"planSha256": {Type: nonNull(str)}, "engine": {Type: str}, "engineVersion": {Type: str}, "stack": {Type: str},
		"destructive": {Type: nonNull(b)}, "requiresManualApproval": {Type: nonNull(b)},
		"highRiskResources": {Type: graphql.NewList(str)}, "replacement": {Type: graphql.NewList(str)}, "sensitiveChanges": {Type: graphql.NewList(str)},
		"resourceChanges": {Type: graphql.NewList(resourceChange)},
	}})
}

func syncType() *graphql.Object {
	str := graphql.String
	syncedObject := newObject(graphql.ObjectConfig{Name: "SyncedObject", Fields: graphql.Fields{
		"group": {Type: str}, "kind": {Type: nonNull(str)}, "namespace": {Type: str}, "name": {Type: nonNull(str)}, "status": {Type: str},
		"serviceType": {Type: str, Description: "a core Service's spec.type, read from the cluster by the watcher"},
	}})
	return newObject(graphql.ObjectConfig{Name: "Sync", Fields: graphql.Fields{
		"application": {Type: str}, "revision": {Type: nonNull(str)}, "sourceRepo": {Type: str}, "sourcePath": {Type: str},
		"initiatedBy": {Type: str}, "operation": {Type: str}, "message": {Type: str}, "pruned": {Type: graphql.NewList(str)},
		"resources": {Type: graphql.NewList(syncedObject)},
	}})
}

// recordOf is the entry a Transition field resolves on.
func recordOf(p graphql.ResolveParams) *record { return p.Source.(*record) }

// fromTransition resolves a field from the entry's signed transition.
func fromTransition(get func(*evidence.Transition) any) graphql.FieldResolveFn {
	return func(p graphql.ResolveParams) (any, error) { return get(recordOf(p).P()), nil }
}

func (g *GraphQL) transitionType(rt recordTypes, st stages, inclusion *graphql.Object) *graphql.Object {
	str, b, integer := graphql.String, graphql.Boolean, graphql.Int
	return newObject(graphql.ObjectConfig{Name: "Transition", Description: "One log entry: a signed state transition and what the log added to it.", Fields: graphql.Fields{
		"index":        {Type: nonNull(integer), Resolve: func(p graphql.ResolveParams) (any, error) { return int(recordOf(p).Index), nil }},
		"kind":         {Type: nonNull(str), Resolve: fromTransition(func(t *evidence.Transition) any { return string(t.Kind) })},
		"changeId":     {Type: nonNull(str), Resolve: fromTransition(func(t *evidence.Transition) any { return t.ChangeID })},
		"occurredAt":   {Type: nonNull(graphql.DateTime), Resolve: fromTransition(func(t *evidence.Transition) any { return t.OccurredAt.UTC() })},
		"receivedAt":   {Type: nonNull(graphql.DateTime), Resolve: func(p graphql.ResolveParams) (any, error) { return recordOf(p).Entry.ReceivedAt.UTC(), nil }},
		"actor":        {Type: nonNull(str), Resolve: fromTransition(func(t *evidence.Transition) any { return t.Actor })},
		"signer":       {Type: nonNull(rt.signer), Resolve: func(p graphql.ResolveParams) (any, error) { return recordOf(p).Entry.Meta.Signer, nil }},
		"recordDigest": {Type: nonNull(str), Resolve: func(p graphql.ResolveParams) (any, error) { return recordOf(p).Entry.Meta.RecordDigest, nil }},
		"entryHash":    {Type: nonNull(str), Resolve: func(p graphql.ResolveParams) (any, error) { return hexHash(evidence.EntryHash(recordOf(p).Leaf)), nil }},
		"source":       {Type: nonNull(rt.source), Resolve: fromTransition(func(t *evidence.Transition) any { return t.Source })},
		"target":       {Type: nonNull(rt.target), Resolve: fromTransition(func(t *evidence.Transition) any { return t.Target })},
		"riskClass":    {Type: str, Resolve: fromTransition(func(t *evidence.Transition) any { return t.RiskClass })},
		"emergency":    {Type: nonNull(b), Resolve: fromTransition(func(t *evidence.Transition) any { return t.Emergency })},
		"artifacts":    {Type: listOf(rt.artifact), Resolve: fromTransition(func(t *evidence.Transition) any { return nonNil(t.Artifacts) })},
		"findings":     {Type: listOf(rt.finding), Resolve: func(p graphql.ResolveParams) (any, error) { return nonNil(recordOf(p).Entry.Meta.Findings), nil }},
		"decision": {Type: rt.policy, Description: "the policy decision: the log's own, else the record's policy block", Resolve: func(p graphql.ResolveParams) (any, error) {
			if d := decisions(recordOf(p)); len(d) > 0 {
				return d[0], nil
			}
			return nil, nil
		}},
		"change":            {Type: rt.changeContract, Resolve: fromTransition(func(t *evidence.Transition) any { return nilIfNil(t.Change) })},
		"plan":              {Type: st.plan, Resolve: fromTransition(func(t *evidence.Transition) any { return nilIfNil(t.Plan) })},
		"approval":          {Type: rt.approval, Resolve: func(p graphql.ResolveParams) (any, error) { return approvalOf(recordOf(p), nil), nil }},
		"gate":              {Type: st.gate, Resolve: fromTransition(func(t *evidence.Transition) any { return nilIfNil(t.Gate) })},
		"apply":             {Type: st.apply, Resolve: fromTransition(func(t *evidence.Transition) any { return nilIfNil(t.Apply) })},
		"verification":      {Type: st.verification, Resolve: fromTransition(func(t *evidence.Transition) any { return nilIfNil(t.Verification) })},
		"sync":              {Type: st.sync, Resolve: fromTransition(func(t *evidence.Transition) any { return nilIfNil(t.Sync) })},
		"drift":             {Type: st.drift, Resolve: fromTransition(func(t *evidence.Transition) any { return nilIfNil(t.Drift) })},
		"artifactAdmission": {Type: st.admission, Resolve: fromTransition(func(t *evidence.Transition) any { return nilIfNil(t.ArtifactAdmission) })},
		"exception":         {Type: rt.exception, Resolve: func(p graphql.ResolveParams) (any, error) { return nilIfNil(exceptionOf(recordOf(p))), nil }},
		"breakglass":        {Type: st.breakglass, Resolve: fromTransition(func(t *evidence.Transition) any { return nilIfNil(t.Breakglass) })},
		"envelope":          {Type: nonNull(str), Description: "the DSSE envelope as stored (JSON)", Resolve: func(p graphql.ResolveParams) (any, error) { return string(recordOf(p).Entry.Envelope), nil }},
		"inclusionProof": {Type: inclusion, Description: "proof against the checkpoint of treeSize (default: the latest signed checkpoint)",
			Args: graphql.FieldConfigArgument{"treeSize": {Type: integer}},
			Resolve: func(p graphql.ResolveParams) (any, error) {
				size, _ := p.Args["treeSize"].(int)
				if size < 0 {
					return nil, errors.New("treeSize must not be negative")
				}
				return g.inclusion(p.Context, recordOf(p), uint64(size))
			}},
	}})
}

func pageInfoType() *graphql.Object {
	return newObject(graphql.ObjectConfig{Name: "PageInfo", Fields: graphql.Fields{
		"hasNextPage": {Type: nonNull(graphql.Boolean), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*connection).HasNext, nil }},
		"endCursor":   {Type: graphql.String, Resolve: func(p graphql.ResolveParams) (any, error) { return emptyNil(p.Source.(*connection).End), nil }},
	}})
}

func connectionOf(pageInfo *graphql.Object, name string, node graphql.Output) *graphql.Object {
	e := newObject(graphql.ObjectConfig{Name: name + "Edge", Fields: graphql.Fields{
		"node":   {Type: nonNull(node), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(edge).Node, nil }},
		"cursor": {Type: nonNull(graphql.String), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(edge).Cursor, nil }},
	}})
	return newObject(graphql.ObjectConfig{Name: name + "Connection", Description: "A Relay connection. A page may hold fewer than `first` nodes while hasNextPage is true: each page does bounded work; follow endCursor.", Fields: graphql.Fields{
		"edges":    {Type: listOf(e), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*connection).Edges, nil }},
		"nodes":    {Type: listOf(node), Resolve: func(p graphql.ResolveParams) (any, error) { return nodes(p.Source.(*connection)), nil }},
		"pageInfo": {Type: nonNull(pageInfo), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source, nil }},
	}})
}

// changeOf is the change a Change field resolves on.
func changeOf(p graphql.ResolveParams) *changeView { return p.Source.(*changeView) }

func (g *GraphQL) changeType(rt recordTypes, transition, completeness *graphql.Object) *graphql.Object {
	resolve := func(get func(*changeView) any) graphql.FieldResolveFn {
		return func(p graphql.ResolveParams) (any, error) { return get(changeOf(p)), nil }
	}
	return newObject(graphql.ObjectConfig{Name: "Change", Description: "One change and its whole timeline, as far as the caller may see it.", Fields: graphql.Fields{
		"id":              {Type: nonNull(graphql.String), Resolve: resolve(func(c *changeView) any { return c.ID })},
		"contract":        {Type: rt.changeContract, Resolve: resolve(func(c *changeView) any { return nilIfNil(c.contract()) })},
		"source":          {Type: rt.source, Resolve: resolve(func(c *changeView) any { return c.first().P().Source })},
		"target":          {Type: rt.target, Resolve: resolve(func(c *changeView) any { return c.first().P().Target })},
		"emergency":       {Type: nonNull(graphql.Boolean), Resolve: resolve(func(c *changeView) any { return c.emergency() })},
		"timeline":        {Type: listOf(transition), Description: "every entry of the change, in log order", Resolve: resolve(func(c *changeView) any { return c.Timeline })},
		"plans":           {Type: listOf(transition), Resolve: resolve(func(c *changeView) any { return c.ofKinds(evidence.KindPlanCreated) })},
		"policyDecisions": {Type: listOf(rt.policy), Resolve: resolve(func(c *changeView) any { return c.policyDecisions() })},
		"approvals":       {Type: listOf(rt.approval), Resolve: resolve(func(c *changeView) any { return c.approvals() })},
		"selfApprovals":   {Type: listOf(rt.approval), Description: "approvals by the change's own author", Resolve: resolve(func(c *changeView) any { return c.selfApprovals() })},
		"gateDecisions":   {Type: listOf(transition), Resolve: resolve(func(c *changeView) any { return c.ofKinds(evidence.KindGateDecided) })},
		"applies": {Type: listOf(transition), Resolve: resolve(func(c *changeView) any {
			return c.ofKinds(evidence.KindApplyStarted, evidence.KindApplyCompleted, evidence.KindApplyFailed)
		})},
		"appliesWithoutFreshApproval": {Type: listOf(transition), Description: "completed applies the approval judge found not covered by a fresh approval when they were appended (an approval.* error finding), or applied under break-glass",
			Resolve: resolve(func(c *changeView) any { return c.unapprovedApplies() })},
		"verifications": {Type: listOf(transition), Resolve: resolve(func(c *changeView) any { return c.ofKinds(evidence.KindVerificationCompleted) })},
		"syncs": {Type: listOf(transition), Resolve: resolve(func(c *changeView) any {
			return c.ofKinds(evidence.KindSyncStarted, evidence.KindSyncSucceeded, evidence.KindSyncFailed)
		})},
		"drift": {Type: listOf(transition), Resolve: resolve(func(c *changeView) any {
			return c.ofKinds(evidence.KindDriftDetected, evidence.KindDriftReconciled)
		})},
		"exceptions": {Type: listOf(rt.exception), Resolve: resolve(func(c *changeView) any { return c.exceptions() })},
		"findings":   {Type: listOf(rt.finding), Description: "every finding on every entry of the change", Resolve: resolve(func(c *changeView) any { return c.findings() })},
		"completeness": {Type: completeness, Description: "null when the server judges without its policies", Resolve: func(p graphql.ResolveParams) (any, error) {
			return g.changeCompleteness(p.Context, identity(p.Context), changeOf(p))
		}},
		"evidencePack": {Type: nonNull(graphql.String), Description: "where to download this change's evidence pack (GET, same credentials)", Resolve: resolve(func(c *changeView) any {
			return "/v1/packs/" + evidence.EscapeChangeID(c.ID)
		})},
	}})
}

// ofKinds is the change's entries of the kinds ks, in log order.
func (c *changeView) ofKinds(ks ...evidence.Kind) []*record {
	var out []*record
	for _, r := range c.Timeline {
		if slices.Contains(ks, r.P().Kind) {
			out = append(out, r)
		}
	}
	return nonNil(out)
}

func (c *changeView) policyDecisions() []policyView {
	var out []policyView
	for _, r := range c.Timeline {
		out = append(out, decisions(r)...)
	}
	return nonNil(out)
}

func (c *changeView) exceptions() []*exceptionView {
	var out []*exceptionView
	for _, r := range c.ofKinds(evidence.KindExceptionGranted, evidence.KindExceptionExpired) {
		out = append(out, exceptionOf(r))
	}
	return nonNil(out)
}

func (c *changeView) findings() []evidence.Finding {
	var out []evidence.Finding
	for _, r := range c.Timeline {
		out = append(out, r.Entry.Meta.Findings...)
	}
	return nonNil(out)
}

// rootTypes are what the Query root's fields return.
type rootTypes struct {
	transition, change, checkpoint, consistency, completeness *graphql.Object
	transitions, changes, expiring                            *graphql.Object // connections
}

func (g *GraphQL) queryType(rt rootTypes) *graphql.Object {
	str, integer := graphql.String, graphql.Int
	// transitions and changes share Filter and Order: a schema may name a
	// type only once.
	filter, order := filterType(), orderType()
	return newObject(graphql.ObjectConfig{Name: "Query", Fields: graphql.Fields{
		"transitions": {Type: nonNull(rt.transitions), Args: g.connectionArgs(filter, order), Description: "entries matching the filter", Resolve: g.resolveTransitions},
		"changes": {Type: nonNull(rt.changes), Args: g.changesArgs(filter, order),
			Description: "changes with at least one entry matching the filter, once each, at their first matching entry", Resolve: g.resolveChanges},
		"change": {Type: rt.change, Args: graphql.FieldConfigArgument{"id": {Type: nonNull(str)}}, Resolve: func(p graphql.ResolveParams) (any, error) {
			return g.change(p.Context, identity(p.Context), p.Args["id"].(string))
		}},
		"transition": {Type: rt.transition, Args: graphql.FieldConfigArgument{"index": {Type: nonNull(integer)}}, Resolve: func(p graphql.ResolveParams) (any, error) {
			return g.transition(p.Context, identity(p.Context), p.Args["index"].(int))
		}},
		"expiringExceptions": {Type: nonNull(rt.expiring), Description: "exceptions granted to expire between now and withinDays from now, soonest first",
			Args:    graphql.FieldConfigArgument{"withinDays": {Type: nonNull(integer)}, "first": {Type: integer}, "after": {Type: str}},
			Resolve: g.resolveExpiring},
		"checkpoint": {Type: rt.checkpoint, Description: "the latest signed checkpoint", Resolve: g.resolveCheckpoint},
		"consistencyProof": {Type: rt.consistency, Args: graphql.FieldConfigArgument{"from": {Type: nonNull(integer)}, "to": {Type: integer, Description: "default: the latest checkpoint"}},
			Resolve: g.resolveConsistency},
		"completeness": {Type: rt.completeness, Description: "evidence completeness of one environment by contract class; null when the server judges without its policies, or for a tenant that does not see the whole environment",
			Args:    graphql.FieldConfigArgument{"environment": {Type: nonNull(str)}},
			Resolve: g.resolveCompleteness},
		"whoami": {Type: nonNull(newObject(graphql.ObjectConfig{Name: "Caller", Fields: graphql.Fields{
			"subject": {Type: nonNull(str)}, "role": {Type: nonNull(str)},
		}})), Resolve: func(p graphql.ResolveParams) (any, error) {
			id := identity(p.Context)
			return map[string]any{"subject": id.Subject, "role": string(id.Role)}, nil
		}},
	}})
}

func filterType() *graphql.InputObject {
	str, b := graphql.String, graphql.Boolean
	filterFields := graphql.InputObjectConfigFieldMap{}
	for _, n := range []string{"changeId", "environment", "account", "region", "stack", "cluster", "namespace", "application", "service", "dataClass",
		"kind", "actor", "approver", "approverGroup", "resourceAddress", "riskClass", "findingCode", "policyResult", "policyRule"} {
		filterFields[n] = &graphql.InputObjectFieldConfig{Type: str}
	}
	filterFields["resourceType"] = &graphql.InputObjectFieldConfig{Type: graphql.NewList(str), Description: "one of these resource types (plan resources, synced object kinds); a single string is a list of one"}
	filterFields["fact"] = &graphql.InputObjectFieldConfig{Type: graphql.NewList(str), Description: "one of these facts derived from plan resources and synced objects: public-exposure (an ingress rule from 0.0.0.0/0 or ::/0, a load balancer that is not internal, a public bucket), ingress (Kubernetes Ingress and Gateway API routes), database"}
	filterFields["emergency"] = &graphql.InputObjectFieldConfig{Type: b, Description: "emergency records and break-glass"}
	filterFields["artifactFromProtectedBranch"] = &graphql.InputObjectFieldConfig{Type: b, Description: "artifact admissions by the protection of the branch the artifact was built from"}
	filterFields["from"] = &graphql.InputObjectFieldConfig{Type: graphql.DateTime, Description: "occurredAt at or after"}
	filterFields["to"] = &graphql.InputObjectFieldConfig{Type: graphql.DateTime, Description: "occurredAt before"}
	return graphql.NewInputObject(graphql.InputObjectConfig{Name: "Filter", Description: "Every given field must match one entry. Resource type and address come from plans and synced objects; policy result and rule from the log's decision and policy.evaluated records.", Fields: filterFields})
}

// The values of the Order enum.
const (
	orderOldestFirst = "OLDEST_FIRST"
	orderNewestFirst = "NEWEST_FIRST"
)

func orderType() *graphql.Enum {
	return graphql.NewEnum(graphql.EnumConfig{Name: "Order", Values: graphql.EnumValueConfigMap{
		orderOldestFirst: {Value: orderOldestFirst}, orderNewestFirst: {Value: orderNewestFirst},
	}})
}

// connectionArgs are a list field's arguments, a new map on every call
// since changes adds its own.
func (g *GraphQL) connectionArgs(filter *graphql.InputObject, order *graphql.Enum) graphql.FieldConfigArgument {
	return graphql.FieldConfigArgument{
		"filter": {Type: filter},
		"first":  {Type: graphql.Int, Description: fmt.Sprintf("page size, at most %d", g.cfg.MaxPage)},
		"after":  {Type: graphql.String},
		// No DefaultValue: graphql-go's introspection prints an enum's
		// default as a string literal (or a boolean value as false), which
		// a client would take for a value of the wrong type. Absent means
		// oldest first, and the description says so.
		"order": {Type: order, Description: "default OLDEST_FIRST"},
	}
}

func (g *GraphQL) changesArgs(filter *graphql.InputObject, order *graphql.Enum) graphql.FieldConfigArgument {
	a := g.connectionArgs(filter, order)
	a["appliedWithoutFreshApproval"] = &graphql.ArgumentConfig{Type: graphql.Boolean, Description: "only changes with (true) or without (false) a completed apply lacking a fresh approval"}
	a["selfApproved"] = &graphql.ArgumentConfig{Type: graphql.Boolean, Description: "only changes with (true) or without (false) an approval by their author"}
	return a
}

func (g *GraphQL) resolveCheckpoint(graphql.ResolveParams) (any, error) {
	cp, err := g.checkpoint()
	if errors.Is(err, ledger.ErrEmpty) {
		return nil, nil
	}
	return cp, err
}

func (g *GraphQL) resolveConsistency(p graphql.ResolveParams) (any, error) {
	from, _ := p.Args["from"].(int)
	to, ok := p.Args["to"].(int)
	if !ok {
		to = int(g.store.CheckpointSize())
	}
	if from <= 0 || to < from || uint64(to) > g.store.CheckpointSize() {
		return nil, fmt.Errorf("need 0 < from <= to <= the latest checkpoint's size")
	}
	h, err := g.store.ConsistencyProof(p.Context, uint64(from), uint64(to))
	if err != nil {
		return nil, err
	}
	return map[string]any{"from": from, "to": to, "hashes": hexList(h)}, nil
}

func (g *GraphQL) resolveCompleteness(p graphql.ResolveParams) (any, error) {
	env := p.Args["environment"].(string)
	id := identity(p.Context)
	sc := id.Scope
	whole := slices.Contains(sc.Environments, env) && len(sc.Accounts)+len(sc.Stacks)+len(sc.Namespaces) == 0
	if id.Role != RoleAuditor && !whole {
		// An aggregate over an environment the tenant does not
		// see in full would count others' entries.
		return nil, nil
	}
	return g.completeness(p.Context, env)
}

func denied(ds []evidence.Decision) []evidence.Decision {
	out := []evidence.Decision{}
	for _, d := range ds {
		if d.Result == "deny" || d.Result == "fail" {
			out = append(out, d)
		}
	}
	return out
}

// decisions lists an entry's policy decisions: the log's own first.
func decisions(r *record) []policyView {
	var out []policyView
	if d := r.Entry.Meta.Decision; d != nil {
		out = append(out, policyView{Policy: *d, Origin: "log", Index: r.Index})
	}
	if d := r.P().Policy; d != nil {
		out = append(out, policyView{Policy: *d, Origin: "record", Index: r.Index})
	}
	return out
}

func approvalOf(r *record, c *changeView) any {
	a := r.P().Approval
	if a == nil {
		return nil
	}
	v := approvalView{Approval: *a, Kind: r.P().Kind, Index: r.Index, change: c, verdict: &verdictOnce{}}
	if c != nil {
		v.ChangeR = c.opened()
	}
	return v
}

func exceptionOf(r *record) *exceptionView {
	e := r.P().Exception
	if e == nil {
		return nil
	}
	return &exceptionView{Exception: *e, Kind: r.P().Kind, Index: r.Index}
}

func hexList(h [][32]byte) []string {
	out := make([]string, len(h))
	for i := range h {
		out[i] = hexHash(h[i])
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// nilIfNil turns a typed nil pointer into an untyped nil, which graphql-go
// resolves to null.
func nilIfNil[T any](p *T) any {
	if p == nil {
		return nil
	}
	return p
}

func emptyNil(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nodes(c *connection) []any {
	out := make([]any, len(c.Edges))
	for i, e := range c.Edges {
		out[i] = e.Node
	}
	return out
}

// newObject is graphql.NewObject whose fields without a resolver read the
// source's field of the same JSON name (through the view wrappers), and
// resolve an empty string of a nullable field to null.
func newObject(cfg graphql.ObjectConfig) *graphql.Object {
	if fields, ok := cfg.Fields.(graphql.Fields); ok {
		for _, f := range fields {
			if f.Resolve != nil {
				continue
			}
			_, required := f.Type.(*graphql.NonNull)
			f.Resolve = func(p graphql.ResolveParams) (any, error) {
				switch v := p.Source.(type) {
				case approvalView:
					p.Source = v.Approval
				case *exceptionView:
					p.Source = v.Exception
				case policyView:
					p.Source = v.Policy
				}
				out, err := graphql.DefaultResolveFn(p)
				if s, ok := out.(string); ok && s == "" && !required {
					return nil, err
				}
				return out, err
			}
		}
	}
	return graphql.NewObject(cfg)
}
