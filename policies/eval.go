package policies

import (
	"context"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"evident.dev/evident/evidence"
)

// Eval evaluates the prepared query over one input and returns the
// decisions, sorted; a repeated input (as far as the rules read it) is
// answered from the memo. A decision a rule wrote malformed (no ruleId, an
// unknown result) becomes a deny of rule evident.policy.malformed-decision:
// the set fails closed.
func (s *Set) Eval(ctx context.Context, v ast.Value) ([]evidence.Decision, error) {
	var key ast.Value
	if s.memo != nil {
		key = s.memo.key(v)
		if ds, ok := s.memo.get(key); ok {
			return ds, nil
		}
	}
	ds, err := s.eval(ctx, v)
	if err == nil && s.memo != nil {
		s.memo.put(key, ds)
	}
	return ds, err
}

func (s *Set) eval(ctx context.Context, v ast.Value) ([]evidence.Decision, error) {
	rs, err := s.query.Eval(ctx, rego.EvalParsedInput(v))
	if err != nil {
		return nil, fmt.Errorf("policies: evaluate: %w", err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil // no rule wrote anything
	}
	set, ok := rs[0].Expressions[0].Value.([]any)
	if !ok {
		return nil, fmt.Errorf("policies: %s is a %T, not a set", Query, rs[0].Expressions[0].Value)
	}
	out := make([]evidence.Decision, 0, len(set))
	for _, x := range set {
		out = append(out, toDecision(x))
	}
	sortDecisions(out)
	return out, nil
}

func toDecision(x any) evidence.Decision {
	m, _ := x.(map[string]any)
	str := func(k string) string { s, _ := m[k].(string); return s }
	list := func(k string) []string {
		xs, _ := m[k].([]any)
		var out []string
		for _, x := range xs {
			if s, ok := x.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	d := evidence.Decision{
		Result: str("result"), Severity: str("severity"), RuleID: str("ruleId"), Message: str("message"),
		RequiredApprovers: list("requiredApprovers"), Evidence: list("evidence"), ExceptionID: str("exceptionId"),
	}
	switch d.Severity {
	case "", "info", "low", "medium", "high", "critical":
	default:
		d.Severity = "high"
	}
	switch {
	case d.RuleID == "" || !validRuleID(d.RuleID):
		return evidence.Decision{Result: "deny", Severity: "high", RuleID: "evident.policy.malformed-decision",
			Message: fmt.Sprintf("a rule wrote a decision without a valid ruleId: %.200v", x)}
	case d.Result != "allow" && d.Result != "deny" && d.Result != "warn":
		return evidence.Decision{Result: "deny", Severity: "high", RuleID: "evident.policy.malformed-decision",
			Message: fmt.Sprintf("rule %s wrote result %q", d.RuleID, d.Result), Evidence: []string{"rule." + d.RuleID}}
	}
	return d
}

// validRuleID matches the schema's ruleId: ^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$.
func validRuleID(s string) bool {
	if len(s) == 0 || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !alnum && (i == 0 || !strings.ContainsRune("._:/-", rune(c))) {
			return false
		}
	}
	return true
}
