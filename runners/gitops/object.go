package gitops

import (
	"net/url"
	"strings"
	"time"

	"evident.dev/evident/evidence"
)

// Readers of unstructured Kubernetes objects (map[string]any as decoded from
// JSON). A missing or mistyped field reads as the zero value: controllers
// fill status in gradually, and a record built from what is there is better
// than none.

func field(o map[string]any, path ...string) any {
	var cur any = o
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func str(o map[string]any, path ...string) string {
	s, _ := field(o, path...).(string)
	return s
}

func boolean(o map[string]any, path ...string) bool {
	b, _ := field(o, path...).(bool)
	return b
}

func object(o map[string]any, path ...string) map[string]any {
	m, _ := field(o, path...).(map[string]any)
	return m
}

func list(o map[string]any, path ...string) []map[string]any {
	l, _ := field(o, path...).([]any)
	out := make([]map[string]any, 0, len(l))
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func strings_(o map[string]any, path ...string) []string {
	l, _ := field(o, path...).([]any)
	var out []string
	for _, e := range l {
		if s, ok := e.(string); ok && s != "" {
			out = append(out, s)
		}
	}
	return out
}

func integer(o map[string]any, path ...string) int64 {
	switch v := field(o, path...).(type) {
	case int64:
		return v
	case float64:
		return int64(v)
	case int:
		return int64(v)
	}
	return 0
}

// timestamp reads an RFC 3339 time in UTC; zero if absent or unreadable.
func timestamp(o map[string]any, path ...string) time.Time {
	t, err := time.Parse(time.RFC3339, str(o, path...))
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// firstTime returns the first non-zero time.
func firstTime(ts ...time.Time) time.Time {
	for _, t := range ts {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

// condition returns the status condition of the given type.
func condition(o map[string]any, typ string) map[string]any {
	for _, c := range list(o, "status", "conditions") {
		if str(c, "type") == typ {
			return c
		}
	}
	return nil
}

// objectRef names the object a record is derived from.
func objectRef(o map[string]any) *evidence.ObjectRef {
	return &evidence.ObjectRef{
		APIVersion: str(o, "apiVersion"),
		Kind:       str(o, "kind"),
		Namespace:  str(o, "metadata", "namespace"),
		Name:       str(o, "metadata", "name"),
		UID:        str(o, "metadata", "uid"),
		Generation: integer(o, "metadata", "generation"),
	}
}

// isCommit reports whether s is a full or abbreviated Git commit SHA.
func isCommit(s string) bool {
	if len(s) < 7 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// label turns a free-form name into a target label (letters, digits, '.',
// '_', '/', '-'; starting with a letter or digit; at most 128 bytes), as the
// record's target fields require: a cluster API URL becomes its host.
func label(s string) string {
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		s = u.Host
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '/', c == '-':
		default:
			b[i] = '-'
		}
	}
	s = strings.TrimLeft(string(b), "._/-")
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}

// truncate keeps text fields within the record's limits.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && n < len(s) && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}

// resourceName is "group/Kind/namespace/name" with empty parts dropped.
func resourceName(group, kind, namespace, name string) string {
	parts := make([]string, 0, 4)
	for _, p := range []string{group, kind, namespace, name} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/")
}

// changeID is the record's changeId: the object's evident.dev/change-id
// annotation when the platform set one, else the object name and revision,
// which ties every record of one rollout of one revision together.
func changeID(o map[string]any, revision string) string {
	if id := str(o, "metadata", "annotations", AnnotationChangeID); id != "" {
		return truncate(id, 128)
	}
	if isCommit(revision) && len(revision) > 12 {
		revision = revision[:12]
	}
	id := str(o, "metadata", "name")
	if revision != "" {
		id += "@" + revision
	}
	return truncate(id, 128)
}
