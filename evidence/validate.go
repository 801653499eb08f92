package evidence

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// MaxDepth is the deepest JSON nesting a statement may have, counting every
// object and array on the way. The deepest fixed paths of a record, such as
// predicate.sync.ignoreDifferences[].jsonPointers[] and
// predicate.plan.resourceChanges[].actions[], are 6 levels deep. A trust
// configuration (predicate.bootstrap.trust, predicate.trust.config) starts at
// level 4 and nests deeper: runners[].scope.environments[] reaches level 8.
// MaxDepth leaves a trust configuration 13 levels of its own.
const MaxDepth = 16

// FieldError names one invalid field by its JSON path.
type FieldError struct {
	Field  string `json:"field"` // e.g. "predicate.approval.planSha256"
	Reason string `json:"reason"`
}

func (e FieldError) Error() string { return e.Field + ": " + e.Reason }

// ValidationError lists every problem found in a statement.
type ValidationError struct {
	Problems []FieldError
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return "invalid record: " + strings.Join(msgs, "; ")
}

// ErrMalformed is wrapped by every error about a payload that is not a
// well-formed statement (as opposed to a well-formed one with invalid fields).
var ErrMalformed = errors.New("malformed statement")

var unmarshalOptions = json.RejectUnknownMembers(true)

// Decode parses a DSSE payload into a Statement and validates it. Unknown
// fields, duplicate names, invalid UTF-8, trailing data, nesting deeper than
// MaxDepth and null (but for policy.decisions and inside a trust
// configuration) are refused. Errors wrap ErrMalformed or are a
// *ValidationError.
func Decode(payload []byte) (*Statement, error) {
	hasNull, err := scan(payload, MaxDepth)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var st Statement
	if err := json.Unmarshal(payload, &st, unmarshalOptions); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrMalformed, DescribeJSONError(err))
	}
	if hasNull {
		if err := checkNulls(payload); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	if err := st.Validate(); err != nil {
		return nil, err
	}
	return &st, nil
}

// checkNulls refuses a null anywhere but inside a trust configuration, which
// is any JSON object, and in policy.decisions, which Go clients used to write
// for a policy block without decisions. The decoder reads null as the zero
// value, so a null would otherwise pass for an absent field where the schema
// refuses it. payload is known to be valid JSON.
func checkNulls(payload []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(payload))
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			return nil // io.EOF: Unmarshal has read the payload already
		}
		if tok.Kind() != 'n' {
			continue
		}
		ptr := dec.StackPointer()
		if ptr == "/predicate/policy/decisions" ||
			strings.HasPrefix(string(ptr), "/predicate/bootstrap/trust/") ||
			strings.HasPrefix(string(ptr), "/predicate/trust/config/") {
			continue
		}
		if ptr == "" {
			return errors.New("the statement is null")
		}
		return errors.New(pointerField(ptr) + ": must not be null (leave out a field without a value)")
	}
}

// DescribeJSONError turns a JSON decoding error into a message that names the
// field by its path, spelled as FieldError spells it ("predicate.occurredAt",
// "subject[0].digest"), rather than by Go types.
func DescribeJSONError(err error) string {
	var semErr *json.SemanticError
	if errors.As(err, &semErr) && semErr.JSONPointer != "" {
		field := pointerField(semErr.JSONPointer)
		switch {
		case errors.Is(semErr.Err, json.ErrUnknownName):
			return field + ": unknown field"
		case semErr.JSONKind == '0' && errors.Is(semErr.Err, strconv.ErrSyntax):
			return field + ": must be an integer without a fraction or exponent (JSON number " + excerpt(semErr.JSONValue) + ")"
		case semErr.JSONKind == '0' && errors.Is(semErr.Err, strconv.ErrRange):
			return field + ": out of range (JSON number " + excerpt(semErr.JSONValue) + ")"
		case semErr.Err != nil:
			// The value has the right JSON type but does not parse,
			// such as a time that is not RFC 3339.
			return field + ": " + trimJSONPrefix(semErr.Err.Error())
		case semErr.JSONKind != 0:
			return fmt.Sprintf("%s: wrong type (JSON %s)", field, semErr.JSONKind)
		}
		return field + ": " + trimJSONPrefix(err.Error())
	}
	what := "invalid JSON"
	if errors.Is(err, io.ErrUnexpectedEOF) {
		what = "truncated JSON"
	}
	var synErr *jsontext.SyntacticError
	if errors.As(err, &synErr) && synErr.JSONPointer != "" && synErr.Err != nil {
		return fmt.Sprintf("%s in %s after byte %d: %s", what, pointerField(synErr.JSONPointer),
			synErr.ByteOffset, trimJSONPrefix(synErr.Err.Error()))
	}
	return what + ": " + trimJSONPrefix(err.Error())
}

// excerpt is at most the first 32 bytes of a JSON value, for a message.
func excerpt(v jsontext.Value) string {
	if len(v) > 32 {
		return string(v[:32]) + "..."
	}
	return string(v)
}

func trimJSONPrefix(msg string) string {
	for _, p := range []string{"json: ", "jsontext: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

// pointerField spells a JSON Pointer as FieldError spells a field: the
// pointer's unescaped tokens joined by dots, array indexes as [N]:
// "/predicate/plan/resourceChanges/1/actions/0" is
// "predicate.plan.resourceChanges[1].actions[0]". The keys of the maps of a
// statement (subject[].digest, predicate.bootstrap.versions,
// predicate.plan.resourceChanges[].attributes) are names even
// when they are numbers.
func pointerField(ptr jsontext.Pointer) string {
	toks := slices.Collect(ptr.Tokens())
	var b strings.Builder
	for k, tok := range toks {
		if isArrayIndex(tok) && !isMapKey(toks[:k]) {
			b.WriteByte('[')
			b.WriteString(tok)
			b.WriteByte(']')
			continue
		}
		if k > 0 {
			b.WriteByte('.')
		}
		b.WriteString(keyName(tok))
	}
	return b.String()
}

// isArrayIndex reports whether a pointer token is an array index (RFC 6901).
func isArrayIndex(tok string) bool {
	if tok == "" || len(tok) > 1 && tok[0] == '0' {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < '0' || tok[i] > '9' {
			return false
		}
	}
	return true
}

// isMapKey reports whether the next token after parents is a key of a map.
func isMapKey(parents []string) bool {
	if len(parents) == 5 {
		return parents[0] == "predicate" && parents[1] == "plan" && parents[2] == "resourceChanges" && parents[4] == "attributes"
	}
	return len(parents) == 3 &&
		(parents[0] == "subject" && parents[2] == "digest" ||
			parents[0] == "predicate" && parents[1] == "bootstrap" && parents[2] == "versions")
}

// keyName spells an object member name in a field path, quoted when it is
// empty or holds invalid UTF-8 or control characters, so that an error
// message never carries raw control characters from a payload.
func keyName(k string) string {
	if k == "" || textProblem(k, false, len(k)) != "" {
		return strconv.Quote(k)
	}
	return k
}

// CheckDepth refuses JSON nested deeper than max, before any decoder
// recurses. It skips string contents in bulk: records are mostly strings.
func CheckDepth(b []byte, max int) error {
	_, err := scan(b, max)
	return err
}

// scan is CheckDepth that also reports whether b holds a null literal:
// outside strings, JSON has the letter n only in null.
func scan(b []byte, max int) (hasNull bool, err error) {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			// Find the closing quote: the first one after an even number
			// of backslashes.
			start := i
			for {
				j := bytes.IndexByte(b[i+1:], '"')
				if j < 0 {
					return hasNull, nil // unterminated: the decoder reports it
				}
				i += 1 + j
				k := i - 1
				for k > start && b[k] == '\\' {
					k--
				}
				if (i-1-k)%2 == 0 {
					break
				}
			}
		case '{', '[':
			depth++
			if depth > max {
				return hasNull, fmt.Errorf("JSON nested deeper than %d levels at byte %d", max, i)
			}
		case '}', ']':
			depth--
		case 'n':
			hasNull = true
		}
	}
	return hasNull, nil
}

// field names a field without building its name, which is formatted only
// when a problem is reported: validating a valid record allocates nothing.
// The name is base, then "[i]" if i >= 0, then sub, then "[j]" if j >= 0,
// then "." and key if hasKey.
type field struct {
	base, sub, key string
	i, j           int
	hasKey         bool
}

// at names a field by its whole path.
func at(path string) field { return field{base: path, i: -1, j: -1} }

// elem names sub (".name", or "" for the element itself) of element i of the
// list base.
func elem(base string, i int, sub string) field {
	return field{base: base, i: i, sub: sub, j: -1}
}

// index names element k of the list f names.
func (f field) index(k int) field {
	if f.i < 0 && f.sub == "" {
		f.i = k
	} else {
		f.j = k
	}
	return f
}

// withKey names the entry k of the map f names.
func (f field) withKey(k string) field {
	f.key, f.hasKey = k, true
	return f
}

func (f field) String() string {
	var b strings.Builder
	b.WriteString(f.base)
	if f.i >= 0 {
		b.WriteByte('[')
		b.WriteString(strconv.Itoa(f.i))
		b.WriteByte(']')
	}
	b.WriteString(f.sub)
	if f.j >= 0 {
		b.WriteByte('[')
		b.WriteString(strconv.Itoa(f.j))
		b.WriteByte(']')
	}
	if f.hasKey {
		b.WriteByte('.')
		b.WriteString(keyName(f.key))
	}
	return b.String()
}

// problems collects field errors while walking a statement.
type problems []FieldError

func (p *problems) add(f field, format string, args ...any) {
	*p = append(*p, FieldError{Field: f.String(), Reason: fmt.Sprintf(format, args...)})
}

func (p *problems) text(f field, v string, required bool, max int) {
	if reason := textProblem(v, required, max); reason != "" {
		*p = append(*p, FieldError{Field: f.String(), Reason: reason})
	}
}

// maxChangeID is the longest change id, in bytes.
const maxChangeID = 128

// CheckChangeID says what is wrong with id as a change id, or nil: the
// rule records are validated with, for routes and commands that take one.
func CheckChangeID(id string) error {
	if reason := textProblem(id, true, maxChangeID); reason != "" {
		return fmt.Errorf("change id: %s", reason)
	}
	return nil
}

// textProblem returns what is wrong with a text value, or "".
func textProblem(v string, required bool, max int) string {
	if v == "" {
		if required {
			return "required"
		}
		return ""
	}
	if len(v) > max {
		return "longer than " + strconv.Itoa(max) + " bytes"
	}
	control, ascii := false, true
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c < 0x20 || c == 0x7f:
			control = true
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	switch {
	case !ascii && !utf8.ValidString(v):
		return "not valid UTF-8"
	case control:
		// Control characters are ASCII, and a byte below utf8.RuneSelf is
		// always a whole character in UTF-8.
		return "contains control characters"
	}
	return ""
}

func (p *problems) label(f field, v string, required bool) {
	switch {
	case v == "" && required:
		p.add(f, "required")
	case v != "" && !isLabel(v):
		p.add(f, "must be 1-128 characters of letters, digits, '.', '_', '/' or '-'")
	}
}

func (p *problems) match(f field, v string, ok func(string) bool, required bool, what string) {
	switch {
	case v == "" && required:
		p.add(f, "required")
	case v != "" && !ok(v):
		p.add(f, "must be %s", what)
	}
}

func (p *problems) sha256(f field, v string, required bool) {
	p.match(f, v, isSHA256, required, "64 lowercase hex characters (SHA-256)")
}

func (p *problems) digest(f field, v string, required bool) {
	p.match(f, v, isDigest, required, `"sha256:" followed by 64 lowercase hex characters`)
}

func (p *problems) commit(f field, v string, required bool) {
	p.match(f, v, isCommit, required, "7-64 lowercase hex characters")
}

func (p *problems) oneOf(f field, v string, required bool, allowed ...string) {
	if v == "" {
		if required {
			p.add(f, "required (one of %s)", strings.Join(allowed, ", "))
		}
		return
	}
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	p.add(f, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
}

func (p *problems) time(f field, t time.Time, required bool) {
	if t.IsZero() && required {
		p.add(f, "required (RFC 3339 time)")
	}
}

func (p *problems) list(f field, vs []string, required bool, max int) {
	if len(vs) == 0 && required {
		p.add(f, "required (non-empty list)")
	}
	for i, v := range vs {
		p.text(f.index(i), v, true, max)
	}
}

// policySet checks a recorded policy set, if any. The field names are
// passed whole (constants), so a valid set allocates nothing.
func (p *problems) policySet(digestField, modulesField string, ps *PolicySet) {
	if ps == nil {
		return
	}
	p.sha256(at(digestField), ps.BundleSHA256, true)
	for i, m := range ps.Modules {
		p.text(elem(modulesField, i, ".path"), m.Path, true, 512)
		p.sha256(elem(modulesField, i, ".sha256"), m.SHA256, true)
	}
}

// MaxAttributes bounds plan.resourceChanges[].attributes.
const MaxAttributes = 64

// attributes checks a resource change's planned attribute values: names are
// labels, values text of at most 16 KiB.
func (p *problems) attributes(f field, attrs map[string]string) {
	if len(attrs) > MaxAttributes {
		p.add(f, "at most %d attributes", MaxAttributes)
	}
	if allOK(attrs, attributeOK) {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(attrs)) {
		if !isLabel(name) {
			p.add(f.withKey(name), "attribute names must be 1-128 characters of letters, digits, '.', '_', '/' or '-'")
		}
		p.text(f.withKey(name), attrs[name], false, 16384)
	}
}

func attributeOK(name, v string) bool {
	return isLabel(name) && textProblem(v, false, 16384) == ""
}

// object requires raw to be a JSON object: a trust configuration. Decode
// has checked the JSON itself; for a statement built in Go, encoding it
// checks it.
func (p *problems) object(f field, raw []byte, required bool) {
	v := bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0:
		if required {
			p.add(f, "required (a JSON object)")
		}
	case string(v) == "null":
		p.add(f, "must be a JSON object, not null")
	case len(v) < 2 || v[0] != '{' || v[len(v)-1] != '}':
		p.add(f, "must be a JSON object")
	}
}

// The value syntaxes of the schema. They are written out rather than as
// regular expressions: they run on every field of every posted record.

// objectRef checks the optional reference to the Kubernetes object a GitOps
// record was derived from.
func (p *problems) objectRef(base string, o *ObjectRef) {
	if o == nil {
		return
	}
	sub := func(s string) field { return field{base: base, sub: s, i: -1, j: -1} }
	p.text(sub(".apiVersion"), o.APIVersion, true, 256)
	p.text(sub(".kind"), o.Kind, true, 128)
	p.text(sub(".namespace"), o.Namespace, false, 253)
	p.text(sub(".name"), o.Name, true, 253)
	p.text(sub(".uid"), o.UID, false, 128)
	if o.Generation < 0 {
		p.add(sub(".generation"), "must not be negative")
	}
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// isSHA256 matches ^[0-9a-f]{64}$.
func isSHA256(s string) bool { return len(s) == 64 && isLowerHex(s) }

// isCommit matches ^[0-9a-f]{7,64}$.
func isCommit(s string) bool { return len(s) >= 7 && len(s) <= 64 && isLowerHex(s) }

// isDigest matches ^sha256:[0-9a-f]{64}$.
func isDigest(s string) bool {
	return len(s) == 71 && s[:7] == "sha256:" && isLowerHex(s[7:])
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// isName reports whether s is 1 to max bytes, starting with a letter or digit
// and going on with letters, digits and the punctuation in more.
func isName(s string, max int, more string) bool {
	if s == "" || len(s) > max || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && strings.IndexByte(more, c) < 0 {
			return false
		}
	}
	return true
}

// isLabel matches ^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$.
func isLabel(s string) bool { return isName(s, 128, "._/-") }

// isRuleID matches ^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$.
func isRuleID(s string) bool { return isName(s, 200, "._:/-") }

// isDigestAlg matches ^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$.
func isDigestAlg(s string) bool { return isName(s, 32, "_-") }

// isVersionName reports whether s names a component in bootstrap.versions:
// 1-128 bytes of UTF-8 without control characters.
func isVersionName(s string) bool {
	return s != "" && textProblem(s, true, 128) == ""
}

func subjectDigestOK(alg, d string) bool {
	return isDigestAlg(alg) && d != "" && len(d) <= 256
}

func versionOK(name, v string) bool {
	return isVersionName(name) && textProblem(v, false, 256) == ""
}

// allOK reports whether ok holds for every entry of m. Maps are checked in
// any order and, only when something is wrong, walked again in sorted key
// order to report the problems in a deterministic order.
func allOK(m map[string]string, ok func(k, v string) bool) bool {
	for k, v := range m {
		if !ok(k, v) {
			return false
		}
	}
	return true
}

// Validate checks a statement against the transition schema and returns a
// *ValidationError naming every invalid field, or nil.
func (s *Statement) Validate() error {
	var p problems
	if s.Type != StatementType {
		p.add(at("_type"), "must be %q", StatementType)
	}
	if s.PredicateType != PredicateType {
		p.add(at("predicateType"), "must be %q", PredicateType)
	}
	if len(s.Subject) == 0 {
		p.add(at("subject"), "required (at least one artifact with a digest)")
	}
	for i, sub := range s.Subject {
		p.text(elem("subject", i, ".name"), sub.Name, false, 1024)
		digest := elem("subject", i, ".digest")
		if len(sub.Digest) == 0 {
			p.add(digest, "required (at least one algorithm)")
			continue
		}
		if allOK(sub.Digest, subjectDigestOK) {
			continue
		}
		for _, alg := range slices.Sorted(maps.Keys(sub.Digest)) {
			if !subjectDigestOK(alg, sub.Digest[alg]) {
				p.add(digest.withKey(alg), "must map an algorithm name (such as sha256 or gitCommit) to a non-empty digest")
			}
		}
	}
	s.Predicate.validate(&p)
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

func (t *Transition) validate(p *problems) {
	const f = "predicate."
	block, known := t.Kind.Block()
	if !known {
		if t.Kind == "" {
			p.add(at(f+"kind"), "required")
		} else {
			p.add(at(f+"kind"), "unknown kind %q", t.Kind)
		}
	}
	p.text(at(f+"changeId"), t.ChangeID, true, maxChangeID)
	p.time(at(f+"occurredAt"), t.OccurredAt, true)
	p.text(at(f+"actor"), t.Actor, true, 256)

	src := t.Source
	p.text(at(f+"source.repository"), src.Repository, known && t.Kind.needsSource(), 512)
	p.commit(at(f+"source.commitSha"), src.CommitSHA, known && t.Kind.needsSource())
	p.text(at(f+"source.branch"), src.Branch, false, 256)
	if src.PullRequest < 0 {
		p.add(at(f+"source.pullRequest"), "must not be negative")
	}

	tg := t.Target
	p.label(at(f+"target.environment"), tg.Environment, known && !t.Kind.LogWide())
	for _, l := range [...]struct{ name, v string }{
		{f + "target.cloud", tg.Cloud}, {f + "target.account", tg.Account}, {f + "target.region", tg.Region},
		{f + "target.stack", tg.Stack}, {f + "target.cluster", tg.Cluster}, {f + "target.namespace", tg.Namespace},
		{f + "target.application", tg.Application}, {f + "target.service", tg.Service},
		{f + "target.dataClass", tg.DataClass},
	} {
		p.label(at(l.name), l.v, false)
	}
	p.oneOf(at(f+"riskClass"), t.RiskClass, false, "low", "medium", "high", "critical")
	p.text(at(f+"logOrigin"), t.LogOrigin, false, 256)
	for i, a := range t.Artifacts {
		p.text(elem(f+"artifacts", i, ".name"), a.Name, true, 256)
		p.digest(elem(f+"artifacts", i, ".digest"), a.Digest, true)
		p.text(elem(f+"artifacts", i, ".uri"), a.URI, false, 2048)
		p.text(elem(f+"artifacts", i, ".mediaType"), a.MediaType, false, 256)
	}
	t.validateBlocks(p, block)
}

// validateBlocks requires exactly the block that belongs to the kind, and
// checks it.
func (t *Transition) validateBlocks(p *problems, want string) {
	const f = "predicate."
	found := false
	for _, b := range [...]struct {
		name    string
		present bool
	}{
		{"change", t.Change != nil}, {"plan", t.Plan != nil}, {"policy", t.Policy != nil},
		{"approval", t.Approval != nil}, {"gate", t.Gate != nil}, {"apply", t.Apply != nil},
		{"verification", t.Verification != nil}, {"sync", t.Sync != nil}, {"health", t.Health != nil},
		{"drift", t.Drift != nil}, {"rollout", t.Rollout != nil},
		{"artifactAdmission", t.ArtifactAdmission != nil}, {"exception", t.Exception != nil},
		{"breakglass", t.Breakglass != nil}, {"lock", t.Lock != nil}, {"trust", t.Trust != nil},
		{"bootstrap", t.Bootstrap != nil}, {"anchor", t.Anchor != nil},
	} {
		switch {
		case b.present && b.name == want:
			found = true
		case b.present && want != "":
			p.add(at(f+b.name), "not allowed on a %s record (it carries %q)", t.Kind, want)
		}
	}
	if want != "" && !found {
		p.add(at(f+want), "required for kind %s", t.Kind)
		return
	}
	t.validateBlock(p, want)
}

// validateBlock checks the fields of the block named block, which is
// present. The checks are called directly rather than from a table of
// functions: p escapes through an indirect call, and validating a valid
// record would allocate.
func (t *Transition) validateBlock(p *problems, block string) {
	switch block {
	case "change":
		validateChange(p, t.Change)
	case "plan":
		validatePlan(p, t.Plan)
	case "policy":
		validatePolicy(p, t.Policy)
	case "approval":
		validateApproval(p, t.Kind, t.Approval)
	case "gate":
		validateGate(p, t.Gate)
	case "apply":
		validateApply(p, t.Kind, t.Apply)
	case "verification":
		validateVerification(p, t.Verification)
	case "sync":
		validateSync(p, t.Sync)
	case "health":
		validateHealth(p, t.Health)
	case "drift":
		validateDrift(p, t.Kind, t.Drift)
	case "rollout":
		validateRollout(p, t.Kind, t.Rollout)
	case "artifactAdmission":
		validateArtifactAdmission(p, t.ArtifactAdmission)
	case "exception":
		validateException(p, t.Kind, t.Exception)
	case "breakglass":
		validateBreakglass(p, t.Kind, t.Breakglass)
	case "lock":
		validateLock(p, t.Lock)
	case "trust":
		validateTrust(p, t.Trust)
	case "anchor":
		validateAnchor(p, t.Anchor)
	case "bootstrap":
		validateBootstrap(p, t.Bootstrap)
	}
}

func validateChange(p *problems, c *Change) {
	const f = "predicate.change."
	p.text(at(f+"author"), c.Author, true, 256)
	p.text(at(f+"title"), c.Title, false, 1024)
	p.text(at(f+"targetBranch"), c.TargetBranch, false, 256)
	p.oneOf(at(f+"mutationType"), c.MutationType, false, "create", "update", "delete", "replace", "mixed")
	p.list(at(f+"requiresApprovalFrom"), c.RequiresApprovalFrom, false, 128)
	p.list(at(f+"evidenceRequired"), c.EvidenceRequired, false, 128)
}

func validatePlan(p *problems, pl *Plan) {
	const f = "predicate.plan."
	p.sha256(at(f+"planSha256"), pl.PlanSHA256, true)
	p.oneOf(at(f+"engine"), pl.Engine, false, "opentofu", "terraform")
	p.text(at(f+"engineVersion"), pl.EngineVersion, false, 64)
	p.text(at(f+"stack"), pl.Stack, false, 512)
	a := pl.Actions
	if a.Create < 0 || a.Update < 0 || a.Delete < 0 || a.Replace < 0 {
		p.add(at(f+"actions"), "counts must not be negative")
	}
	p.list(at(f+"highRiskResources"), pl.HighRiskResources, false, 512)
	p.list(at(f+"replacement"), pl.Replacement, false, 512)
	p.list(at(f+"sensitiveChanges"), pl.SensitiveChanges, false, 512)
	const rcs = f + "resourceChanges"
	for i, rc := range pl.ResourceChanges {
		p.text(elem(rcs, i, ".address"), rc.Address, true, 512)
		p.text(elem(rcs, i, ".type"), rc.Type, true, 256)
		actions := elem(rcs, i, ".actions")
		if len(rc.Actions) == 0 {
			p.add(actions, "required (non-empty list)")
		}
		for j, act := range rc.Actions {
			p.oneOf(actions.index(j), act, true, "no-op", "create", "read", "update", "delete")
		}
		p.attributes(elem(rcs, i, ".attributes"), rc.Attributes)
	}
}

func validatePolicy(p *problems, po *Policy) {
	const f = "predicate.policy."
	p.oneOf(at(f+"result"), po.Result, true, "allow", "deny", "warn")
	p.sha256(at(f+"bundleSha256"), po.BundleSHA256, false)
	const ds = f + "decisions"
	for i, d := range po.Decisions {
		p.oneOf(elem(ds, i, ".result"), d.Result, true, "allow", "deny", "warn")
		p.oneOf(elem(ds, i, ".severity"), d.Severity, false, "info", "low", "medium", "high", "critical")
		p.match(elem(ds, i, ".ruleId"), d.RuleID, isRuleID, true, "a rule identifier such as iac.prod.database.replacement")
		p.text(elem(ds, i, ".message"), d.Message, false, 2048)
		p.list(elem(ds, i, ".requiredApprovers"), d.RequiredApprovers, false, 128)
		p.list(elem(ds, i, ".evidence"), d.Evidence, false, 512)
		p.text(elem(ds, i, ".exceptionId"), d.ExceptionID, false, 128)
	}
}

func validateApproval(p *problems, kind Kind, ap *Approval) {
	const f = "predicate.approval."
	if ap.PullRequest < 0 {
		p.add(at(f+"pullRequest"), "must not be negative")
	}
	p.commit(at(f+"commitSha"), ap.CommitSHA, true)
	p.sha256(at(f+"planSha256"), ap.PlanSHA256, true)
	p.sha256(at(f+"policyDecisionSha256"), ap.PolicyDecisionSHA256, false)
	p.text(at(f+"approver"), ap.Approver, true, 256)
	p.list(at(f+"groups"), ap.Groups, false, 128)
	p.time(at(f+"approvedAt"), ap.ApprovedAt, true)
	if kind == KindApprovalGranted {
		p.time(at(f+"expiresAt"), ap.ExpiresAt, true)
		if !ap.ExpiresAt.IsZero() && !ap.ExpiresAt.After(ap.ApprovedAt) {
			p.add(at(f+"expiresAt"), "must be after approvedAt")
		}
	}
	p.text(at(f+"reason"), ap.Reason, kind == KindApprovalRevoked, 2048)
}

func validateGate(p *problems, g *Gate) {
	const f = "predicate.gate."
	p.oneOf(at(f+"decision"), g.Decision, true, "allow", "deny")
	p.sha256(at(f+"planSha256"), g.PlanSHA256, false)
	p.list(at(f+"reasons"), g.Reasons, false, 1024)
}

func validateApply(p *problems, kind Kind, ap *Apply) {
	const f = "predicate.apply."
	p.sha256(at(f+"planSha256"), ap.PlanSHA256, true)
	p.oneOf(at(f+"engine"), ap.Engine, false, "opentofu", "terraform")
	p.list(at(f+"resourcesChanged"), ap.ResourcesChanged, false, 512)
	p.list(at(f+"resourcesFailed"), ap.ResourcesFailed, false, 512)
	p.text(at(f+"error"), ap.Error, kind == KindApplyFailed, 4096)
	p.sha256(at(f+"logSha256"), ap.LogSHA256, false)
}

func validateVerification(p *problems, v *Verification) {
	const f = "predicate.verification."
	p.oneOf(at(f+"result"), v.Result, true, "pass", "fail", "drift")
	p.text(at(f+"method"), v.Method, false, 256)
	p.list(at(f+"checks"), v.Checks, false, 1024)
}

func validateSync(p *problems, s *Sync) {
	const f = "predicate.sync."
	p.text(at(f+"revision"), s.Revision, true, 256)
	p.text(at(f+"application"), s.Application, false, 256)
	p.text(at(f+"sourceRepo"), s.SourceRepo, false, 512)
	p.text(at(f+"sourcePath"), s.SourcePath, false, 512)
	p.text(at(f+"initiatedBy"), s.InitiatedBy, false, 256)
	p.text(at(f+"message"), s.Message, false, 4096)
	p.text(at(f+"operation"), s.Operation, false, 128)
	const rs = f + "resources"
	for i, o := range s.Resources {
		p.text(elem(rs, i, ".group"), o.Group, false, 253)
		p.text(elem(rs, i, ".kind"), o.Kind, true, 128)
		p.text(elem(rs, i, ".namespace"), o.Namespace, false, 253)
		p.text(elem(rs, i, ".name"), o.Name, true, 253)
		p.text(elem(rs, i, ".status"), o.Status, false, 128)
	}
	p.list(at(f+"pruned"), s.Pruned, false, 512)
	const ids = f + "ignoreDifferences"
	for i, ig := range s.Ignored {
		p.text(elem(ids, i, ".group"), ig.Group, false, 253)
		p.text(elem(ids, i, ".kind"), ig.Kind, true, 128)
		p.list(elem(ids, i, ".jsonPointers"), ig.JSONPointers, false, 512)
	}
	p.text(at(f+"controller"), s.Controller, false, 256)
	if b := s.Boundary; b != nil {
		p.text(at(f+"boundary.project"), b.Project, false, 253)
		p.text(at(f+"boundary.serviceAccount"), b.ServiceAccount, false, 253)
		p.list(at(f+"boundary.sourceRepos"), b.SourceRepos, false, 512)
		p.list(at(f+"boundary.destinations"), b.Destinations, false, 512)
		p.list(at(f+"boundary.clusterResources"), b.ClusterResources, false, 256)
	}
	p.objectRef(f+"object", s.Object)
}

func validateHealth(p *problems, h *Health) {
	const f = "predicate.health."
	p.oneOf(at(f+"status"), h.Status, true, "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")
	p.text(at(f+"message"), h.Message, false, 4096)
	p.objectRef(f+"object", h.Object)
}

func validateDrift(p *problems, kind Kind, d *Drift) {
	const f = "predicate.drift."
	p.list(at(f+"resources"), d.Resources, true, 512)
	p.text(at(f+"detectedBy"), d.DetectedBy, false, 256)
	p.oneOf(at(f+"method"), d.Method, kind == KindDriftReconciled, "revert", "import", "accept")
	p.text(at(f+"summary"), d.Summary, false, 4096)
	p.text(at(f+"revision"), d.Revision, false, 256)
	p.objectRef(f+"object", d.Object)
}

func validateRollout(p *problems, kind Kind, r *Rollout) {
	const f = "predicate.rollout."
	p.text(at(f+"revision"), r.Revision, true, 256)
	p.text(at(f+"strategy"), r.Strategy, false, 64)
	p.digest(at(f+"imageDigest"), r.ImageDigest, false)
	const as = f + "analysis"
	for i, a := range r.Analysis {
		p.text(elem(as, i, ".template"), a.Template, false, 256)
		p.text(elem(as, i, ".metric"), a.Metric, true, 256)
		p.text(elem(as, i, ".query"), a.Query, false, 4096)
		p.oneOf(elem(as, i, ".result"), a.Result, true, "successful", "failed", "inconclusive", "error")
		p.text(elem(as, i, ".value"), a.Value, false, 1024)
	}
	p.text(at(f+"abortReason"), r.AbortReason, kind == KindRolloutAborted, 4096)
	p.text(at(f+"serviceVersion"), r.ServiceVersion, false, 1024)
	p.text(at(f+"analysisRun"), r.AnalysisRun, false, 253)
	p.objectRef(f+"object", r.Object)
}

func validateArtifactAdmission(p *problems, a *ArtifactAdmission) {
	const f = "predicate.artifactAdmission."
	p.text(at(f+"image"), a.Image, true, 1024)
	p.digest(at(f+"digest"), a.Digest, true)
	p.text(at(f+"signerIdentity"), a.SignerIdentity, false, 512)
	p.text(at(f+"sourceBranch"), a.SourceBranch, false, 256)
	p.digest(at(f+"sbomDigest"), a.SBOMDigest, false)
	p.text(at(f+"provenance"), a.Provenance, false, 1024)
	p.oneOf(at(f+"result"), a.Result, true, "admitted", "denied")
	p.object(at(f+"signatureBundle"), a.SignatureBundle, false)
	p.object(at(f+"provenanceBundle"), a.ProvenanceBundle, false)
}

func validateException(p *problems, kind Kind, e *Exception) {
	const f = "predicate.exception."
	granted := kind == KindExceptionGranted
	p.text(at(f+"id"), e.ID, true, 128)
	p.match(at(f+"ruleId"), e.RuleID, isRuleID, granted, "a rule identifier")
	p.text(at(f+"scope"), e.Scope, granted, 1024)
	p.text(at(f+"justification"), e.Justification, granted, 4096)
	p.text(at(f+"owner"), e.Owner, granted, 256)
	p.list(at(f+"approvedBy"), e.ApprovedBy, granted, 256)
	p.list(at(f+"compensatingControls"), e.CompensatingControls, false, 1024)
	p.time(at(f+"expiresAt"), e.ExpiresAt, granted)
}

func validateBreakglass(p *problems, kind Kind, b *Breakglass) {
	const f = "predicate.breakglass."
	p.text(at(f+"incident"), b.Incident, true, 128)
	p.text(at(f+"reason"), b.Reason, kind == KindBreakglassOpened, 4096)
	p.list(at(f+"approvedBy"), b.ApprovedBy, false, 256)
	p.text(at(f+"reviewedBy"), b.ReviewedBy, false, 256)
}

func validateLock(p *problems, l *Lock) {
	const f = "predicate.lock."
	p.text(at(f+"incident"), l.Incident, true, 128)
	p.text(at(f+"lockId"), l.LockID, true, 256)
	p.text(at(f+"heldBy"), l.HeldBy, false, 256)
}

func validateTrust(p *problems, tr *Trust) {
	const f = "predicate.trust."
	p.sha256(at(f+"digest"), tr.Digest, true)
	p.text(at(f+"description"), tr.Description, false, 4096)
	// A log key rotation changes no trust: it names the configuration in
	// force by its digest only, so the rotation proofs anyone may fetch
	// (GET /v1/log-keys) reveal nothing of it.
	p.object(at(f+"config"), tr.Config, tr.LogKey == "")
	p.policySet(f+"policies.bundleSha256", f+"policies.modules", tr.Policies)
	p.text(at(f+"logKey"), tr.LogKey, false, 512)
}

func validateBootstrap(p *problems, b *Bootstrap) {
	const f = "predicate.bootstrap."
	p.text(at(f+"operator"), b.Operator, true, 256)
	p.text(at(f+"logOrigin"), b.LogOrigin, true, 256)
	p.text(at(f+"logKey"), b.LogKey, true, 512)
	p.sha256(at(f+"trustDigest"), b.TrustDigest, true)
	p.object(at(f+"trust"), b.Trust, true)
	p.policySet(f+"policies.bundleSha256", f+"policies.modules", b.Policies)
	if !allOK(b.Versions, versionOK) {
		versions := at(f + "versions")
		for _, name := range slices.Sorted(maps.Keys(b.Versions)) {
			if !isVersionName(name) {
				p.add(versions.withKey(name), "component names must be 1-128 bytes of UTF-8 without control characters")
			}
			p.text(versions.withKey(name), b.Versions[name], false, 256)
		}
	}
}

// validateAnchor checks the shape of an anchor; whether Rekor's signatures
// and proof hold is the verifier's job.
func validateAnchor(p *problems, a *Anchor) {
	const f = "predicate.anchor."
	if a.CheckpointSize == 0 {
		p.add(at(f+"checkpointSize"), "required (the size of a checkpoint of at least one entry)")
	}
	p.sha256(at(f+"rootHash"), a.RootHash, true)
	p.text(at(f+"rekor"), a.Rekor, false, 2048)
	if a.LogIndex < 0 {
		p.add(at(f+"logIndex"), "must not be negative")
	}
	switch a.Version {
	case 0, 1:
		validateAnchorV1(p, a)
	case 2:
		validateAnchorV2(p, a)
	default:
		p.add(at(f+"version"), "must be 2 (Rekor v2), or 1 or left out (Rekor v1)")
	}
}

// validateAnchorV1 checks the fields of Rekor v1's answer.
func validateAnchorV1(p *problems, a *Anchor) {
	const f = "predicate.anchor."
	p.sha256(at(f+"logId"), a.LogID, true)
	if a.IntegratedTime <= 0 {
		p.add(at(f+"integratedTime"), "required (Unix seconds)")
	}
	p.match(at(f+"body"), a.Body, isBase64(65536), true, "standard base64 of at most 65536 characters")
	p.match(at(f+"signedEntryTimestamp"), a.SignedEntryTimestamp, isBase64(1024), true, "standard base64 of at most 1024 characters")
	if len(a.TransparencyLogEntry) > 0 {
		p.add(at(f+"transparencyLogEntry"), "only in a Rekor v2 anchor (version 2)")
	}
	ip := a.InclusionProof
	const fp = f + "inclusionProof."
	if ip == nil {
		p.add(at(f+"inclusionProof"), "required (Rekor's inclusion proof)")
		return
	}
	if ip.LogIndex < 0 {
		p.add(at(fp+"logIndex"), "must not be negative")
	}
	if ip.TreeSize <= ip.LogIndex {
		p.add(at(fp+"treeSize"), "must be greater than logIndex")
	}
	p.sha256(at(fp+"rootHash"), ip.RootHash, true)
	if len(ip.Hashes) > 64 {
		p.add(at(fp+"hashes"), "at most 64 hashes (a tree of 2^64 entries)")
	}
	for i, h := range ip.Hashes {
		p.sha256(at(fp+"hashes").index(i), h, true)
	}
	if reason := noteProblem(ip.Checkpoint, 4096); reason != "" {
		p.add(at(fp+"checkpoint"), "%s", reason)
	}
}

// maxTransparencyLogEntry bounds a Rekor v2 answer: the entry (a public
// key, a digest and a signature), a 64-hash proof and Rekor's checkpoint
// with room for witness cosignatures take well under 16 KiB.
const maxTransparencyLogEntry = 65536

// validateAnchorV2 checks a Rekor v2 anchor: Rekor's answer is one JSON
// object, and the fields only Rekor v1 answers with are empty.
func validateAnchorV2(p *problems, a *Anchor) {
	const f = "predicate.anchor."
	for _, v1 := range []struct {
		name string
		set  bool
	}{
		{"logId", a.LogID != ""}, {"integratedTime", a.IntegratedTime != 0}, {"body", a.Body != ""},
		{"signedEntryTimestamp", a.SignedEntryTimestamp != ""}, {"inclusionProof", a.InclusionProof != nil},
	} {
		if v1.set {
			p.add(at(f+v1.name), "only in a Rekor v1 anchor (Rekor v2's answer is transparencyLogEntry)")
		}
	}
	p.object(at(f+"transparencyLogEntry"), a.TransparencyLogEntry, true)
	if len(a.TransparencyLogEntry) > maxTransparencyLogEntry {
		p.add(at(f+"transparencyLogEntry"), "longer than %d bytes", maxTransparencyLogEntry)
	}
}

// isBase64 returns a matcher of ^[A-Za-z0-9+/]*={0,2}$ of at most max
// characters, a whole number of 4-character groups.
func isBase64(max int) func(string) bool {
	return func(s string) bool {
		if len(s) > max || len(s)%4 != 0 {
			return false
		}
		t := strings.TrimSuffix(strings.TrimSuffix(s, "="), "=")
		for i := 0; i < len(t); i++ {
			if c := t[i]; !isAlnum(c) && c != '+' && c != '/' {
				return false
			}
		}
		return true
	}
}

// noteProblem returns what is wrong with a signed note's text (lines ending
// in newlines, as C2SP signed-note writes them), or "".
func noteProblem(v string, max int) string {
	switch {
	case v == "":
		return "required (a signed note)"
	case len(v) > max:
		return "longer than " + strconv.Itoa(max) + " bytes"
	case !utf8.ValidString(v):
		return "not valid UTF-8"
	case !strings.HasSuffix(v, "\n"):
		return "must end with a newline"
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c != '\n' && (c < 0x20 || c == 0x7f) {
			return "contains control characters other than newlines"
		}
	}
	return ""
}
