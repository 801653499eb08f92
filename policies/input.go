package policies

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"evident.dev/evident/approvals"
	"evident.dev/evident/evidence"
)

// The input is built as OPA values directly: converting Go maps costs
// more than the evaluation of a remembered decision.

// kv is one member of an input object. The input's member names are
// shared terms (inputKeys): values are never changed once built, as OPA's
// own interned terms are not, and a record's input then allocates only its
// values.
func kv(k string, v *ast.Term) [2]*ast.Term {
	key, ok := inputKeys[k]
	if !ok {
		key = ast.StringTerm(k) // a resource attribute's name
	}
	return ast.Item(key, v)
}

// inputKeys is a read-only table of the input's member names.
var inputKeys = map[string]*ast.Term{
	"account": ast.StringTerm("account"), "actions": ast.StringTerm("actions"), "active": ast.StringTerm("active"),
	"actor": ast.StringTerm("actor"), "address": ast.StringTerm("address"), "application": ast.StringTerm("application"),
	"approvals": ast.StringTerm("approvals"), "approvedAt": ast.StringTerm("approvedAt"), "approvedBy": ast.StringTerm("approvedBy"),
	"approver": ast.StringTerm("approver"), "artifact": ast.StringTerm("artifact"), "attributes": ast.StringTerm("attributes"),
	"author": ast.StringTerm("author"), "breakglass": ast.StringTerm("breakglass"), "change": ast.StringTerm("change"),
	"changeId": ast.StringTerm("changeId"), "cloud": ast.StringTerm("cloud"), "cluster": ast.StringTerm("cluster"),
	"commitSha": ast.StringTerm("commitSha"), "counts": ast.StringTerm("counts"), "create": ast.StringTerm("create"),
	"current": ast.StringTerm("current"), "dataClass": ast.StringTerm("dataClass"), "delete": ast.StringTerm("delete"),
	"destructive": ast.StringTerm("destructive"), "digest": ast.StringTerm("digest"), "emergency": ast.StringTerm("emergency"),
	"ended": ast.StringTerm("ended"), "environment": ast.StringTerm("environment"), "exceptions": ast.StringTerm("exceptions"),
	"expired": ast.StringTerm("expired"), "expiresAt": ast.StringTerm("expiresAt"), "groups": ast.StringTerm("groups"),
	"highRiskResources": ast.StringTerm("highRiskResources"), "id": ast.StringTerm("id"), "image": ast.StringTerm("image"),
	"incident": ast.StringTerm("incident"), "index": ast.StringTerm("index"), "kind": ast.StringTerm("kind"),
	"name": ast.StringTerm("name"), "namespace": ast.StringTerm("namespace"), "occurredAt": ast.StringTerm("occurredAt"),
	"owner": ast.StringTerm("owner"), "phase": ast.StringTerm("phase"), "plan": ast.StringTerm("plan"),
	"planSha256": ast.StringTerm("planSha256"), "policyDecisionSha256": ast.StringTerm("policyDecisionSha256"), "production": ast.StringTerm("production"),
	"protectedBranch": ast.StringTerm("protectedBranch"), "provenance": ast.StringTerm("provenance"), "pruned": ast.StringTerm("pruned"),
	"reason": ast.StringTerm("reason"), "record": ast.StringTerm("record"), "region": ast.StringTerm("region"),
	"replace": ast.StringTerm("replace"), "replacement": ast.StringTerm("replacement"), "repository": ast.StringTerm("repository"),
	"requiresApprovalFrom": ast.StringTerm("requiresApprovalFrom"), "requiresManualApproval": ast.StringTerm("requiresManualApproval"), "resourceChanges": ast.StringTerm("resourceChanges"),
	"result": ast.StringTerm("result"), "reviewedBy": ast.StringTerm("reviewedBy"), "revision": ast.StringTerm("revision"),
	"riskClass": ast.StringTerm("riskClass"), "ruleId": ast.StringTerm("ruleId"), "sbomDigest": ast.StringTerm("sbomDigest"),
	"scope": ast.StringTerm("scope"), "sensitiveChanges": ast.StringTerm("sensitiveChanges"), "service": ast.StringTerm("service"),
	"signed": ast.StringTerm("signed"), "signerIdentity": ast.StringTerm("signerIdentity"), "sourceBranch": ast.StringTerm("sourceBranch"),
	"sourcePath": ast.StringTerm("sourcePath"), "sourceRepo": ast.StringTerm("sourceRepo"), "stack": ast.StringTerm("stack"),
	"sync": ast.StringTerm("sync"), "type": ast.StringTerm("type"), "update": ast.StringTerm("update"),
}

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

// reads is which input members the policies read: for each top-level
// member, all of its fields or only some. nil reads everything.
type reads map[string]readFields

type readFields struct {
	all    bool
	fields map[string]bool
}

// readsOf derives reads from the input paths the policies read.
func readsOf(paths []ast.Ref) reads {
	r := reads{}
	for _, p := range paths {
		top := string(p[1].Value.(ast.String))
		rf := r[top]
		if len(p) == 2 {
			rf.all = true
		} else {
			if rf.fields == nil {
				rf.fields = map[string]bool{}
			}
			rf.fields[string(p[2].Value.(ast.String))] = true
		}
		r[top] = rf
	}
	return r
}

func (r reads) top(k string) bool {
	if r == nil {
		return true
	}
	_, ok := r[k]
	return ok
}

func (r reads) object(top string, n int) *objectBuilder {
	b := &objectBuilder{top: top, members: make([][2]*ast.Term, 0, n)}
	if r != nil {
		rf := r[top]
		b.only = &rf
	}
	return b
}

// objectBuilder builds an input member with only the fields read.
type objectBuilder struct {
	top     string
	only    *readFields // nil: every field
	members [][2]*ast.Term
}

func (b *objectBuilder) wants(k string) bool {
	return b.only == nil || b.only.all || b.only.fields[k]
}

func (b *objectBuilder) add(k string, v *ast.Term) { b.members = append(b.members, kv(k, v)) }

func (b *objectBuilder) str(k, v string) {
	if b.wants(k) {
		b.add(k, ast.StringTerm(v))
	}
}

func (b *objectBuilder) boolean(k string, v bool) {
	if b.wants(k) {
		b.add(k, ast.BooleanTerm(v))
	}
}

func (b *objectBuilder) member() [2]*ast.Term { return kv(b.top, ast.ObjectTerm(b.members...)) }

// input builds the enriched policy input for a record from the change's
// earlier entries. docs/policies.md lists its fields. Members no rule of the
// set reads are left out (Set.reads): the rules cannot tell, and building
// them would cost more than evaluating a remembered decision.
func (j *Judge) input(ctx context.Context, st *evidence.Statement, ph string, hist []past, at time.Time) (ast.Value, error) {
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
	r := j.cfg.Set.reads
	members := make([][2]*ast.Term, 0, 9)
	if r.top("record") {
		b := r.object("record", 6)
		b.str("kind", string(p.Kind))
		b.str("phase", ph)
		b.str("changeId", p.ChangeID)
		b.str("actor", p.Actor)
		if b.wants("occurredAt") {
			b.add("occurredAt", timeTerm(p.OccurredAt))
		}
		b.boolean("emergency", p.Emergency)
		members = append(members, b.member())
	}
	if r.top("change") {
		b := r.object("change", 18)
		b.str("id", p.ChangeID)
		b.str("environment", tg.Environment)
		b.boolean("production", j.cfg.Production.Production(tg.Environment))
		b.str("cloud", tg.Cloud)
		b.str("account", tg.Account)
		b.str("region", tg.Region)
		b.str("stack", tg.Stack)
		b.str("cluster", tg.Cluster)
		b.str("namespace", tg.Namespace)
		b.str("application", tg.Application)
		b.str("service", tg.Service)
		b.str("dataClass", tg.DataClass)
		b.str("riskClass", risk)
		b.boolean("emergency", emergency)
		b.str("repository", src.Repository)
		b.str("commitSha", src.CommitSHA)
		b.str("author", author)
		if b.wants("requiresApprovalFrom") {
			b.add("requiresApprovalFrom", strs(required))
		}
		members = append(members, b.member())
	}
	if r.top("approvals") {
		a, err := j.approvalsInput(ctx, approvals.Subject{
			ChangeID: p.ChangeID, CommitSHA: src.CommitSHA, PlanSHA256: planSHA, Target: tg, RiskClass: risk, At: at,
		})
		if err != nil {
			return nil, err
		}
		members = append(members, kv("approvals", a))
	}
	if r.top("exceptions") {
		members = append(members, kv("exceptions", j.exceptionsInput(hist, facts(p.ChangeID, src, tg), at)))
	}
	if plan != nil && r.top("plan") {
		members = append(members, planInput(plan, r.object("plan", 10)))
	}
	switch {
	case p.ArtifactAdmission != nil && r.top("artifact"):
		a := p.ArtifactAdmission
		b := r.object("artifact", 9)
		b.str("image", a.Image)
		b.str("digest", a.Digest)
		b.boolean("signed", a.Signed)
		b.str("signerIdentity", a.SignerIdentity)
		b.str("sourceBranch", a.SourceBranch)
		b.boolean("protectedBranch", a.ProtectedBranch)
		b.str("sbomDigest", a.SBOMDigest)
		b.str("provenance", a.Provenance)
		b.str("result", a.Result)
		members = append(members, b.member())
	case p.Breakglass != nil && r.top("breakglass"):
		bg := p.Breakglass
		b := r.object("breakglass", 4)
		b.str("incident", bg.Incident)
		b.str("reason", bg.Reason)
		b.str("reviewedBy", bg.ReviewedBy)
		if b.wants("approvedBy") {
			b.add("approvedBy", strs(bg.ApprovedBy))
		}
		members = append(members, b.member())
	case p.Sync != nil && r.top("sync"):
		sy := p.Sync
		b := r.object("sync", 5)
		b.str("application", sy.Application)
		b.str("revision", sy.Revision)
		b.str("sourceRepo", sy.SourceRepo)
		b.str("sourcePath", sy.SourcePath)
		if b.wants("pruned") {
			b.add("pruned", strs(sy.Pruned))
		}
		members = append(members, b.member())
	}
	return ast.NewObject(members...), nil
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

func planInput(pl *evidence.Plan, b *objectBuilder) [2]*ast.Term {
	b.str("planSha256", pl.PlanSHA256)
	b.str("stack", pl.Stack)
	b.boolean("destructive", pl.Destructive)
	b.boolean("requiresManualApproval", pl.RequiresManualApproval)
	if b.wants("counts") {
		a := pl.Actions
		b.add("counts", obj(kv("create", ast.IntNumberTerm(a.Create)), kv("update", ast.IntNumberTerm(a.Update)),
			kv("delete", ast.IntNumberTerm(a.Delete)), kv("replace", ast.IntNumberTerm(a.Replace))))
	}
	for _, l := range [...]struct {
		name string
		v    []string
	}{{"replacement", pl.Replacement}, {"highRiskResources", pl.HighRiskResources}, {"sensitiveChanges", pl.SensitiveChanges}} {
		if b.wants(l.name) {
			b.add(l.name, strs(l.v))
		}
	}
	if b.wants("resourceChanges") {
		rcs := make([]*ast.Term, 0, len(pl.ResourceChanges))
		for _, rc := range pl.ResourceChanges {
			attrs := make([][2]*ast.Term, 0, len(rc.Attributes))
			for k, v := range rc.Attributes {
				attrs = append(attrs, kv(k, str(v)))
			}
			rcs = append(rcs, obj(kv("address", str(rc.Address)), kv("type", str(rc.Type)), kv("actions", strs(rc.Actions)),
				kv("attributes", obj(attrs...))))
		}
		b.add("resourceChanges", ast.ArrayTerm(rcs...))
	}
	if b.wants("actions") {
		b.add("actions", planActions(pl))
	}
	return b.member()
}

// planActions groups the plan's resources by action, as the input in
// docs/policies.md shows: {create, update, delete, replace: [{type, name,
// address}]}.
func planActions(pl *evidence.Plan) *ast.Term {
	var creates, updates, deletes, replaces []*ast.Term
	replaced := map[string]bool{}
	for _, rc := range pl.ResourceChanges {
		ref := func() *ast.Term { return resourceRef(rc.Type, rc.Address) }
		switch {
		case slices.Contains(rc.Actions, "create") && slices.Contains(rc.Actions, "delete"):
			replaces = append(replaces, ref())
			replaced[rc.Address] = true
		case slices.Contains(rc.Actions, "create"):
			creates = append(creates, ref())
		case slices.Contains(rc.Actions, "update"):
			updates = append(updates, ref())
		case slices.Contains(rc.Actions, "delete"):
			deletes = append(deletes, ref())
		}
	}
	// The risk summary's replacement list names replacements the resource
	// changes may leave out.
	for _, addr := range pl.Replacement {
		if !replaced[addr] {
			replaces = append(replaces, resourceRef("", addr))
		}
	}
	return obj(kv("create", ast.ArrayTerm(creates...)), kv("update", ast.ArrayTerm(updates...)),
		kv("delete", ast.ArrayTerm(deletes...)), kv("replace", ast.ArrayTerm(replaces...)))
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

// approvalsInput lists the approvals that count for the subject, as the
// approval judge decided (bound to the commit, plan and policy decision,
// signed by the approver or a relay, not revoked, fresh at the judged time,
// not by the author), with the groups the directory gives their approvers.
func (j *Judge) approvalsInput(ctx context.Context, s approvals.Subject) (*ast.Term, error) {
	var current []*ast.Term
	var groups []string
	if j.cfg.Approvals != nil {
		as, err := j.cfg.Approvals.Assess(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("policies: approvals of change %s: %w", s.ChangeID, err)
		}
		for _, v := range as.Verdicts {
			if !v.Counts {
				continue
			}
			current = append(current, obj(
				kv("approver", str(v.Approver)), kv("groups", strs(v.Groups)),
				kv("approvedAt", timeTerm(v.ApprovedAt)), kv("expiresAt", timeTerm(v.ExpiresAt)),
				kv("index", ast.UIntNumberTerm(v.Entry)),
			))
			for _, g := range v.Groups {
				if !slices.Contains(groups, g) {
					groups = append(groups, g)
				}
			}
		}
	}
	slices.Sort(groups)
	return obj(kv("current", ast.ArrayTerm(current...)), kv("groups", strs(groups))), nil
}

// exceptionsInput lists the exceptions whose scope covers the change,
// active and expired at the judged time (verifier.JudgedAt).
func (j *Judge) exceptionsInput(hist []past, facts map[string]string, at time.Time) *ast.Term {
	byID := exceptionLog{}
	if j.cfg.Exceptions != nil {
		for _, e := range j.cfg.Exceptions.AllExceptions() {
			byID[e.ID] = e
		}
	}
	for _, h := range hist {
		byID.add(h.index, h.st) // the change's own records are never behind the log
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
