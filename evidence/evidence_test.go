package evidence_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"

	"evident.dev/evident/evidence"
)

const (
	examplesDir = "testdata/kinds"
	schemaFile  = "schema/transition.v1.schema.json"
	docsFile    = "../docs/kinds.md"
)

// compiledSchema is the JSON Schema compiled once per test binary, with
// format assertions on (draft 2020-12 treats format as an annotation otherwise).
var compiledSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	abs, err := filepath.Abs(schemaFile)
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	return c.Compile(abs)
})

func loadSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	sch, err := compiledSchema()
	if err != nil {
		t.Fatalf("compile %s: %v", schemaFile, err)
	}
	return sch
}

// schemaValidate validates a JSON document against the schema. It returns an
// error for JSON the schema's parser cannot read, and a
// *jsonschema.ValidationError for an invalid document.
func schemaValidate(t testing.TB, doc []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return loadSchema(t).Validate(inst)
}

// schemaFields lists the fields a schema validation error points at, spelled
// as evidence.FieldError spells them: "predicate.plan.resourceChanges[0].type".
// A missing or unknown property is named as a field of its parent.
func schemaFields(err error) []string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return nil
	}
	var out []string
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		loc := fieldPath(e.InstanceLocation)
		switch k := e.ErrorKind.(type) {
		case *kind.Required:
			for _, m := range k.Missing {
				out = append(out, joinField(loc, m))
			}
		case *kind.AdditionalProperties:
			for _, p := range k.Properties {
				out = append(out, joinField(loc, p))
			}
		default:
			out = append(out, loc)
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return out
}

func fieldPath(tokens []string) string {
	var b strings.Builder
	for _, tok := range tokens {
		if _, err := strconv.Atoi(tok); err == nil {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

// sameField reports whether a field the schema points at is the field Go
// names, or its parent or child: the schema says "source is required" where
// Go says "source.repository is required", and "actions.delete is below its
// minimum" where Go says "actions: counts must not be negative". The
// statement and the predicate as a whole are too coarse to count.
func sameField(goField, schemaField string) bool {
	short, long := goField, schemaField
	if len(short) > len(long) {
		short, long = long, short
	}
	if short == long {
		return true
	}
	if short == "" || short == "predicate" || !strings.HasPrefix(long, short) {
		return false
	}
	return long[len(short)] == '.' || long[len(short)] == '['
}

func joinField(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func readExample(t testing.TB, k evidence.Kind) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(examplesDir, string(k)+".json"))
	if err != nil {
		t.Fatalf("example of %s: %v", k, err)
	}
	return b
}

func decodeExample(t testing.TB, k evidence.Kind) *evidence.Statement {
	t.Helper()
	st, err := evidence.Decode(readExample(t, k))
	if err != nil {
		t.Fatalf("example of %s does not decode: %v", k, err)
	}
	return st
}

// TestExamples checks that every kind has an example in testdata/kinds, that
// each one decodes, validates against the JSON Schema, and is in the form
// encoding/json writes (struct field order, no empty optional fields).
func TestExamples(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range evidence.Kinds() {
		seen[string(k)+".json"] = true
		t.Run(string(k), func(t *testing.T) {
			raw := readExample(t, k)
			st, err := evidence.Decode(raw)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if st.Predicate.Kind != k {
				t.Errorf("kind = %q, want %q", st.Predicate.Kind, k)
			}
			if err := schemaValidate(t, raw); err != nil {
				t.Errorf("schema: %v", err)
			}
			canonical, err := json.MarshalIndent(st, "", "  ")
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			if got := bytes.TrimSpace(raw); !bytes.Equal(got, canonical) {
				t.Errorf("example is not in canonical form; json.MarshalIndent gives:\n%s", canonical)
			}
		})
	}
	entries, err := os.ReadDir(examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !seen[e.Name()] {
			t.Errorf("%s/%s is not the example of any kind", examplesDir, e.Name())
		}
	}
}

// TestExamplesTellOneStory checks the bindings between the examples of the
// running change: what was approved is what the gate allowed and what was
// applied, and the trust digests are digests of the trust configurations.
func TestExamplesTellOneStory(t *testing.T) {
	plan := decodeExample(t, evidence.KindPlanCreated).Predicate
	policy := decodeExample(t, evidence.KindPolicyEvaluated).Predicate
	approval := decodeExample(t, evidence.KindApprovalGranted).Predicate
	if a := approval.Approval; a.PlanSHA256 != plan.Plan.PlanSHA256 || a.CommitSHA != plan.Source.CommitSHA || a.PullRequest != plan.Source.PullRequest {
		t.Errorf("approval.granted is not bound to the plan.created example's plan, commit and PR")
	}
	if a := approval.Approval; a.Approver == decodeExample(t, evidence.KindChangeOpened).Predicate.Change.Author {
		t.Errorf("the approver of the example is the author")
	}
	if len(policy.Artifacts) == 0 || policy.Artifacts[0].Digest != "sha256:"+approval.Approval.PolicyDecisionSHA256 {
		t.Errorf("approval.granted's policyDecisionSha256 is not the policy.evaluated example's decision artifact")
	}
	if g := decodeExample(t, evidence.KindGateDecided).Predicate; g.Gate.PlanSHA256 != plan.Plan.PlanSHA256 {
		t.Errorf("gate.decided is not about the example plan")
	}
	for _, k := range []evidence.Kind{evidence.KindApplyStarted, evidence.KindApplyCompleted, evidence.KindApplyFailed} {
		p := decodeExample(t, k).Predicate
		if p.Apply.PlanSHA256 != plan.Plan.PlanSHA256 || p.Source.CommitSHA != plan.Source.CommitSHA {
			t.Errorf("%s does not apply the example plan at the example commit", k)
		}
	}
	checkTrust := func(k evidence.Kind, digest string, config json.RawMessage, subjects []evidence.Subject) {
		var compact bytes.Buffer
		if err := json.Compact(&compact, config); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		sum := sha256.Sum256(compact.Bytes())
		if got := hex.EncodeToString(sum[:]); got != digest {
			t.Errorf("%s: digest %s, but the compact trust configuration hashes to %s", k, digest, got)
		}
		if len(subjects) != 1 || subjects[0].Digest["sha256"] != digest {
			t.Errorf("%s: the subject is not the trust configuration", k)
		}
	}
	bs := decodeExample(t, evidence.KindBootstrap)
	checkTrust(evidence.KindBootstrap, bs.Predicate.Bootstrap.TrustDigest, bs.Predicate.Bootstrap.Trust, bs.Subject)
	tu := decodeExample(t, evidence.KindTrustUpdated)
	checkTrust(evidence.KindTrustUpdated, tu.Predicate.Trust.Digest, tu.Predicate.Trust.Config, tu.Subject)
}

var fenceRe = regexp.MustCompile("(?s)```json\n(.*?)```")

// TestDocsShowExamples keeps docs/kinds.md and the examples from drifting:
// every example must appear in the page as a ```json block (compared after
// compacting), under a heading naming its kind.
func TestDocsShowExamples(t *testing.T) {
	doc, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]bool{}
	for _, m := range fenceRe.FindAllSubmatch(doc, -1) {
		var b bytes.Buffer
		if json.Compact(&b, m[1]) == nil {
			blocks[b.String()] = true
		}
	}
	for _, k := range evidence.Kinds() {
		if !bytes.Contains(doc, []byte("\n### `"+string(k)+"`\n")) {
			t.Errorf("%s has no section \"### `%s`\"", docsFile, k)
		}
		var b bytes.Buffer
		if err := json.Compact(&b, readExample(t, k)); err != nil {
			t.Fatal(err)
		}
		if !blocks[b.String()] {
			t.Errorf("%s does not show %s/%s.json verbatim in a ```json block", docsFile, examplesDir, k)
		}
	}
}

// doc is a statement as generic JSON, to mutate in tests.
type doc = map[string]any

func exampleDoc(t testing.TB, k evidence.Kind) doc {
	t.Helper()
	return docOf(t, readExample(t, k))
}

func docOf(t testing.TB, b []byte) doc {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var d doc
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

// walkTo returns the container holding the last element of a dotted path
// ("predicate.plan.resourceChanges.0.actions") and that element's key.
func walkTo(t testing.TB, d doc, path string) (any, string) {
	t.Helper()
	toks := strings.Split(path, ".")
	var cur any = d
	for _, tok := range toks[:len(toks)-1] {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i >= len(c) {
				t.Fatalf("bad path %s", path)
			}
			cur = c[i]
		default:
			t.Fatalf("bad path %s", path)
		}
	}
	return cur, toks[len(toks)-1]
}

func set(path string, v any) func(testing.TB, doc) {
	return func(t testing.TB, d doc) {
		t.Helper()
		switch c, key := walkTo(t, d, path); c := c.(type) {
		case map[string]any:
			c[key] = v
		case []any:
			i, _ := strconv.Atoi(key)
			c[i] = v
		default:
			t.Fatalf("bad path %s", path)
		}
	}
}

func del(path string) func(testing.TB, doc) {
	return func(t testing.TB, d doc) {
		t.Helper()
		c, key := walkTo(t, d, path)
		m, ok := c.(map[string]any)
		if !ok {
			t.Fatalf("bad path %s", path)
		}
		delete(m, key)
	}
}

func all(muts ...func(testing.TB, doc)) func(testing.TB, doc) {
	return func(t testing.TB, d doc) {
		for _, m := range muts {
			m(t, d)
		}
	}
}

func nested(n int) any {
	var v any = "deep"
	for range n {
		v = []any{v}
	}
	return v
}

// schemaVerdict says what the JSON Schema makes of a record Decode refuses.
type schemaVerdict int

const (
	schemaRejects    schemaVerdict = iota // the schema expresses the rule
	schemaCannotTell                      // a rule JSON Schema cannot express: the schema accepts
	notJSON                               // not a JSON document at all
)

type invalidCase struct {
	name    string
	kind    evidence.Kind // the example to start from
	example string        // a file under testdata to start from instead
	mut     func(testing.TB, doc)
	raw     func([]byte) []byte // a byte-level mutation instead of mut

	// A malformed payload's error wraps ErrMalformed and mentions the words
	// in mentions; an invalid one's is a *ValidationError whose problems name
	// exactly fields, in order.
	malformed bool
	mentions  []string
	fields    []string
	schema    schemaVerdict
}

func (c invalidCase) payload(t testing.TB) []byte {
	t.Helper()
	var base []byte
	if c.example == "" {
		base = readExample(t, c.kind)
	} else {
		var err error
		if base, err = os.ReadFile(filepath.Join("testdata", c.example)); err != nil {
			t.Fatal(err)
		}
	}
	if c.raw != nil {
		return c.raw(base)
	}
	d := docOf(t, base)
	c.mut(t, d)
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var invalidCases = []invalidCase{
	{name: "unknown kind", kind: evidence.KindApprovalGranted, mut: set("predicate.kind", "approval.given"),
		fields: []string{"predicate.kind"}},
	{name: "missing kind", kind: evidence.KindApprovalGranted, mut: del("predicate.kind"),
		fields: []string{"predicate.kind"}},
	{name: "missing changeId", kind: evidence.KindPlanCreated, mut: del("predicate.changeId"),
		fields: []string{"predicate.changeId"}},
	{name: "empty changeId", kind: evidence.KindPlanCreated, mut: set("predicate.changeId", ""),
		fields: []string{"predicate.changeId"}},
	{name: "logOrigin with a newline", kind: evidence.KindPlanCreated, mut: set("predicate.logOrigin", "a.example/log\nb.example/log"),
		fields: []string{"predicate.logOrigin"}},
	{name: "logOrigin too long", kind: evidence.KindPlanCreated, mut: set("predicate.logOrigin", strings.Repeat("o", 257)),
		fields: []string{"predicate.logOrigin"}},
	{name: "missing occurredAt", kind: evidence.KindGateDecided, mut: del("predicate.occurredAt"),
		fields: []string{"predicate.occurredAt"}},
	{name: "bad planSha256: upper case", kind: evidence.KindPlanCreated,
		mut:    set("predicate.plan.planSha256", "9E4AE5643818E741D99A703DEFA2646920C1A300753AC914E144E98730FB50A1"),
		fields: []string{"predicate.plan.planSha256"}},
	{name: "bad planSha256: short", kind: evidence.KindApplyCompleted,
		mut:    set("predicate.apply.planSha256", "9e4ae5643818e741d99a703defa2646920c1a300753ac914e144e98730fb50a"),
		fields: []string{"predicate.apply.planSha256"}},
	{name: "bad approval planSha256", kind: evidence.KindApprovalGranted, mut: set("predicate.approval.planSha256", "9e4a..."),
		fields: []string{"predicate.approval.planSha256"}},
	{name: "bad commitSha", kind: evidence.KindApprovalGranted, mut: set("predicate.approval.commitSha", "8fb2d7"),
		fields: []string{"predicate.approval.commitSha"}},
	{name: "approval expiresAt before approvedAt", kind: evidence.KindApprovalGranted,
		mut:    set("predicate.approval.expiresAt", "2026-07-03T09:19:39Z"),
		fields: []string{"predicate.approval.expiresAt"}, schema: schemaCannotTell},
	{name: "approval expiresAt equal to approvedAt", kind: evidence.KindApprovalGranted,
		mut:    set("predicate.approval.expiresAt", "2026-07-03T11:19:40+02:00"),
		fields: []string{"predicate.approval.expiresAt"}, schema: schemaCannotTell},
	{name: "approval.granted without expiresAt", kind: evidence.KindApprovalGranted, mut: del("predicate.approval.expiresAt"),
		fields: []string{"predicate.approval.expiresAt"}},
	{name: "approval.revoked without reason", kind: evidence.KindApprovalRevoked, mut: del("predicate.approval.reason"),
		fields: []string{"predicate.approval.reason"}},
	{name: "wrong _type", kind: evidence.KindGateDecided, mut: set("_type", "https://in-toto.io/Statement/v0.1"),
		fields: []string{"_type"}},
	{name: "missing _type", kind: evidence.KindGateDecided, mut: del("_type"),
		fields: []string{"_type"}},
	{name: "wrong predicateType", kind: evidence.KindGateDecided, mut: set("predicateType", "https://slsa.dev/provenance/v1"),
		fields: []string{"predicateType"}},
	{name: "empty subject", kind: evidence.KindGateDecided, mut: set("subject", []any{}),
		fields: []string{"subject"}},
	{name: "missing subject", kind: evidence.KindGateDecided, mut: del("subject"),
		fields: []string{"subject"}},
	{name: "subject without digest", kind: evidence.KindGateDecided, mut: set("subject.0.digest", map[string]any{}),
		fields: []string{"subject[0].digest"}},
	{name: "bad subject digest algorithm", kind: evidence.KindGateDecided,
		mut:    set("subject.0.digest", map[string]any{"sha 256": "9e4ae5643818e741d99a703defa2646920c1a300753ac914e144e98730fb50a1"}),
		fields: []string{"subject[0].digest.sha 256"}},
	{name: "empty subject digest", kind: evidence.KindGateDecided, mut: set("subject.0.digest.sha256", ""),
		fields: []string{"subject[0].digest.sha256"}},
	{name: "block of the wrong kind", kind: evidence.KindApplyStarted,
		mut:    all(del("predicate.apply"), set("predicate.gate", map[string]any{"decision": "allow"})),
		fields: []string{"predicate.gate", "predicate.apply"}},
	{name: "block of another kind of the same family", kind: evidence.KindGateDecided,
		mut:    set("predicate.kind", "apply.started"),
		fields: []string{"predicate.gate", "predicate.apply"}},
	{name: "two blocks", kind: evidence.KindApprovalGranted, mut: set("predicate.gate", map[string]any{"decision": "allow"}),
		fields: []string{"predicate.gate"}},
	{name: "missing block", kind: evidence.KindApprovalGranted, mut: del("predicate.approval"),
		fields: []string{"predicate.approval"}},
	{name: "control character in actor", kind: evidence.KindApprovalGranted, mut: set("predicate.actor", "carol@example.com\x1b[2K"),
		fields: []string{"predicate.actor"}},
	{name: "newline in actor", kind: evidence.KindApprovalGranted, mut: set("predicate.actor", "carol@example.com\nbob@example.com"),
		fields: []string{"predicate.actor"}},
	{name: "DEL in a list item", kind: evidence.KindApprovalGranted, mut: set("predicate.approval.groups.0", "database-owners\x7f"),
		fields: []string{"predicate.approval.groups[0]"}},
	{name: "actor too long", kind: evidence.KindGateDecided, mut: set("predicate.actor", strings.Repeat("a", 257)),
		fields: []string{"predicate.actor"}},
	{name: "plan.created without source", kind: evidence.KindPlanCreated, mut: del("predicate.source"),
		fields: []string{"predicate.source.repository", "predicate.source.commitSha"}},
	{name: "apply without commit", kind: evidence.KindApplyCompleted, mut: del("predicate.source.commitSha"),
		fields: []string{"predicate.source.commitSha"}},
	{name: "negative pullRequest", kind: evidence.KindChangeOpened, mut: set("predicate.source.pullRequest", -4812),
		fields: []string{"predicate.source.pullRequest"}},
	{name: "missing target environment", kind: evidence.KindSyncSucceeded, mut: del("predicate.target.environment"),
		fields: []string{"predicate.target.environment"}},
	{name: "bad target label", kind: evidence.KindSyncSucceeded, mut: set("predicate.target.namespace", "orders namespace"),
		fields: []string{"predicate.target.namespace"}},
	{name: "unknown riskClass", kind: evidence.KindChangeOpened, mut: set("predicate.riskClass", "severe"),
		fields: []string{"predicate.riskClass"}},
	{name: "bad artifact digest", kind: evidence.KindPlanCreated, mut: set("predicate.artifacts.1.digest", "sha512:00"),
		fields: []string{"predicate.artifacts[1].digest"}},
	{name: "unknown plan action", kind: evidence.KindPlanCreated, mut: set("predicate.plan.resourceChanges.1.actions.0", "replace"),
		fields: []string{"predicate.plan.resourceChanges[1].actions[0]"}},
	{name: "bad attribute name", kind: evidence.KindPlanCreated, mut: set("predicate.plan.resourceChanges.1.attributes.bad name", "x"),
		fields: []string{"predicate.plan.resourceChanges[1].attributes.bad name"}},
	{name: "attribute with control characters", kind: evidence.KindPlanCreated, mut: set("predicate.plan.resourceChanges.1.attributes.family", "a\x01"),
		fields: []string{"predicate.plan.resourceChanges[1].attributes.family"}},
	{name: "policy set without digest", kind: evidence.KindTrustUpdated, mut: del("predicate.trust.policies.bundleSha256"),
		fields: []string{"predicate.trust.policies.bundleSha256"}},
	{name: "policy module with a bad digest", kind: evidence.KindTrustUpdated, mut: set("predicate.trust.policies.modules.0.sha256", "abc"),
		fields: []string{"predicate.trust.policies.modules[0].sha256"}},
	{name: "negative action count", kind: evidence.KindPlanCreated, mut: set("predicate.plan.actions.delete", -1),
		fields: []string{"predicate.plan.actions"}},
	{name: "bad rule id", kind: evidence.KindPolicyEvaluated, mut: set("predicate.policy.decisions.0.ruleId", "-no leading dash"),
		fields: []string{"predicate.policy.decisions[0].ruleId"}},
	{name: "unknown health status", kind: evidence.KindHealthDegraded, mut: set("predicate.health.status", "degraded"),
		fields: []string{"predicate.health.status"}},
	{name: "apply.failed without error", kind: evidence.KindApplyFailed, mut: del("predicate.apply.error"),
		fields: []string{"predicate.apply.error"}},
	{name: "drift.reconciled without method", kind: evidence.KindDriftReconciled, mut: del("predicate.drift.method"),
		fields: []string{"predicate.drift.method"}},
	{name: "drift without resources", kind: evidence.KindDriftDetected, mut: set("predicate.drift.resources", []any{}),
		fields: []string{"predicate.drift.resources"}},
	{name: "rollout.aborted without reason", kind: evidence.KindRolloutAborted, mut: del("predicate.rollout.abortReason"),
		fields: []string{"predicate.rollout.abortReason"}},
	{name: "sync object without name", kind: evidence.KindSyncSucceeded, mut: del("predicate.sync.object.name"),
		fields: []string{"predicate.sync.object.name"}},
	{name: "negative object generation", kind: evidence.KindHealthDegraded, mut: set("predicate.health.object.generation", -1),
		fields: []string{"predicate.health.object.generation"}},
	{name: "rollout object without kind", kind: evidence.KindRolloutPromoted, mut: set("predicate.rollout.object.kind", ""),
		fields: []string{"predicate.rollout.object.kind"}},
	{name: "boundary destination empty", kind: evidence.KindSyncSucceeded, mut: set("predicate.sync.boundary.destinations", []any{""}),
		fields: []string{"predicate.sync.boundary.destinations[0]"}},
	{name: "exception.granted without owner and expiry", kind: evidence.KindExceptionGranted,
		mut:    all(del("predicate.exception.owner"), del("predicate.exception.expiresAt")),
		fields: []string{"predicate.exception.owner", "predicate.exception.expiresAt"}},
	{name: "breakglass.opened without reason", kind: evidence.KindBreakglassOpened, mut: del("predicate.breakglass.reason"),
		fields: []string{"predicate.breakglass.reason"}},
	{name: "bootstrap without trust", kind: evidence.KindBootstrap, mut: del("predicate.bootstrap.trust"),
		fields: []string{"predicate.bootstrap.trust"}},
	{name: "plan.engineVersion too long", kind: evidence.KindPlanCreated, mut: set("predicate.plan.engineVersion", strings.Repeat("1", 65)),
		fields: []string{"predicate.plan.engineVersion"}},
	{name: "plan.stack too long", kind: evidence.KindPlanCreated, mut: set("predicate.plan.stack", strings.Repeat("a", 513)),
		fields: []string{"predicate.plan.stack"}},
	{name: "synced object group too long", kind: evidence.KindSyncSucceeded, mut: set("predicate.sync.resources.1.group", strings.Repeat("a", 254)),
		fields: []string{"predicate.sync.resources[1].group"}},
	{name: "control character in a synced object's namespace", kind: evidence.KindSyncSucceeded,
		mut:    set("predicate.sync.resources.0.namespace", "orders\n"),
		fields: []string{"predicate.sync.resources[0].namespace"}},
	{name: "synced object status too long", kind: evidence.KindSyncFailed, mut: set("predicate.sync.resources.0.status", strings.Repeat("a", 129)),
		fields: []string{"predicate.sync.resources[0].status"}},
	{name: "ignored difference group too long", kind: evidence.KindSyncStarted,
		mut:    set("predicate.sync.ignoreDifferences.0.group", strings.Repeat("a", 254)),
		fields: []string{"predicate.sync.ignoreDifferences[0].group"}},
	{name: "empty and overlong ignored JSON pointers", kind: evidence.KindSyncStarted,
		mut:    set("predicate.sync.ignoreDifferences.0.jsonPointers", []any{"/spec/replicas", "", "/" + strings.Repeat("a", 512)}),
		fields: []string{"predicate.sync.ignoreDifferences[0].jsonPointers[1]", "predicate.sync.ignoreDifferences[0].jsonPointers[2]"}},
	{name: "analysis template too long", kind: evidence.KindRolloutAborted, mut: set("predicate.rollout.analysis.1.template", strings.Repeat("a", 257)),
		fields: []string{"predicate.rollout.analysis[1].template"}},
	{name: "analysis query too long", kind: evidence.KindRolloutPromoted, mut: set("predicate.rollout.analysis.0.query", strings.Repeat("a", 4097)),
		fields: []string{"predicate.rollout.analysis[0].query"}},
	{name: "sbomDigest in upper case", kind: evidence.KindArtifactAdmitted,
		mut:    set("predicate.artifactAdmission.sbomDigest", "sha256:DEF456595EDCA1EDD8F7E87BC7567CA0A97134F841DB18CAE01361256D7FCF50"),
		fields: []string{"predicate.artifactAdmission.sbomDigest"}},
	{name: "provenance too long", kind: evidence.KindArtifactAdmitted, mut: set("predicate.artifactAdmission.provenance", strings.Repeat("a", 1025)),
		fields: []string{"predicate.artifactAdmission.provenance"}},
	{name: "bootstrap version name too long", kind: evidence.KindBootstrap, mut: set("predicate.bootstrap.versions."+strings.Repeat("a", 129), "v1"),
		fields: []string{"predicate.bootstrap.versions." + strings.Repeat("a", 129)}},
	{name: "bootstrap versions too long, in key order", kind: evidence.KindBootstrap,
		mut: all(set("predicate.bootstrap.versions.opentofu", strings.Repeat("1", 257)),
			set("predicate.bootstrap.versions.evident", strings.Repeat("1", 257))),
		fields: []string{"predicate.bootstrap.versions.evident", "predicate.bootstrap.versions.opentofu"}},
	{name: "empty bootstrap version name", kind: evidence.KindBootstrap, mut: set("predicate.bootstrap.versions", map[string]any{"": "v1"}),
		fields: []string{`predicate.bootstrap.versions.""`}, schema: schemaRejects},
	{name: "bad subject digests, in key order", kind: evidence.KindGateDecided,
		mut:    set("subject.0.digest", map[string]any{"sha256": "", "sha 1": "00", "gitCommit": "8fb2d7e", "md5": strings.Repeat("0", 257)}),
		fields: []string{"subject[0].digest.md5", "subject[0].digest.sha 1", "subject[0].digest.sha256"}},
	{name: "trust.updated without config", kind: evidence.KindTrustUpdated, mut: del("predicate.trust.config"),
		fields: []string{"predicate.trust.config"}},
	{name: "log key too long", kind: evidence.KindTrustUpdated, mut: set("predicate.trust.logKey", strings.Repeat("k", 513)),
		fields: []string{"predicate.trust.logKey"}},
	{name: "bootstrap trust is an array", kind: evidence.KindBootstrap, mut: set("predicate.bootstrap.trust", []any{map[string]any{"runners": []any{}}}),
		fields: []string{"predicate.bootstrap.trust"}},
	{name: "zero occurredAt", kind: evidence.KindGateDecided, mut: set("predicate.occurredAt", "0001-01-01T00:00:00Z"),
		fields: []string{"predicate.occurredAt"}, schema: schemaCannotTell},
	{name: "actor longer than 256 bytes in fewer characters", kind: evidence.KindGateDecided,
		mut:    set("predicate.actor", strings.Repeat("é", 200)),
		fields: []string{"predicate.actor"}, schema: schemaCannotTell},

	{name: "unknown field at the top", kind: evidence.KindGateDecided, mut: set("signature", "x"),
		malformed: true, mentions: []string{"unknown", "signature"}},
	{name: "unknown field in the predicate", kind: evidence.KindGateDecided, mut: set("predicate.colour", "blue"),
		malformed: true, mentions: []string{"unknown", "colour"}},
	{name: "unknown field in a subject", kind: evidence.KindGateDecided, mut: set("subject.0.uri", "s3://evidence/prod/4812/plan.tfplan"),
		malformed: true, mentions: []string{"unknown", "uri"}},
	{name: "unknown field in source", kind: evidence.KindPlanCreated, mut: set("predicate.source.tag", "v1"),
		malformed: true, mentions: []string{"unknown", "tag"}},
	{name: "unknown field in target", kind: evidence.KindPlanCreated, mut: set("predicate.target.zone", "a"),
		malformed: true, mentions: []string{"unknown", "zone"}},
	{name: "unknown field in an artifact", kind: evidence.KindPlanCreated, mut: set("predicate.artifacts.0.size", 1024),
		malformed: true, mentions: []string{"unknown", "size"}},
	{name: "unknown field in a block", kind: evidence.KindApprovalGranted, mut: set("predicate.approval.approvers", []any{"bob@example.com"}),
		malformed: true, mentions: []string{"unknown", "approvers"}},
	{name: "unknown field deep in a block", kind: evidence.KindPolicyEvaluated, mut: set("predicate.policy.decisions.0.weight", 3),
		malformed: true, mentions: []string{"unknown", "weight"}},
	{name: "unknown field in syncPolicy", kind: evidence.KindSyncStarted, mut: set("predicate.sync.syncPolicy.retry", true),
		malformed: true, mentions: []string{"unknown", "retry"}},
	{name: "null block", kind: evidence.KindPlanCreated, mut: set("predicate.plan", nil),
		malformed: true, mentions: []string{"predicate.plan: must not be null"}, fields: []string{"predicate.plan"}},
	{name: "null in a list", kind: evidence.KindPlanCreated, mut: set("predicate.plan.highRiskResources.0", nil),
		malformed: true, mentions: []string{"predicate.plan.highRiskResources[0]: must not be null"}, fields: []string{"predicate.plan.highRiskResources[0]"}},
	{name: "null subject digest", kind: evidence.KindGateDecided, mut: set("subject.0.digest.sha256", nil),
		malformed: true, mentions: []string{"subject[0].digest.sha256: must not be null"}, fields: []string{"subject[0].digest.sha256"}},
	{name: "null policy decision", kind: evidence.KindPolicyEvaluated, mut: set("predicate.policy.decisions.0", nil),
		malformed: true, mentions: []string{"predicate.policy.decisions[0]: must not be null"}, fields: []string{"predicate.policy.decisions[0]"}},
	{name: "null statement", kind: evidence.KindGateDecided, raw: func([]byte) []byte { return []byte("null") },
		malformed: true, mentions: []string{"null"}},
	{name: "wrong JSON type", kind: evidence.KindChangeOpened, mut: set("predicate.source.pullRequest", "4812"),
		malformed: true, mentions: []string{"predicate.source.pullRequest"}},
	{name: "time that is not RFC 3339", kind: evidence.KindGateDecided, mut: set("predicate.occurredAt", "2026-07-03 09:32:48"),
		malformed: true, mentions: []string{"predicate.occurredAt"}},
	{name: "time zone offset +24:00", kind: evidence.KindGateDecided, mut: set("predicate.occurredAt", "2026-07-03T09:32:48+24:00"),
		malformed: true, mentions: []string{"predicate.occurredAt"}, fields: []string{"predicate.occurredAt"}},
	{name: "time with a one-digit hour", kind: evidence.KindApplyCompleted, mut: set("predicate.apply.startedAt", "2026-07-03T9:33:00Z"),
		malformed: true, mentions: []string{"predicate.apply.startedAt"}, fields: []string{"predicate.apply.startedAt"}},
	{name: "time with a decimal comma", kind: evidence.KindApplyCompleted, mut: set("predicate.apply.completedAt", "2026-07-03T09:37:12,5Z"),
		malformed: true, mentions: []string{"predicate.apply.completedAt"}, fields: []string{"predicate.apply.completedAt"}},
	{name: "time in lower case", kind: evidence.KindApprovalGranted, mut: set("predicate.approval.expiresAt", "2026-07-03t13:19:40z"),
		malformed: true, mentions: []string{"predicate.approval.expiresAt"}, fields: []string{"predicate.approval.expiresAt"}},
	{name: "leap second", kind: evidence.KindGateDecided, mut: set("predicate.occurredAt", "2026-06-30T23:59:60Z"),
		malformed: true, mentions: []string{"predicate.occurredAt"}, fields: []string{"predicate.occurredAt"}},
	{name: "field name in another case", kind: evidence.KindGateDecided,
		raw:       func(b []byte) []byte { return bytes.Replace(b, []byte(`"changeId"`), []byte(`"ChangeID"`), 1) },
		malformed: true, mentions: []string{"ChangeID"}, fields: []string{"predicate.ChangeID", "predicate.changeId"}},
	{name: "duplicate field", kind: evidence.KindGateDecided,
		raw: func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"decision": "allow"`), []byte(`"decision": "deny", "decision": "allow"`), 1)
		},
		malformed: true, mentions: []string{"decision"}, schema: schemaCannotTell},
	{name: "invalid UTF-8", kind: evidence.KindGateDecided,
		raw: func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"actor": "repo`), []byte("\"actor\": \"\xffrepo"), 1)
		},
		malformed: true, schema: schemaCannotTell},
	{name: "nesting deeper than MaxDepth", kind: evidence.KindBootstrap,
		mut:       set("predicate.bootstrap.trust", map[string]any{"runners": nested(evidence.MaxDepth - 3)}),
		malformed: true, mentions: []string{fmt.Sprintf("nested deeper than %d", evidence.MaxDepth)}, schema: schemaCannotTell},
	{name: "non-integer number", kind: evidence.KindChangeOpened,
		raw: func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"pullRequest": 4812`), []byte(`"pullRequest": 4812.0`), 1)
		},
		malformed: true, mentions: []string{"predicate.source.pullRequest"}, schema: schemaCannotTell},
	{name: "truncated JSON", kind: evidence.KindGateDecided, raw: func(b []byte) []byte { return b[:len(b)/2] },
		malformed: true, mentions: []string{"truncated"}, schema: notJSON},
	{name: "empty payload", kind: evidence.KindGateDecided, raw: func([]byte) []byte { return nil },
		malformed: true, mentions: []string{"truncated"}, schema: notJSON},
	{name: "trailing data", kind: evidence.KindGateDecided, raw: func(b []byte) []byte { return append(b, `{"kind":"x"}`...) },
		malformed: true, mentions: nil, schema: notJSON},
	{name: "two statements", kind: evidence.KindGateDecided, raw: func(b []byte) []byte { return append(b, b...) },
		malformed: true, mentions: nil, schema: notJSON},
	{name: "not JSON", kind: evidence.KindGateDecided, raw: func([]byte) []byte { return []byte("_type: in-toto") },
		malformed: true, mentions: nil, schema: notJSON},
}

// TestDecodeRejects checks Decode's verdict on invalid records, each an
// example with one thing wrong, and that the JSON Schema rejects the same
// records wherever JSON Schema can express the rule.
func TestDecodeRejects(t *testing.T) {
	for _, c := range slices.Concat(invalidCases, anchorCases) {
		t.Run(c.name, func(t *testing.T) {
			payload := c.payload(t)
			_, err := evidence.Decode(payload)
			if err == nil {
				t.Fatal("Decode accepted the record")
			}
			var ve *evidence.ValidationError
			switch {
			case c.malformed:
				if !errors.Is(err, evidence.ErrMalformed) {
					t.Fatalf("error %q does not wrap ErrMalformed", err)
				}
				if errors.As(err, &ve) {
					t.Errorf("a malformed record gave a ValidationError")
				}
				for _, m := range c.mentions {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("error %q does not mention %q", err, m)
					}
				}
			default:
				if !errors.As(err, &ve) {
					t.Fatalf("error %q (%T) is not a *ValidationError", err, err)
				}
				if errors.Is(err, evidence.ErrMalformed) {
					t.Errorf("an invalid record wrapped ErrMalformed")
				}
				var fields []string
				for _, p := range ve.Problems {
					fields = append(fields, p.Field)
				}
				if !slices.Equal(fields, c.fields) {
					t.Errorf("problems name %q, want %q (%v)", fields, c.fields, err)
				}
			}

			serr := schemaValidate(t, payload)
			switch c.schema {
			case schemaRejects:
				if serr == nil {
					t.Fatal("the schema accepts the record")
				}
				got := schemaFields(serr)
				for _, f := range c.fields {
					if !slices.ContainsFunc(got, func(g string) bool { return sameField(f, g) }) {
						t.Errorf("the schema does not point at %s; it points at %q", f, got)
					}
				}
			case schemaCannotTell:
				if serr != nil {
					t.Errorf("the schema rejects a record it is not expected to judge: %v", serr)
				}
			case notJSON:
				var ve *jsonschema.ValidationError
				if serr == nil || errors.As(serr, &ve) {
					t.Errorf("the schema's parser read the payload: %v", serr)
				}
			}
		})
	}
}

// knownGaps are records that Decode once accepted while the schema refused
// them, found by a review of validate.go against the schema. Decode refuses
// each of them now, naming the field the schema points at; TestKnownGaps
// keeps it that way.
var knownGaps = []struct {
	name  string
	kind  evidence.Kind
	mut   func(testing.TB, doc)
	raw   func([]byte) []byte
	field string // the field both errors must name
	why   string // why Decode used to accept the record
}{
	{name: "bootstrap trust is null", kind: evidence.KindBootstrap, mut: set("predicate.bootstrap.trust", nil),
		field: "predicate.bootstrap.trust", why: "json.RawMessage holds the literal null, which passes len > 0"},
	{name: "bootstrap trust is not an object", kind: evidence.KindBootstrap, mut: set("predicate.bootstrap.trust", "runners"),
		field: "predicate.bootstrap.trust", why: "the trust configuration is not checked to be a JSON object"},
	{name: "trust config is not an object", kind: evidence.KindTrustUpdated, mut: set("predicate.trust.config", []any{}),
		field: "predicate.trust.config", why: "the trust configuration is not checked to be a JSON object"},
	{name: "trust config is null", kind: evidence.KindTrustUpdated, mut: set("predicate.trust.config", nil),
		field: "predicate.trust.config", why: "json.RawMessage holds the literal null"},
	{name: "trust.updated without config", kind: evidence.KindTrustUpdated, mut: del("predicate.trust.config"),
		field: "predicate.trust.config", why: "trust.config is optional, but the server reads the new configuration from it"},
	{name: "negative approval pullRequest", kind: evidence.KindApprovalGranted, mut: set("predicate.approval.pullRequest", -1),
		field: "predicate.approval.pullRequest", why: "only source.pullRequest is checked for a negative number"},
	{name: "control character in plan.engineVersion", kind: evidence.KindPlanCreated, mut: set("predicate.plan.engineVersion", "1.10.6\r\n"),
		field: "predicate.plan.engineVersion", why: "plan.engineVersion and plan.stack are not validated"},
	{name: "control character in a synced object's status", kind: evidence.KindSyncSucceeded, mut: set("predicate.sync.resources.0.status", "Synced\x1b[31m"),
		field: "predicate.sync.resources[0].status", why: "sync resources' group/namespace/status and ignoreDifferences' group/jsonPointers are not validated"},
	{name: "control character in an analysis query", kind: evidence.KindRolloutPromoted, mut: set("predicate.rollout.analysis.0.query", "up\x00"),
		field: "predicate.rollout.analysis[0].query", why: "rollout analysis template and query are not validated"},
	{name: "bad sbomDigest", kind: evidence.KindArtifactAdmitted, mut: set("predicate.artifactAdmission.sbomDigest", "def456"),
		field: "predicate.artifactAdmission.sbomDigest", why: "artifactAdmission.sbomDigest and provenance are not validated"},
	{name: "control character in a bootstrap version", kind: evidence.KindBootstrap, mut: set("predicate.bootstrap.versions.evident", "v0.1.0\n"),
		field: "predicate.bootstrap.versions.evident", why: "bootstrap.versions is not validated"},
	{name: "null for an optional field", kind: evidence.KindChangeOpened, mut: set("predicate.riskClass", nil),
		field: "predicate.riskClass", why: "the decoder reads null as the zero value"},
}

// TestKnownGaps checks that Decode refuses each of knownGaps and that its
// error, malformed or invalid, names the field the schema points at.
func TestKnownGaps(t *testing.T) {
	for _, g := range knownGaps {
		t.Run(g.name, func(t *testing.T) {
			c := invalidCase{kind: g.kind, mut: g.mut, raw: g.raw}
			payload := c.payload(t)
			if err := schemaValidate(t, payload); err == nil {
				t.Errorf("the schema accepts the record")
			} else if !slices.ContainsFunc(schemaFields(err), func(f string) bool { return sameField(g.field, f) }) {
				t.Errorf("the schema does not point at %s: %v", g.field, schemaFields(err))
			}
			_, err := evidence.Decode(payload)
			if err == nil {
				t.Fatalf("Decode accepts the record again (%s)", g.why)
			}
			var ve *evidence.ValidationError
			switch {
			case errors.Is(err, evidence.ErrMalformed):
				if !strings.Contains(err.Error(), ": "+g.field+": ") {
					t.Errorf("error does not name %s: %v", g.field, err)
				}
			case errors.As(err, &ve):
				if !slices.ContainsFunc(ve.Problems, func(p evidence.FieldError) bool { return p.Field == g.field }) {
					t.Errorf("error does not name %s: %v", g.field, err)
				}
			default:
				t.Errorf("unexpected error type %T: %v", err, err)
			}
		})
	}
}

// TestProblemOrder checks that the problems of a record come in the same
// order every time, map entries in key order, though Go ranges over maps in
// random order.
func TestProblemOrder(t *testing.T) {
	for _, c := range invalidCases {
		if !strings.HasSuffix(c.name, "in key order") {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			payload := c.payload(t)
			_, err := evidence.Decode(payload)
			for range 50 {
				if _, again := evidence.Decode(payload); again.Error() != err.Error() {
					t.Fatalf("problems in another order:\n%v\n%v", err, again)
				}
			}
		})
	}
}

// TestDescribeJSONError checks how malformed records are reported: fields
// spelled as FieldError spells them, from the unescaped tokens of the
// decoder's JSON Pointer, and parse errors rather than "wrong type".
func TestDescribeJSONError(t *testing.T) {
	for _, c := range []struct {
		name string
		kind evidence.Kind
		mut  func(testing.TB, doc)
		raw  func([]byte) []byte
		want string // the start of the message after "malformed statement: "
	}{
		{name: "time that is not RFC 3339", kind: evidence.KindGateDecided, mut: set("predicate.occurredAt", "2026-07-03 09:32:48"),
			want: `predicate.occurredAt: parsing time "2026-07-03 09:32:48"`},
		{name: "time with an offset of 24 hours", kind: evidence.KindApprovalGranted, mut: set("predicate.approval.expiresAt", "2026-07-03T13:19:40+24:00"),
			want: `predicate.approval.expiresAt: parsing time "2026-07-03T13:19:40+24:00"`},
		{name: "wrong type", kind: evidence.KindChangeOpened, mut: set("predicate.source.pullRequest", "4812"),
			want: "predicate.source.pullRequest: wrong type (JSON string)"},
		{name: "fraction", kind: evidence.KindChangeOpened,
			raw:  func(b []byte) []byte { return bytes.Replace(b, []byte(`4812`), []byte(`4812.0`), 1) },
			want: "predicate.source.pullRequest: must be an integer without a fraction or exponent (JSON number 4812.0)"},
		{name: "out of range", kind: evidence.KindChangeOpened,
			raw:  func(b []byte) []byte { return bytes.Replace(b, []byte(`4812`), []byte(`99999999999999999999`), 1) },
			want: "predicate.source.pullRequest: out of range (JSON number 99999999999999999999)"},
		{name: "subject digest of the wrong type", kind: evidence.KindGateDecided, mut: set("subject.0.digest", "9e4ae564"),
			want: "subject[0].digest: wrong type (JSON string)"},
		{name: "numeric digest algorithm", kind: evidence.KindGateDecided, mut: set("subject.0.digest.256", 256),
			want: "subject[0].digest.256: wrong type (JSON number)"},
		{name: "numeric component name", kind: evidence.KindBootstrap, mut: set("predicate.bootstrap.versions.1", 1),
			want: "predicate.bootstrap.versions.1: wrong type (JSON number)"},
		{name: "indexes in a list in a list", kind: evidence.KindPlanCreated, mut: set("predicate.plan.resourceChanges.1.actions.0", 5),
			want: "predicate.plan.resourceChanges[1].actions[0]: wrong type (JSON number)"},
		{name: "unknown field with / and ~ in its name", kind: evidence.KindGateDecided, mut: set("predicate.gate.a/b~c", 1),
			want: "predicate.gate.a/b~c: unknown field"},
		{name: "unknown field with a control character in its name", kind: evidence.KindGateDecided, mut: set("predicate.x\x1b[2Ky", 1),
			want: `predicate."x\x1b[2Ky": unknown field`},
		{name: "unknown field in a list element", kind: evidence.KindPlanCreated, mut: set("predicate.artifacts.1.size", 1024),
			want: "predicate.artifacts[1].size: unknown field"},
		{name: "null", kind: evidence.KindChangeOpened, mut: set("predicate.change.requiresApprovalFrom.1", nil),
			want: "predicate.change.requiresApprovalFrom[1]: must not be null"},
		{name: "duplicate field", kind: evidence.KindGateDecided,
			raw: func(b []byte) []byte {
				return bytes.Replace(b, []byte(`"decision": "allow"`), []byte(`"decision": "deny", "decision": "allow"`), 1)
			},
			want: "invalid JSON in predicate.gate.decision after byte "},
		{name: "invalid UTF-8", kind: evidence.KindGateDecided,
			raw: func(b []byte) []byte {
				return bytes.Replace(b, []byte(`"actor": "repo`), []byte("\"actor\": \"\xffrepo"), 1)
			},
			want: "invalid JSON in predicate.actor after byte "},
		{name: "truncated", kind: evidence.KindPlanCreated, raw: func(b []byte) []byte { return b[:bytes.Index(b, []byte(`"aws",`))] },
			want: "truncated JSON in predicate.target.cloud after byte "},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := evidence.Decode(invalidCase{kind: c.kind, mut: c.mut, raw: c.raw}.payload(t))
			if !errors.Is(err, evidence.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if got := strings.TrimPrefix(err.Error(), "malformed statement: "); !strings.HasPrefix(got, c.want) {
				t.Errorf("error %q\ndoes not start %q", got, c.want)
			}
		})
	}
}

// TestDecodeAccepts checks records that differ from an example in what the
// format allows, and that Decode and the schema both accept them.
func TestDecodeAccepts(t *testing.T) {
	for _, c := range []struct {
		name  string
		kind  evidence.Kind
		mut   func(testing.TB, doc)
		check func(*testing.T, *evidence.Statement)
	}{
		{name: "policy decisions null, as older Go clients wrote them", kind: evidence.KindPolicyEvaluated,
			mut: set("predicate.policy.decisions", nil),
			check: func(t *testing.T, st *evidence.Statement) {
				if b, _ := json.Marshal(st.Predicate.Policy); bytes.Contains(b, []byte("decisions")) {
					t.Errorf("a policy block without decisions encodes as %s", b)
				}
			}},
		{name: "policy without decisions", kind: evidence.KindPolicyEvaluated, mut: del("predicate.policy.decisions")},
		{name: "null inside the bootstrap trust configuration", kind: evidence.KindBootstrap,
			mut: set("predicate.bootstrap.trust.runners.0.scope.environments", nil)},
		{name: "null inside a new trust configuration", kind: evidence.KindTrustUpdated,
			mut: set("predicate.trust.config.runners.2.scope.clusters", nil)},
		{name: "no versions", kind: evidence.KindBootstrap, mut: del("predicate.bootstrap.versions")},
		{name: "a log key rotation names the trust in force by its digest only", kind: evidence.KindTrustUpdated,
			mut: func(t testing.TB, d doc) {
				del("predicate.trust.config")(t, d)
				del("predicate.trust.policies")(t, d)
				set("predicate.trust.logKey", "evident.example.com/prod+3ebefbce+AV1fVeqGW1+leu7HHPkx8V8PkJaHKHD1G9QtXGKS1QW6")(t, d)
			},
			check: func(t *testing.T, st *evidence.Statement) {
				if st.Predicate.Trust.LogKey == "" || st.Predicate.Trust.Config != nil {
					t.Errorf("trust block %+v", st.Predicate.Trust)
				}
			}},
		{name: "non-ASCII version", kind: evidence.KindBootstrap, mut: set("predicate.bootstrap.versions.évident", "v0.1.0 (été)")},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := exampleDoc(t, c.kind)
			c.mut(t, d)
			payload, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			st, err := evidence.Decode(payload)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if err := schemaValidate(t, payload); err != nil {
				t.Errorf("schema: %v", err)
			}
			if c.check != nil {
				c.check(t, st)
			}
		})
	}
}

// TestValidateAllocatesNothing checks that validating a valid record builds
// no field names: Decode runs on every posted record.
func TestValidateAllocatesNothing(t *testing.T) {
	for _, k := range evidence.Kinds() {
		st := decodeExample(t, k)
		if n := testing.AllocsPerRun(20, func() {
			if err := st.Validate(); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("validating the %s example allocates %v times", k, n)
		}
	}
}

// FuzzDecode checks that Decode never panics, and that whatever it accepts
// re-encodes to a statement it accepts again, which re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	for _, k := range evidence.Kinds() {
		f.Add(readExample(f, k))
	}
	for _, c := range invalidCases {
		f.Add(c.payload(f))
	}
	f.Add([]byte(`null`))
	f.Add([]byte(`{"predicate":{"bootstrap":{"trust":null}}}`))
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"00"}}],` +
		`"predicateType":"https://evident.dev/transition/v1","predicate":{"kind":"health.degraded","changeId":"c",` +
		`"occurredAt":"2026-07-03T09:51:30+10:00","actor":"a","target":{"environment":"prod"},"health":{"status":"Degraded"}}}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		st, err := evidence.Decode(payload)
		if err != nil {
			var ve *evidence.ValidationError
			if !errors.Is(err, evidence.ErrMalformed) && !errors.As(err, &ve) {
				t.Fatalf("error %q (%T) is neither malformed nor a ValidationError", err, err)
			}
			return
		}
		again, err := json.Marshal(st)
		if err != nil {
			t.Fatalf("accepted statement does not re-encode: %v", err)
		}
		st2, err := evidence.Decode(again)
		if err != nil {
			t.Fatalf("re-encoded statement is refused: %v\n%s", err, again)
		}
		third, err := json.Marshal(st2)
		if err != nil {
			t.Fatalf("re-decoded statement does not re-encode: %v", err)
		}
		if !bytes.Equal(again, third) {
			t.Fatalf("encoding is not stable:\n%s\n%s", again, third)
		}
	})
}

// jsonDepth is the nesting depth of a decoded JSON value: 0 for a scalar,
// 1 for an empty object or array.
func jsonDepth(v any) int {
	d := 0
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			d = max(d, jsonDepth(x))
		}
		return d + 1
	case []any:
		for _, x := range v {
			d = max(d, jsonDepth(x))
		}
		return d + 1
	}
	return 0
}

// FuzzCheckDepth checks that CheckDepth never panics and, on valid JSON,
// refuses exactly the documents nested deeper than its limit.
func FuzzCheckDepth(f *testing.F) {
	for _, k := range []evidence.Kind{evidence.KindSyncStarted, evidence.KindBootstrap} {
		f.Add(readExample(f, k), uint8(evidence.MaxDepth))
	}
	for _, s := range []string{
		`{}`, `[]`, `"["`, `"\"{"`, `["\\", [{"a": "\\\"]"}]]`, `[[[[[[]]]]]]`, `{"a":{"b":{"c":[1,2,{"d":null}]}}}`,
		`]]]][[[[[[`, `"unterminated [[[[`, `1`, ``, `{"a":"\u005b\u005b"}`,
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, b []byte, limit uint8) {
		maxDepth := int(limit % 24)
		err := evidence.CheckDepth(b, maxDepth)
		if !json.Valid(b) {
			return
		}
		var v any
		if json.Unmarshal(b, &v) != nil {
			return // deeper than encoding/json itself allows
		}
		if d := jsonDepth(v); (d > maxDepth) != (err != nil) {
			t.Fatalf("CheckDepth(%q, %d) = %v, but the depth is %d", b, maxDepth, err, d)
		}
	})
}

// TestMaxDepthFitsRecords checks that MaxDepth leaves room for the deepest
// legitimate records (the examples) and for their trust configurations.
func TestMaxDepthFitsRecords(t *testing.T) {
	for _, k := range evidence.Kinds() {
		var v any
		if err := json.Unmarshal(readExample(t, k), &v); err != nil {
			t.Fatal(err)
		}
		if d := jsonDepth(v); d > evidence.MaxDepth {
			t.Errorf("example %s is %d deep, more than MaxDepth", k, d)
		}
	}
}

// TestMaxDepthAdmitsTrustConfigurations checks that MaxDepth admits a
// realistic trust configuration, with several runners and scopes, in both
// records that carry one, and that the limit falls where MaxDepth says.
func TestMaxDepthAdmitsTrustConfigurations(t *testing.T) {
	// The shape of verifier.TrustConfig, encoded as its Canonical method
	// encodes it: a runner without environments has "environments": null.
	type scope struct {
		Environments []string `json:"environments"`
		Stacks       []string `json:"stacks,omitempty"`
		Clusters     []string `json:"clusters,omitempty"`
	}
	type runner struct {
		Name      string `json:"name"`
		PublicKey string `json:"publicKey"`
		Scope     scope  `json:"scope"`
	}
	key := exampleDoc(t, evidence.KindBootstrap)["predicate"].(doc)["bootstrap"].(doc)["trust"].(doc)["runners"].([]any)[0].(doc)["publicKey"].(string)
	const stack = "prod/aws/account-payments-prod/ap-southeast-1/"
	config := struct {
		Runners []runner `json:"runners"`
	}{Runners: []runner{
		{"infra-live-ci", key, scope{Environments: []string{"*"}}},
		{"infra-live-apply-prod", key, scope{Environments: []string{"prod"}, Stacks: []string{stack + "rds-orders", stack + "network", stack + "eks"}}},
		{"infra-live-apply-staging", key, scope{Environments: []string{"staging"}, Stacks: []string{"staging/aws/*"}}},
		{"argocd-prod-eu-1", key, scope{Environments: []string{"prod"}, Clusters: []string{"prod-eu-1"}}},
		{"argocd-prod-us-1", key, scope{Environments: []string{"prod"}, Clusters: []string{"prod-us-1", "prod-us-2"}}},
		{"argocd-staging", key, scope{Environments: []string{"staging", "dev"}, Clusters: []string{"staging-eu-1"}}},
		{"supply-chain-gate", key, scope{Environments: []string{"prod", "staging"}, Clusters: []string{"prod-eu-1", "prod-us-1"}}},
		{"approval-service", key, scope{}},
	}}
	canonical, err := json.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(canonical)
	digest := hex.EncodeToString(sum[:])
	realistic := json.RawMessage(canonical)

	for _, c := range []struct {
		kind         evidence.Kind
		config       string // the path of the trust configuration
		digestFields []string
	}{
		{evidence.KindBootstrap, "predicate.bootstrap.trust", []string{"predicate.bootstrap.trustDigest", "subject.0.digest.sha256"}},
		{evidence.KindTrustUpdated, "predicate.trust.config", []string{"predicate.trust.digest", "subject.0.digest.sha256"}},
	} {
		t.Run(string(c.kind), func(t *testing.T) {
			decode := func(config any, digest string) ([]byte, error) {
				d := exampleDoc(t, c.kind)
				set(c.config, config)(t, d)
				for _, f := range c.digestFields {
					set(f, digest)(t, d)
				}
				payload, err := json.Marshal(d)
				if err != nil {
					t.Fatal(err)
				}
				_, err = evidence.Decode(payload)
				return payload, err
			}

			payload, err := decode(realistic, digest)
			if err != nil {
				t.Fatalf("Decode refuses a realistic trust configuration: %v", err)
			}
			if err := schemaValidate(t, payload); err != nil {
				t.Errorf("schema: %v", err)
			}
			var v any
			if err := json.Unmarshal(payload, &v); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d runners: the statement is %d levels deep, MaxDepth is %d", len(config.Runners), jsonDepth(v), evidence.MaxDepth)

			// The trust configuration starts at level 4.
			if _, err := decode(doc{"runners": nested(evidence.MaxDepth - 4)}, digest); err != nil {
				t.Errorf("Decode refuses a statement exactly MaxDepth deep: %v", err)
			}
			if _, err := decode(doc{"runners": nested(evidence.MaxDepth - 3)}, digest); !errors.Is(err, evidence.ErrMalformed) {
				t.Errorf("Decode accepts a statement deeper than MaxDepth: %v", err)
			}
		})
	}
}

// A transition statement as a runner sends it (inside a DSSE envelope), and
// what Decode makes of it and of the same statement with one bad field.
func ExampleDecode() {
	payload := []byte(`{
  "_type": "https://in-toto.io/Statement/v1",
  "subject": [{"name": "plan", "digest": {"sha256": "9e4ae5643818e741d99a703defa2646920c1a300753ac914e144e98730fb50a1"}}],
  "predicateType": "https://evident.dev/transition/v1",
  "predicate": {
    "kind": "gate.decided",
    "changeId": "CHG-2026-07-03-1421",
    "occurredAt": "2026-07-03T09:32:48Z",
    "actor": "repo:example/infra-live:environment:prod",
    "target": {"environment": "prod", "stack": "prod/aws/account-payments-prod/ap-southeast-1/rds-orders"},
    "gate": {"decision": "allow", "planSha256": "9e4ae5643818e741d99a703defa2646920c1a300753ac914e144e98730fb50a1"}
  }
}`)
	st, err := evidence.Decode(payload)
	if err != nil {
		fmt.Println(err)
		return
	}
	block, _ := st.Predicate.Kind.Block()
	fmt.Println(st.Predicate.Kind, st.Predicate.ChangeID, block, st.Predicate.Gate.Decision)

	_, err = evidence.Decode(bytes.Replace(payload, []byte(`"allow"`), []byte(`"maybe"`), 1))
	var invalid *evidence.ValidationError
	if errors.As(err, &invalid) {
		fmt.Println(invalid.Problems[0].Field)
	}
	_, err = evidence.Decode(bytes.Replace(payload, []byte(`"decision"`), []byte(`"verdict"`), 1))
	fmt.Println(errors.Is(err, evidence.ErrMalformed))
	// Output:
	// gate.decided CHG-2026-07-03-1421 gate allow
	// predicate.gate.decision
	// true
}

// benchPayload is a realistic plan.created record as a runner posts it: the
// plan.created example, compact, without its plan.json subject and artifact
// and its third resource change (about 1.7 KB).
func benchPayload(b *testing.B) []byte {
	b.Helper()
	d := exampleDoc(b, evidence.KindPlanCreated)
	p := d["predicate"].(map[string]any)
	d["subject"] = d["subject"].([]any)[:1]
	p["artifacts"] = p["artifacts"].([]any)[:1]
	plan := p["plan"].(map[string]any)
	plan["resourceChanges"] = plan["resourceChanges"].([]any)[:2]
	payload, err := json.Marshal(d)
	if err != nil {
		b.Fatal(err)
	}
	return payload
}

// BenchmarkDecode measures Decode on the path every posted record takes.
func BenchmarkDecode(b *testing.B) {
	payload := benchPayload(b)
	if _, err := evidence.Decode(payload); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := evidence.Decode(payload); err != nil {
			b.Fatal(err)
		}
	}
}
