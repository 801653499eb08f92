package policies

import (
	"errors"
	"strings"

	"evident.dev/evident/evidence"
)

// scope is where an exception applies: every selector must match the change.
//
// An exception's scope is written either as selectors, "key=glob" joined by
// commas ("repository=infra-live,stack=prod/aws/*"), or as the shorthand
// "<repository>:<stack glob>". Keys are repository, environment,
// account, region, stack, cluster, namespace, application, service and
// change; in a glob, * matches any run of characters, "/" included.
type scope []selector

type selector struct{ key, glob string }

var scopeKeys = map[string]bool{
	"repository": true, "environment": true, "account": true, "region": true, "stack": true,
	"cluster": true, "namespace": true, "application": true, "service": true, "change": true,
}

// parseScope reads an exception's scope.
func parseScope(s string) (scope, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("required")
	}
	if !strings.Contains(s, "=") {
		repo, stack, ok := strings.Cut(s, ":")
		if !ok || repo == "" || stack == "" {
			return nil, errors.New(`must be selectors such as "repository=infra-live,stack=prod/aws/*" or "<repository>:<stack>"`)
		}
		return scope{{"repository", repo}, {"stack", stack}}, nil
	}
	var out scope
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case !ok || v == "":
			return nil, errors.New("selector " + quote(part) + " must be key=glob with a non-empty glob")
		case !scopeKeys[k]:
			return nil, errors.New("unknown selector key " + quote(k) + " (use repository, environment, account, region, stack, cluster, namespace, application, service or change)")
		}
		out = append(out, selector{k, v})
	}
	return out, nil
}

func quote(s string) string { return `"` + s + `"` }

// matches reports whether every selector matches the change's facts. A
// selector on a fact the change does not have does not match: an exception
// applies only where its scope is known to hold.
func (sc scope) matches(facts map[string]string) bool {
	for _, s := range sc {
		v := facts[s.key]
		if v == "" || !glob(s.glob, v) {
			return false
		}
	}
	return len(sc) > 0
}

// facts are the values scope selectors test.
func facts(changeID string, src evidence.Source, tg evidence.Target) map[string]string {
	return map[string]string{
		"repository": src.Repository, "environment": tg.Environment, "account": tg.Account,
		"region": tg.Region, "stack": tg.Stack, "cluster": tg.Cluster, "namespace": tg.Namespace,
		"application": tg.Application, "service": tg.Service, "change": changeID,
	}
}

// glob matches s against a pattern in which * matches any run of
// characters.
func glob(pattern, s string) bool {
	first, rest, wild := strings.Cut(pattern, "*")
	if !wild {
		return pattern == s
	}
	if !strings.HasPrefix(s, first) {
		return false
	}
	s = s[len(first):]
	for {
		next, more, wild := strings.Cut(rest, "*")
		if !wild {
			return strings.HasSuffix(s, rest) && len(s) >= len(rest)
		}
		i := strings.Index(s, next)
		if i < 0 {
			return false
		}
		s, rest = s[i+len(next):], more
	}
}
