package policies

import (
	"slices"
	"strings"
	"time"

	"evident.dev/evident/evidence"
)

// input builds the enriched policy input (case study section 10) for a
// record from the change's earlier entries. docs/policies.md lists its
// fields; rules read nothing else.
func (j *Judge) input(st *evidence.Statement, ph string, hist []past, now time.Time) map[string]any {
	p := &st.Predicate
	// The change as its records tell it: the record's own fields win over
	// earlier ones, later records over earlier.
	var tg evidence.Target
	var src evidence.Source
	risk, emergency := "", false
	var contract *evidence.Change
	for _, h := range hist {
		hp := &h.st.Predicate
		mergeTarget(&tg, hp.Target)
		mergeSource(&src, hp.Source)
		risk = firstNonEmpty(hp.RiskClass, risk)
		emergency = emergency || hp.Emergency || hp.Kind == evidence.KindBreakglassOpened
		if hp.Change != nil {
			contract = hp.Change
		}
	}
	mergeTarget(&tg, p.Target)
	mergeSource(&src, p.Source)
	risk = firstNonEmpty(p.RiskClass, risk)
	emergency = emergency || p.Emergency || p.Kind == evidence.KindBreakglassOpened

	change := map[string]any{
		"id": p.ChangeID, "environment": tg.Environment, "production": j.cfg.Production.Production(tg.Environment),
		"cloud": tg.Cloud, "account": tg.Account, "region": tg.Region, "stack": tg.Stack, "cluster": tg.Cluster,
		"namespace": tg.Namespace, "application": tg.Application, "service": tg.Service, "dataClass": tg.DataClass,
		"riskClass": risk, "emergency": emergency, "repository": src.Repository, "commitSha": src.CommitSHA,
		"author": "", "requiresApprovalFrom": []string{},
	}
	author := ""
	if contract != nil {
		author = contract.Author
		change["author"] = author
		change["requiresApprovalFrom"] = nonNil(contract.RequiresApprovalFrom)
	}
	in := map[string]any{
		"record": map[string]any{
			"kind": string(p.Kind), "phase": ph, "changeId": p.ChangeID, "actor": p.Actor,
			"occurredAt": p.OccurredAt.UTC().Format(time.RFC3339Nano), "emergency": p.Emergency,
		},
		"change": change,
	}
	plan := choosePlan(p, hist)
	planSHA := ""
	if plan != nil {
		planSHA = plan.PlanSHA256
		in["plan"] = planInput(plan)
	}
	switch {
	case p.ArtifactAdmission != nil:
		a := p.ArtifactAdmission
		in["artifact"] = map[string]any{
			"image": a.Image, "digest": a.Digest, "signed": a.Signed, "signerIdentity": a.SignerIdentity,
			"sourceBranch": a.SourceBranch, "protectedBranch": a.ProtectedBranch, "sbomDigest": a.SBOMDigest,
			"provenance": a.Provenance, "result": a.Result,
		}
	case p.Breakglass != nil:
		b := p.Breakglass
		in["breakglass"] = map[string]any{"incident": b.Incident, "reason": b.Reason, "reviewedBy": b.ReviewedBy,
			"approvedBy": nonNil(b.ApprovedBy)}
	case p.Sync != nil:
		s := p.Sync
		in["sync"] = map[string]any{"application": s.Application, "revision": s.Revision, "sourceRepo": s.SourceRepo,
			"sourcePath": s.SourcePath, "pruned": nonNil(s.Pruned)}
	}
	in["approvals"] = approvalsInput(hist, planSHA, author, now)
	in["exceptions"] = j.exceptionsInput(p, hist, facts(p.ChangeID, src, tg), now)
	return in
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func mergeTarget(dst *evidence.Target, t evidence.Target) {
	for _, f := range [...]struct {
		dst *string
		v   string
	}{
		{&dst.Environment, t.Environment}, {&dst.Cloud, t.Cloud}, {&dst.Account, t.Account}, {&dst.Region, t.Region},
		{&dst.Stack, t.Stack}, {&dst.Cluster, t.Cluster}, {&dst.Namespace, t.Namespace},
		{&dst.Application, t.Application}, {&dst.Service, t.Service}, {&dst.DataClass, t.DataClass},
	} {
		if f.v != "" {
			*f.dst = f.v
		}
	}
}

func mergeSource(dst *evidence.Source, s evidence.Source) {
	if s.Repository != "" {
		dst.Repository = s.Repository
	}
	if s.CommitSHA != "" {
		dst.CommitSHA = s.CommitSHA
	}
}

// choosePlan is the plan a record is about: its own, the plan an apply
// applies (by planSha256), or else the change's latest.
func choosePlan(p *evidence.Transition, hist []past) *evidence.Plan {
	if p.Plan != nil {
		return p.Plan
	}
	var latest *evidence.Plan
	for i := len(hist) - 1; i >= 0; i-- {
		hp := hist[i].st.Predicate.Plan
		if hp == nil {
			continue
		}
		if p.Apply == nil || hp.PlanSHA256 == p.Apply.PlanSHA256 {
			return hp
		}
		if latest == nil {
			latest = hp
		}
	}
	if p.Apply != nil {
		return nil // an apply of a plan the log has not seen: judged without one
	}
	return latest
}

func planInput(pl *evidence.Plan) map[string]any {
	actions := map[string][]any{"create": {}, "update": {}, "delete": {}, "replace": {}}
	rcs := make([]any, 0, len(pl.ResourceChanges))
	replaced := map[string]bool{}
	for _, rc := range pl.ResourceChanges {
		attrs := make(map[string]any, len(rc.Attributes))
		for k, v := range rc.Attributes {
			attrs[k] = v
		}
		rcs = append(rcs, map[string]any{"address": rc.Address, "type": rc.Type, "actions": nonNil(rc.Actions), "attributes": attrs})
		var kind string
		switch {
		case slices.Contains(rc.Actions, "create") && slices.Contains(rc.Actions, "delete"):
			kind = "replace"
			replaced[rc.Address] = true
		case slices.Contains(rc.Actions, "create"):
			kind = "create"
		case slices.Contains(rc.Actions, "update"):
			kind = "update"
		case slices.Contains(rc.Actions, "delete"):
			kind = "delete"
		default:
			continue
		}
		actions[kind] = append(actions[kind], resourceRef(rc.Type, rc.Address))
	}
	// The risk summary's replacement list names replacements the resource
	// changes may leave out.
	for _, addr := range pl.Replacement {
		if !replaced[addr] {
			actions["replace"] = append(actions["replace"], resourceRef("", addr))
		}
	}
	a := pl.Actions
	return map[string]any{
		"planSha256": pl.PlanSHA256, "stack": pl.Stack, "destructive": pl.Destructive,
		"requiresManualApproval": pl.RequiresManualApproval,
		"counts":                 map[string]any{"create": a.Create, "update": a.Update, "delete": a.Delete, "replace": a.Replace},
		"actions": map[string]any{"create": actions["create"], "update": actions["update"],
			"delete": actions["delete"], "replace": actions["replace"]},
		"replacement": nonNil(pl.Replacement), "highRiskResources": nonNil(pl.HighRiskResources),
		"sensitiveChanges": nonNil(pl.SensitiveChanges), "resourceChanges": rcs,
	}
}

// resourceRef is {type, name, address} of a resource address such as
// module.db.aws_db_instance.orders["a"]; typ, when known, wins.
func resourceRef(typ, addr string) map[string]any {
	rest := addr
	for strings.HasPrefix(rest, "module.") {
		_, after, ok := strings.Cut(rest[len("module."):], ".")
		if !ok {
			break
		}
		rest = after
	}
	rest = strings.TrimPrefix(rest, "data.")
	t, name, _ := strings.Cut(rest, ".")
	if typ != "" {
		t = typ
		name = firstNonEmpty(strings.TrimPrefix(rest, typ+"."), name)
	}
	return map[string]any{"type": t, "name": name, "address": addr}
}

// approvalsInput lists the change's current approvals: granted, not
// revoked, not expired, for the plan the record is about (when there is
// one), and not by the change's author.
func approvalsInput(hist []past, planSHA, author string, now time.Time) map[string]any {
	type key struct{ approver, plan string }
	revoked := map[key]bool{}
	for _, h := range hist {
		if a := h.st.Predicate.Approval; a != nil && h.st.Predicate.Kind == evidence.KindApprovalRevoked {
			revoked[key{a.Approver, a.PlanSHA256}] = true
		}
	}
	current := []any{}
	groups := []string{}
	for _, h := range hist {
		a := h.st.Predicate.Approval
		if a == nil || h.st.Predicate.Kind != evidence.KindApprovalGranted || revoked[key{a.Approver, a.PlanSHA256}] ||
			!now.Before(a.ExpiresAt) || planSHA != "" && a.PlanSHA256 != planSHA || author != "" && a.Approver == author {
			continue
		}
		current = append(current, map[string]any{
			"approver": a.Approver, "groups": nonNil(a.Groups), "planSha256": a.PlanSHA256, "commitSha": a.CommitSHA,
			"policyDecisionSha256": a.PolicyDecisionSHA256, "approvedAt": a.ApprovedAt.UTC().Format(time.RFC3339Nano),
			"expiresAt": a.ExpiresAt.UTC().Format(time.RFC3339Nano), "index": int64(h.index),
		})
		for _, g := range a.Groups {
			if !slices.Contains(groups, g) {
				groups = append(groups, g)
			}
		}
	}
	slices.Sort(groups)
	return map[string]any{"current": current, "groups": groups}
}

// exceptionsInput lists the exceptions whose scope covers the change,
// active and expired. An exception is active at the later of the server's
// time and the record's occurredAt, so that a record cannot claim an old
// time to use an expired exception.
func (j *Judge) exceptionsInput(p *evidence.Transition, hist []past, facts map[string]string, now time.Time) map[string]any {
	byID := exceptionLog{}
	if j.cfg.Exceptions != nil {
		for _, e := range j.cfg.Exceptions.AllExceptions() {
			c := *e
			byID[e.ID] = &c
		}
	}
	for _, h := range hist {
		byID.add(h.index, h.st) // the change's own records are never behind the log
	}
	at := now
	if p.OccurredAt.After(at) {
		at = p.OccurredAt
	}
	var active, expired []*Exception
	for _, e := range byID {
		if !e.scope.matches(facts) {
			continue
		}
		if e.Active(at) {
			active = append(active, e)
		} else {
			expired = append(expired, e)
		}
	}
	sortExceptions(active)
	sortExceptions(expired)
	return map[string]any{"active": exceptionList(active), "expired": exceptionList(expired)}
}

func exceptionList(es []*Exception) []any {
	out := make([]any, 0, len(es))
	for _, e := range es {
		out = append(out, map[string]any{
			"id": e.ID, "ruleId": e.RuleID, "scope": e.Scope, "owner": e.Owner, "changeId": e.ChangeID,
			"expiresAt": e.ExpiresAt.UTC().Format(time.RFC3339), "ended": e.Ended,
		})
	}
	return out
}
