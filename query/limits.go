package query

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"github.com/graphql-go/graphql/language/ast"
	"github.com/graphql-go/graphql/language/parser"
	"github.com/graphql-go/graphql/language/source"
)

// listFields return lists whose size a query does not set: their estimated
// length when costing a query.
var listFields = map[string]int{
	"timeline": 50, "plans": 5, "policyDecisions": 10, "approvals": 10, "selfApprovals": 5, "gateDecisions": 5,
	"applies": 10, "appliesWithoutFreshApproval": 5, "verifications": 5, "syncs": 10, "drift": 10, "exceptions": 5,
	"findings": 10, "rules": 10, "denied": 5, "resourceChanges": 20, "resources": 20,
}

// connectionFields take `first`.
var connectionFields = map[string]bool{"transitions": true, "changes": true, "expiringExceptions": true}

// checkLimits refuses a query deeper than MaxDepth, with more than
// MaxSelections selections, or whose estimated number of resolved fields
// exceeds MaxCost, before it is validated or run. Fragments are
// expanded (with a guard against cycles, which validation refuses anyway).
func (g *GraphQL) checkLimits(req Request) error {
	doc, err := parser.Parse(parser.ParseParams{Source: source.NewSource(&source.Source{Body: []byte(req.Query), Name: "query"})})
	if err != nil {
		return nil // graphql.Do reports syntax errors with their location
	}
	frags := map[string]*ast.FragmentDefinition{}
	for _, d := range doc.Definitions {
		if f, ok := d.(*ast.FragmentDefinition); ok && f.Name != nil {
			frags[f.Name.Value] = f
		}
	}
	visits := 0 // bounds the check itself: fragments can spread each other many times
	var walk func(ss *ast.SelectionSet, depth int, seen map[string]bool) (cost int, err error)
	walk = func(ss *ast.SelectionSet, depth int, seen map[string]bool) (int, error) {
		if ss == nil {
			return 0, nil
		}
		// graphql-go's validation compares fields pairwise, so the number of
		// selections, not only their cost, must stay small.
		if visits += len(ss.Selections); visits > g.cfg.MaxSelections {
			return 0, fmt.Errorf("query has more than %d field selections (fragments expanded); the limit is %d", g.cfg.MaxSelections, g.cfg.MaxSelections)
		}
		if depth > g.cfg.MaxDepth {
			return 0, fmt.Errorf("query is nested %d levels deep; the limit is %d", depth, g.cfg.MaxDepth)
		}
		total := 0
		for _, sel := range ss.Selections {
			var c int
			var err error
			switch s := sel.(type) {
			case *ast.Field:
				mult := 1
				name := s.Name.Value
				if n, ok := listFields[name]; ok {
					mult = n
				}
				if connectionFields[name] {
					mult = 20
					for _, a := range s.Arguments {
						if a.Name.Value == "first" {
							if v, ok := a.Value.(*ast.IntValue); ok {
								if n, err := strconv.Atoi(v.Value); err == nil && n > 0 {
									mult = n
								}
							} else {
								mult = g.cfg.MaxPage // a variable: assume the most
							}
						}
					}
				}
				c, err = walk(s.SelectionSet, depth+1, seen)
				c = 1 + mult*c
			case *ast.InlineFragment:
				c, err = walk(s.SelectionSet, depth, seen)
			case *ast.FragmentSpread:
				name := s.Name.Value
				if f := frags[name]; f != nil && !seen[name] {
					seen[name] = true
					c, err = walk(f.SelectionSet, depth, seen)
					delete(seen, name)
				}
			}
			if err != nil {
				return 0, err
			}
			total += c
			if total > g.cfg.MaxCost {
				return 0, fmt.Errorf("query would resolve about %d fields or more; the limit is %d: ask for fewer nodes per page or fewer fields", total, g.cfg.MaxCost)
			}
		}
		return total, nil
	}
	for _, d := range doc.Definitions {
		if op, ok := d.(*ast.OperationDefinition); ok {
			if _, err := walk(op.SelectionSet, 1, map[string]bool{}); err != nil {
				return err
			}
		}
	}
	return nil
}

func decodeB64Hash(s string) ([32]byte, error) {
	var h [32]byte
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return h, errors.New("checkpoint root is not a base64 SHA-256")
	}
	copy(h[:], b)
	return h, nil
}
