package tofu

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	tfjson "github.com/hashicorp/terraform-json"
)

// The engine's -json apply output is outside input: whatever it holds, the
// parser neither panics nor invents addresses that are not in it.
func FuzzParseApplyLog(f *testing.F) {
	f.Add([]byte(`{"type":"apply_complete","hook":{"resource":{"addr":"terraform_data.a"}}}
{"type":"apply_errored","hook":{"resource":{"addr":"terraform_data.b"}}}
{"type":"diagnostic","diagnostic":{"severity":"error","summary":"Error acquiring the state lock","detail":"Lock Info:\n  ID: 1234\n  Who: bob@host\n  Operation: OperationTypeApply\n"}}`))
	f.Add([]byte("not json\n{}\n{\"type\":\"apply_complete\"}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev := parseApplyLog(b)
		for _, a := range append(slices.Clone(ev.changed), ev.failed...) {
			if a == "" || !strings.Contains(string(b), a[:min(len(a), 1)]) {
				t.Fatalf("address %q from nowhere", a)
			}
		}
		if ev.locked != nil && ev.locked.ID == "" {
			t.Fatal("a lock without an ID")
		}
	})
}

func TestParseApplyLog(t *testing.T) {
	ev := parseApplyLog([]byte(`{"type":"apply_complete","hook":{"resource":{"addr":"terraform_data.a"}}}
{"type":"apply_complete","hook":{"resource":{"addr":"terraform_data.a"}}}
{"type":"apply_errored","hook":{"resource":{"addr":"terraform_data.b"}}}
{"type":"diagnostic","diagnostic":{"severity":"warning","summary":"ignored"}}
{"type":"diagnostic","diagnostic":{"severity":"error","summary":"Error acquiring the state lock","detail":"Lock Info:\n  ID:        1234-abcd\n  Path:      terraform.tfstate\n  Operation: OperationTypeApply\n  Who:       bob@host\n"}}`))
	if !slices.Equal(ev.changed, []string{"terraform_data.a"}) || !slices.Equal(ev.failed, []string{"terraform_data.b"}) ||
		ev.errSummary != "Error acquiring the state lock" || ev.locked == nil ||
		*ev.locked != (LockedError{ID: "1234-abcd", Who: "bob@host", Operation: "OperationTypeApply"}) {
		t.Fatalf("parsed %+v (lock %+v)", ev, ev.locked)
	}
}

// The plan JSON comes from the engine, but the redaction must hold for any
// plan: no value under a sensitivity marker, nor any copy of it elsewhere,
// survives in the redacted document.
func FuzzRedact(f *testing.F) {
	f.Add([]byte(`{"format_version":"1.2","resource_changes":[{"address":"terraform_data.db","type":"terraform_data","change":{"actions":["update"],
"before":{"input":{"password":"old-secret-1"},"output":{"password":"old-secret-1"}},
"after":{"input":{"password":"new-secret-2"}},"before_sensitive":{"input":{"password":true}},"after_sensitive":{"input":{"password":true}}}}],
"output_changes":{"pw":{"actions":["create"],"after":"new-secret-2","after_sensitive":true}},
"variables":{"db_password":{"value":"new-secret-2"}},
"configuration":{"root_module":{"variables":{"db_password":{"sensitive":true}}}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p tfjson.Plan
		if json.Unmarshal(b, &p) != nil {
			return
		}
		out, err := Redact(&p, strings.Repeat("a", 64))
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("redacted plan is not JSON: %v", err)
		}
		for _, sec := range knownSecrets(&p) {
			leaves(doc, func(v string) {
				if v == sec || len(sec) >= minContained && strings.Contains(v, sec) {
					t.Fatalf("secret %q survives as %q", sec, v)
				}
			})
		}
	})
}

func FuzzReadPlanRef(f *testing.F) {
	f.Add([]byte(`{"changeId":"c","planSha256":"` + strings.Repeat("a", 64) + `","planArtifact":"sha256:x"}`))
	f.Add([]byte(`{}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "plan.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		ref, err := ReadPlanRef(p)
		if err == nil && (ref.ChangeID == "" || len(ref.PlanSHA256) != 64 || ref.PlanArtifact == "") {
			t.Fatalf("accepted an incomplete reference %+v", ref)
		}
	})
}

func FuzzLoadCatalog(f *testing.F) {
	f.Add([]byte("riskyResourceTypes: [aws_db_*]\nenvironments:\n  prod: {riskClass: high}\n"))
	f.Add([]byte("riskyResourceTypes: ['[']\n"))
	f.Add([]byte("environments: {prod: {riskClass: extreme}}\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "catalog.yaml")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadCatalog(p)
		if err != nil {
			return
		}
		for _, e := range mergeEntries(c.Environments, c.Stacks) {
			if e.RiskClass != "" && riskRank(e.RiskClass) < 0 {
				t.Fatalf("accepted risk class %q", e.RiskClass)
			}
		}
		c.risky("aws_db_instance") // a bad pattern would have been refused
	})
}

func TestRedactMasksCopies(t *testing.T) {
	var p tfjson.Plan
	if err := json.Unmarshal([]byte(`{"format_version":"1.2","resource_changes":[{"address":"terraform_data.db","type":"terraform_data","change":{"actions":["update"],
"before":{"input":{"password":"old-secret-1","size":"small"},"output":{"password":"old-secret-1","dsn":"pg://u:old-secret-1@h"}},
"after":{"input":{"password":"new-secret-2","size":"large"}},
"before_sensitive":{"input":{"password":true}},"after_sensitive":{"input":{"password":true}}}}]}`), &p); err != nil {
		t.Fatal(err)
	}
	out, err := Redact(&p, strings.Repeat("a", 64))
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if strings.Contains(s, "old-secret-1") || strings.Contains(s, "new-secret-2") {
		t.Fatalf("a secret survived:\n%s", s)
	}
	if !strings.Contains(s, `"size": "large"`) || strings.Count(s, Masked) != 4 {
		t.Fatalf("redacted too much or too little:\n%s", s)
	}
}
