package policies

import (
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"evident.dev/evident/evidence"
)

// The input is built as OPA values directly: converting Go maps costs
// more than the evaluation of a remembered decision.

// kv is one member of an input object.
func kv(k string, v *ast.Term) [2]*ast.Term { return ast.Item(ast.StringTerm(k), v) }

func obj(members ...[2]*ast.Term) *ast.Term { return ast.ObjectTerm(members...) }

func str(s string) *ast.Term { return ast.StringTerm(s) }

func boolean(b bool) *ast.Term { return ast.BooleanTerm(b) }

func strs(ss []string) *ast.Term {
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(terms...)
}

func timeTerm(t time.Time) *ast.Term { return ast.StringTerm(t.UTC().Format(time.RFC3339Nano)) }

// input builds the enriched policy input (case study section 10) for a
// record from the change's earlier entries. docs/policies.md lists its
// fields.
func (j *Judge) input(st *evidence.Statement, ph string, hist []past, now time.Time) ast.Value {
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

	author, required := "", []string(nil)
	if contract != nil {
		author, required = contract.Author, contract.RequiresApprovalFrom
	}
	plan := choosePlan(p, hist)
	planSHA := ""
	if plan != nil {
		planSHA = plan.PlanSHA256
	}
	members := make([][2]*ast.Term, 0, 9)
	members = append(members,
		kv("record", obj(
			kv("kind", str(string(p.Kind))), kv("phase", str(ph)), kv("changeId", str(p.ChangeID)),
			kv("actor", str(p.Actor)), kv("occurredAt", timeTerm(p.OccurredAt)), kv("emergency", boolean(p.Emergency)),
		)),
		kv("change", obj(
			kv("id", str(p.ChangeID)), kv("environment", str(tg.Environment)),
			kv("production", boolean(j.cfg.Production.Production(tg.Environment))),
			kv("cloud", str(tg.Cloud)), kv("account", str(tg.Account)), kv("region", str(tg.Region)),
			kv("stack", str(tg.Stack)), kv("cluster", str(tg.Cluster)), kv("namespace", str(tg.Namespace)),
			kv("application", str(tg.Application)), kv("service", str(tg.Service)), kv("dataClass", str(tg.DataClass)),
			kv("riskClass", str(risk)), kv("emergency", boolean(emergency)), kv("repository", str(src.Repository)),
			kv("commitSha", str(src.CommitSHA)), kv("author", str(author)), kv("requiresApprovalFrom", strs(required)),
		)),
		kv("approvals", approvalsInput(hist, planSHA, author, now)),
		kv("exceptions", j.exceptionsInput(p, hist, facts(p.ChangeID, src, tg), now)),
	)
	if plan != nil {
		members = append(members, kv("plan", planInput(plan)))
	}
	switch {
	case p.ArtifactAdmission != nil:
		a := p.ArtifactAdmission
		members = append(members, kv("artifact", obj(
			kv("image", str(a.Image)), kv("digest", str(a.Digest)), kv("signed", boolean(a.Signed)),
			kv("signerIdentity", str(a.SignerIdentity)), kv("sourceBranch", str(a.SourceBranch)),
			kv("protectedBranch", boolean(a.ProtectedBranch)), kv("sbomDigest", str(a.SBOMDigest)),
			kv("provenance", str(a.Provenance)), kv("result", str(a.Result)),
		)))
	case p.Breakglass != nil:
		b := p.Breakglass
		members = append(members, kv("breakglass", obj(
			kv("incident", str(b.Incident)), kv("reason", str(b.Reason)), kv("reviewedBy", str(b.ReviewedBy)),
			kv("approvedBy", strs(b.ApprovedBy)),
		)))
	case p.Sync != nil:
		sy := p.Sync
		members = append(members, kv("sync", obj(
			kv("application", str(sy.Application)), kv("revision", str(sy.Revision)), kv("sourceRepo", str(sy.SourceRepo)),
			kv("sourcePath", str(sy.SourcePath)), kv("pruned", strs(sy.Pruned)),
		)))
	}
	return ast.NewObject(members...)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
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

func planInput(pl *evidence.Plan) *ast.Term {
	var creates, updates, deletes, replaces []*ast.Term
	rcs := make([]*ast.Term, 0, len(pl.ResourceChanges))
	replaced := map[string]bool{}
	for _, rc := range pl.ResourceChanges {
		attrs := make([][2]*ast.Term, 0, len(rc.Attributes))
		for k, v := range rc.Attributes {
			attrs = append(attrs, kv(k, str(v)))
		}
		rcs = append(rcs, obj(kv("address", str(rc.Address)), kv("type", str(rc.Type)), kv("actions", strs(rc.Actions)),
			kv("attributes", obj(attrs...))))
		ref := resourceRef(rc.Type, rc.Address)
		switch {
		case slices.Contains(rc.Actions, "create") && slices.Contains(rc.Actions, "delete"):
			replaces = append(replaces, ref)
			replaced[rc.Address] = true
		case slices.Contains(rc.Actions, "create"):
			creates = append(creates, ref)
		case slices.Contains(rc.Actions, "update"):
			updates = append(updates, ref)
		case slices.Contains(rc.Actions, "delete"):
			deletes = append(deletes, ref)
		}
	}
	// The risk summary's replacement list names replacements the resource
	// changes may leave out.
	for _, addr := range pl.Replacement {
		if !replaced[addr] {
			replaces = append(replaces, resourceRef("", addr))
		}
	}
	a := pl.Actions
	return obj(
		kv("planSha256", str(pl.PlanSHA256)), kv("stack", str(pl.Stack)), kv("destructive", boolean(pl.Destructive)),
		kv("requiresManualApproval", boolean(pl.RequiresManualApproval)),
		kv("counts", obj(kv("create", ast.IntNumberTerm(a.Create)), kv("update", ast.IntNumberTerm(a.Update)),
			kv("delete", ast.IntNumberTerm(a.Delete)), kv("replace", ast.IntNumberTerm(a.Replace)))),
		kv("actions", obj(kv("create", ast.ArrayTerm(creates...)), kv("update", ast.ArrayTerm(updates...)),
			kv("delete", ast.ArrayTerm(deletes...)), kv("replace", ast.ArrayTerm(replaces...)))),
		kv("replacement", strs(pl.Replacement)), kv("highRiskResources", strs(pl.HighRiskResources)),
		kv("sensitiveChanges", strs(pl.SensitiveChanges)), kv("resourceChanges", ast.ArrayTerm(rcs...)),
	)
}

// resourceRef is {type, name, address} of a resource address such as
// module.db.aws_db_instance.orders["a"]; typ, when known, wins.
func resourceRef(typ, addr string) *ast.Term {
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
	return obj(kv("type", str(t)), kv("name", str(name)), kv("address", str(addr)))
}

// approvalsInput lists the change's current approvals: granted, not
// revoked, not expired, for the plan the record is about (when there is
// one), and not by the change's author.
func approvalsInput(hist []past, planSHA, author string, now time.Time) *ast.Term {
	type key struct{ approver, plan string }
	revoked := map[key]bool{}
	for _, h := range hist {
		if a := h.st.Predicate.Approval; a != nil && h.st.Predicate.Kind == evidence.KindApprovalRevoked {
			revoked[key{a.Approver, a.PlanSHA256}] = true
		}
	}
	var current []*ast.Term
	var groups []string
	for _, h := range hist {
		a := h.st.Predicate.Approval
		if a == nil || h.st.Predicate.Kind != evidence.KindApprovalGranted || revoked[key{a.Approver, a.PlanSHA256}] ||
			!now.Before(a.ExpiresAt) || planSHA != "" && a.PlanSHA256 != planSHA || author != "" && a.Approver == author {
			continue
		}
		current = append(current, obj(
			kv("approver", str(a.Approver)), kv("groups", strs(a.Groups)), kv("planSha256", str(a.PlanSHA256)),
			kv("commitSha", str(a.CommitSHA)), kv("policyDecisionSha256", str(a.PolicyDecisionSHA256)),
			kv("approvedAt", timeTerm(a.ApprovedAt)), kv("expiresAt", timeTerm(a.ExpiresAt)),
			kv("index", ast.UIntNumberTerm(h.index)),
		))
		for _, g := range a.Groups {
			if !slices.Contains(groups, g) {
				groups = append(groups, g)
			}
		}
	}
	slices.Sort(groups)
	return obj(kv("current", ast.ArrayTerm(current...)), kv("groups", strs(groups)))
}

// exceptionsInput lists the exceptions whose scope covers the change,
// active and expired. An exception is active at the later of the server's
// time and the record's occurredAt, so that a record cannot claim an old
// time to use an expired exception.
func (j *Judge) exceptionsInput(p *evidence.Transition, hist []past, facts map[string]string, now time.Time) *ast.Term {
	byID := exceptionLog{}
	if j.cfg.Exceptions != nil {
		for _, e := range j.cfg.Exceptions.AllExceptions() {
			byID[e.ID] = e
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
	return obj(kv("active", exceptionList(active)), kv("expired", exceptionList(expired)))
}

func exceptionList(es []*Exception) *ast.Term {
	out := make([]*ast.Term, 0, len(es))
	for _, e := range es {
		out = append(out, obj(
			kv("id", str(e.ID)), kv("ruleId", str(e.RuleID)), kv("scope", str(e.Scope)), kv("owner", str(e.Owner)),
			kv("changeId", str(e.ChangeID)), kv("expiresAt", ast.StringTerm(e.ExpiresAt.UTC().Format(time.RFC3339))),
			kv("ended", boolean(e.Ended)),
		))
	}
	return ast.ArrayTerm(out...)
}
