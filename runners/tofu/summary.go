package tofu

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	tfjson "github.com/hashicorp/terraform-json"

	"evident.dev/evident/evidence"
)

// Summarize computes the plan's risk summary from its JSON form:
// action counts, replaced resources, whether anything is destroyed,
// resources of risky types, and the names (never the values) of sensitive
// attributes and outputs the plan touches.
func Summarize(p *tfjson.Plan, cat *Catalog, ch Change) evidence.Plan {
	s := evidence.Plan{Stack: ch.StackPath, EngineVersion: p.TerraformVersion}
	sec := knownSecrets(p)
	for _, rc := range p.ResourceChanges {
		if rc.Change == nil {
			continue
		}
		a := rc.Change.Actions
		switch {
		case a.NoOp() || a.Read() || len(a) == 0:
			continue
		case a.Replace():
			s.Actions.Replace++
			s.Replacement = append(s.Replacement, rc.Address)
		case a.Create():
			s.Actions.Create++
		case a.Update():
			s.Actions.Update++
		case a.Delete():
			s.Actions.Delete++
		}
		acts := make([]string, len(a))
		for i, x := range a {
			acts[i] = string(x)
		}
		s.ResourceChanges = append(s.ResourceChanges, evidence.ResourceChange{Address: rc.Address, Type: rc.Type, Actions: acts,
			Attributes: reportedAttributes(rc.Change, sec)})
		if cat.risky(rc.Type) {
			s.HighRiskResources = append(s.HighRiskResources, rc.Address)
		}
		for _, attr := range sensitivePaths(rc.Change.BeforeSensitive, rc.Change.AfterSensitive) {
			s.SensitiveChanges = append(s.SensitiveChanges, rc.Address+"."+attr)
		}
	}
	for _, name := range sortedKeys(p.OutputChanges) {
		oc := p.OutputChanges[name]
		if oc == nil || oc.Actions.NoOp() {
			continue
		}
		if isTrue(oc.BeforeSensitive) || isTrue(oc.AfterSensitive) {
			s.SensitiveChanges = append(s.SensitiveChanges, "output."+name)
		}
	}
	s.Destructive = s.Actions.Delete > 0 || s.Actions.Replace > 0
	s.RequiresManualApproval = ch.ManualApproval || s.Destructive || len(s.HighRiskResources) > 0
	return s
}

// exposureAttributes are the attributes the bundled policies and the
// ledger's facts (evidence.Facts) read to tell whether a change opens
// something to the internet. The runner reports their planned values.
var exposureAttributes = []string{
	"acl", "policy", "members", "member", "container_access_type", "allow_nested_items_to_be_public", "allow_blob_public_access",
	"block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets",
	"type", "internal", "cidr_blocks", "ipv6_cidr_blocks", "cidr_ipv4", "cidr_ipv6", "ingress",
	"direction", "access", "source_ranges", "source_address_prefix",
}

// reportedAttributes are the planned values of exposureAttributes a change
// sets, as text (JSON for what is not a string). A value the plan marks
// sensitive, or that holds a value known to be secret, is left out.
func reportedAttributes(c *tfjson.Change, sec secrets) map[string]string {
	after, ok := mask(c.After, c.AfterSensitive).(map[string]any)
	if !ok {
		return nil
	}
	var out map[string]string
	for _, k := range exposureAttributes {
		v, ok := after[k]
		if !ok || v == nil {
			continue
		}
		v = sec.scrub(v)
		text, isString := v.(string)
		if !isString {
			b, err := json.Marshal(v)
			if err != nil {
				continue
			}
			text = string(b)
		}
		if strings.Contains(text, Masked) || len(text) > 16384 {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = text
	}
	return out
}

// riskClass raises the change's risk class by what the plan does.
func riskClass(ch Change, s evidence.Plan) string {
	r := ch.RiskClass
	if r == "" {
		r = "low"
	}
	if s.Destructive || len(s.HighRiskResources) > 0 {
		r = maxRisk(r, "high")
	} else if len(s.ResourceChanges) > 0 {
		r = maxRisk(r, "medium")
	}
	return r
}

func mutationType(s evidence.Plan) string {
	kinds := 0
	t := "update"
	for _, c := range []struct {
		n    int
		name string
	}{{s.Actions.Create, "create"}, {s.Actions.Update, "update"}, {s.Actions.Delete, "delete"}, {s.Actions.Replace, "replace"}} {
		if c.n > 0 {
			kinds++
			t = c.name
		}
	}
	if kinds > 1 {
		return "mixed"
	}
	return t
}

// sensitivePaths lists the attribute paths marked sensitive in either
// marker structure ("input", "tags.password", "rules[0].secret").
func sensitivePaths(markers ...any) []string {
	seen := map[string]bool{}
	var out []string
	var walk func(m any, prefix string)
	walk = func(m any, prefix string) {
		switch v := m.(type) {
		case bool:
			if v && prefix != "" && !seen[prefix] {
				seen[prefix] = true
				out = append(out, prefix)
			}
		case map[string]any:
			for _, k := range sortedKeys(v) {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(v[k], p)
			}
		case []any:
			for i, e := range v {
				walk(e, prefix+"["+strconv.Itoa(i)+"]")
			}
		}
	}
	for _, m := range markers {
		walk(m, "")
	}
	return out
}

func isTrue(m any) bool {
	b, ok := m.(bool)
	return ok && b
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// HoldsSecrets reports whether a plan carries sensitive values: a sensitive
// input variable or output, or any attribute marked sensitive. Such a plan
// file holds those values in clear unless the engine encrypts it.
func HoldsSecrets(p *tfjson.Plan) bool {
	if p.Config != nil && p.Config.RootModule != nil {
		for _, v := range p.Config.RootModule.Variables {
			if v != nil && v.Sensitive {
				return true
			}
		}
		for _, o := range p.Config.RootModule.Outputs {
			if o != nil && o.Sensitive {
				return true
			}
		}
	}
	for _, rc := range p.ResourceChanges {
		if rc.Change != nil && len(sensitivePaths(rc.Change.BeforeSensitive, rc.Change.AfterSensitive)) > 0 {
			return true
		}
	}
	for _, oc := range p.OutputChanges {
		if oc != nil && (isTrue(oc.BeforeSensitive) || isTrue(oc.AfterSensitive)) {
			return true
		}
	}
	return false
}

// Redacted is the plan document the runner uploads for reviewers: what
// changes and how, with every value the engine marks sensitive replaced by
// Masked. Input variable values are left out altogether (their names stay):
// a variable not marked sensitive can still hold a credential, and the
// changes show where the values went.
type Redacted struct {
	Format          string                   `json:"format"` // "evident.redacted-plan/v1"
	EngineVersion   string                   `json:"engineVersion,omitempty"`
	PlanSHA256      string                   `json:"planSha256"`
	Variables       []string                 `json:"variables,omitempty"`
	ResourceChanges []RedactedChange         `json:"resourceChanges"`
	ResourceDrift   []RedactedChange         `json:"resourceDrift,omitempty"`
	OutputChanges   map[string]RedactedValue `json:"outputChanges,omitempty"`
}

// RedactedChange is one resource's change with sensitive values masked.
type RedactedChange struct {
	Address string   `json:"address"`
	Type    string   `json:"type"`
	Actions []string `json:"actions"`
	RedactedValue
	ReplacePaths []any `json:"replacePaths,omitempty"`
}

// RedactedValue is a before/after pair with sensitive values masked.
type RedactedValue struct {
	Before any `json:"before"`
	After  any `json:"after"`
}

// Masked replaces a sensitive value in a redacted plan.
const Masked = "(sensitive value)"

// Redact builds the redacted form of a plan.
//
// The engine's sensitivity markers are not enough on their own: a value
// can reach an attribute the markers miss (terraform_data copies its input
// to its output, and the prior state's markers cover only the input). So
// every value known to be sensitive (under a marker, of a sensitive
// variable or output) is also masked wherever else it appears, alone or
// inside a longer string.
func Redact(p *tfjson.Plan, planSHA256 string) ([]byte, error) {
	sec := knownSecrets(p)
	r := Redacted{
		Format:          "evident.redacted-plan/v1",
		EngineVersion:   p.TerraformVersion,
		PlanSHA256:      planSHA256,
		Variables:       sortedKeys(p.Variables),
		ResourceChanges: redactChanges(p.ResourceChanges, sec),
		ResourceDrift:   redactChanges(p.ResourceDrift, sec),
	}
	for name, oc := range p.OutputChanges {
		if oc == nil {
			continue
		}
		if r.OutputChanges == nil {
			r.OutputChanges = map[string]RedactedValue{}
		}
		r.OutputChanges[name] = RedactedValue{
			Before: sec.scrub(mask(oc.Before, oc.BeforeSensitive)),
			After:  sec.scrub(mask(oc.After, oc.AfterSensitive)),
		}
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode redacted plan: %w", err)
	}
	return append(b, '\n'), nil
}

func redactChanges(rcs []*tfjson.ResourceChange, sec secrets) []RedactedChange {
	out := []RedactedChange{}
	for _, rc := range rcs {
		if rc.Change == nil {
			continue
		}
		acts := make([]string, len(rc.Change.Actions))
		for i, a := range rc.Change.Actions {
			acts[i] = string(a)
		}
		out = append(out, RedactedChange{
			Address: rc.Address, Type: rc.Type, Actions: acts,
			RedactedValue: RedactedValue{
				Before: sec.scrub(mask(rc.Change.Before, rc.Change.BeforeSensitive)),
				After:  sec.scrub(mask(rc.Change.After, rc.Change.AfterSensitive)),
			},
			ReplacePaths: rc.Change.ReplacePaths,
		})
	}
	return out
}

// mask returns v with every part the sensitivity marker m flags replaced by
// Masked. m mirrors v's shape: true masks the whole subtree.
func mask(v, m any) any {
	switch mv := m.(type) {
	case bool:
		if mv && v != nil {
			return Masked
		}
		return v
	case map[string]any:
		obj, ok := v.(map[string]any)
		if !ok {
			if v == nil {
				return nil
			}
			return Masked // shapes disagree: mask rather than guess
		}
		out := make(map[string]any, len(obj))
		for k, e := range obj {
			out[k] = mask(e, mv[k])
		}
		return out
	case []any:
		arr, ok := v.([]any)
		if !ok {
			if v == nil {
				return nil
			}
			return Masked
		}
		out := make([]any, len(arr))
		for i, e := range arr {
			var em any
			if i < len(mv) {
				em = mv[i]
			}
			out[i] = mask(e, em)
		}
		return out
	}
	return v
}

// secrets are the values a plan marks sensitive, in string form.
type secrets []string

// minContained is the length from which a secret is also looked for inside
// longer strings; a shorter one is masked only where it is the whole value.
const minContained = 6

// knownSecrets collects every value the plan marks sensitive: under
// sensitivity markers of resources and outputs, and the values of input
// variables declared sensitive.
func knownSecrets(p *tfjson.Plan) secrets {
	seen := map[string]bool{}
	var out secrets
	add := func(v any) {
		leaves(v, func(s string) {
			if s != "" && !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		})
	}
	var walk func(v, m any)
	walk = func(v, m any) {
		switch mv := m.(type) {
		case bool:
			if mv {
				add(v)
			}
		case map[string]any:
			if obj, ok := v.(map[string]any); ok {
				for k, e := range obj {
					walk(e, mv[k])
				}
			}
		case []any:
			if arr, ok := v.([]any); ok {
				for i, e := range arr {
					if i < len(mv) {
						walk(e, mv[i])
					}
				}
			}
		}
	}
	for _, list := range [][]*tfjson.ResourceChange{p.ResourceChanges, p.ResourceDrift} {
		for _, rc := range list {
			if rc.Change != nil {
				walk(rc.Change.Before, rc.Change.BeforeSensitive)
				walk(rc.Change.After, rc.Change.AfterSensitive)
			}
		}
	}
	for _, oc := range p.OutputChanges {
		if oc != nil {
			walk(oc.Before, oc.BeforeSensitive)
			walk(oc.After, oc.AfterSensitive)
		}
	}
	if p.Config != nil && p.Config.RootModule != nil {
		for name, v := range p.Config.RootModule.Variables {
			if pv := p.Variables[name]; v != nil && v.Sensitive && pv != nil {
				add(pv.Value)
			}
		}
		for name, o := range p.Config.RootModule.Outputs {
			if oc := p.OutputChanges[name]; o != nil && o.Sensitive && oc != nil {
				add(oc.Before)
				add(oc.After)
			}
		}
	}
	return out
}

// leaves calls f with the string form of every scalar in v.
func leaves(v any, f func(string)) {
	switch x := v.(type) {
	case nil:
	case string:
		f(x)
	case map[string]any:
		for _, e := range x {
			leaves(e, f)
		}
	case []any:
		for _, e := range x {
			leaves(e, f)
		}
	default:
		f(fmt.Sprint(x))
	}
}

// scrub masks every scalar of v that is, or (for strings) contains, a
// known secret.
func (s secrets) scrub(v any) any {
	if len(s) == 0 {
		return v
	}
	switch x := v.(type) {
	case nil:
		return nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = s.scrub(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = s.scrub(e)
		}
		return out
	case string:
		if s.holds(x, true) {
			return Masked
		}
		return x
	default:
		if s.holds(fmt.Sprint(x), false) {
			return Masked
		}
		return x
	}
}

func (s secrets) holds(v string, isString bool) bool {
	for _, sec := range s {
		if v == sec || isString && len(sec) >= minContained && strings.Contains(v, sec) {
			return true
		}
	}
	return false
}
