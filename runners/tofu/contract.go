package tofu

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"evident.dev/evident/evidence"
)

// Catalog is the platform's metadata about environments, stacks and risky
// resource types, read from a YAML file in the infra-live repository:
//
//	riskyResourceTypes: [aws_db_instance, "aws_iam_*"]
//	environments:
//	  prod: {riskClass: high, requiresApprovalFrom: [platform-infra], manualApproval: true}
//	stacks:
//	  prod/aws/account-payments-prod/ap-southeast-1/rds-orders:
//	    riskClass: critical
//	    requiresApprovalFrom: [database-owners]
//	    dataClass: pii
type Catalog struct {
	// RiskyResourceTypes are resource types (path.Match patterns) whose
	// changes make a plan's resources high-risk.
	RiskyResourceTypes []string                `yaml:"riskyResourceTypes"`
	Environments       map[string]CatalogEntry `yaml:"environments"`
	Stacks             map[string]CatalogEntry `yaml:"stacks"` // keyed by the path under stacks/
	EvidenceRequired   []string                `yaml:"evidenceRequired"`
}

// CatalogEntry is what the catalog says about one environment or stack.
type CatalogEntry struct {
	RiskClass            string   `yaml:"riskClass"`
	RequiresApprovalFrom []string `yaml:"requiresApprovalFrom"`
	ManualApproval       bool     `yaml:"manualApproval"`
	DataClass            string   `yaml:"dataClass"`
	Service              string   `yaml:"service"`
}

// LoadCatalog reads a catalog file. Unknown fields are refused, so a typo
// does not silently drop a risky type.
func LoadCatalog(file string) (*Catalog, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	var c Catalog
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("catalog %s: %w", file, err)
	}
	for _, p := range c.RiskyResourceTypes {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("catalog %s: riskyResourceTypes: bad pattern %q", file, p)
		}
	}
	for name, e := range mergeEntries(c.Environments, c.Stacks) {
		if e.RiskClass != "" && riskRank(e.RiskClass) < 0 {
			return nil, fmt.Errorf("catalog %s: %s: riskClass %q: want low, medium, high or critical", file, name, e.RiskClass)
		}
	}
	return &c, nil
}

func mergeEntries(ms ...map[string]CatalogEntry) map[string]CatalogEntry {
	out := map[string]CatalogEntry{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// risky reports whether a resource type is in the catalog's risky list.
func (c *Catalog) risky(typ string) bool {
	if c == nil {
		return false
	}
	for _, p := range c.RiskyResourceTypes {
		if ok, _ := path.Match(p, typ); ok {
			return true
		}
	}
	return false
}

var riskClasses = []string{"low", "medium", "high", "critical"}

func riskRank(c string) int { return slices.Index(riskClasses, c) }

// maxRisk returns the higher of two risk classes ("" is lowest).
func maxRisk(a, b string) string {
	if riskRank(b) > riskRank(a) {
		return b
	}
	return a
}

// Change is the change contract as far as the runner knows it: what every
// record of one run carries.
type Change struct {
	ID                   string
	Actor                string // who runs the change (the CI actor)
	Author               string // who wrote it
	Source               evidence.Source
	TargetBranch         string
	Target               evidence.Target
	StackPath            string // env/cloud/account/region/stack
	RiskClass            string
	RequiresApprovalFrom []string
	ManualApproval       bool
	EvidenceRequired     []string
}

// maxChangeID is the longest changeId a record may carry.
const maxChangeID = 128

// DefaultEvidenceRequired is the evidence an IaC change must leave.
var DefaultEvidenceRequired = []string{"plan", "policyDecision", "approvalSnapshot", "applyLog", "postApplyVerification"}

// DeriveChange builds the change contract from the stack directory's path
// (…/stacks/<env>/<cloud>/<account>/<region>/<stack>), the catalog (may be
// nil) and the CI environment (variables as a map: the library reads no
// environment itself). Flags the caller set win over CI variables:
// EVIDENT_CHANGE_ID, EVIDENT_REPOSITORY, EVIDENT_PULL_REQUEST,
// EVIDENT_COMMIT_SHA, EVIDENT_BRANCH, EVIDENT_TARGET_BRANCH, EVIDENT_AUTHOR,
// EVIDENT_ACTOR, then GitHub Actions' and GitLab CI's own variables.
func DeriveChange(stackDir string, cat *Catalog, ci map[string]string) (Change, error) {
	abs, err := filepath.Abs(stackDir)
	if err != nil {
		return Change{}, err
	}
	parts := strings.Split(filepath.ToSlash(abs), "/")
	i := slices.Index(parts, "stacks")
	for j := i + 1; i >= 0 && j < len(parts); j++ {
		if parts[j] == "stacks" { // the innermost stacks/ directory
			i = j
		}
	}
	if i < 0 || len(parts)-i-1 != 5 {
		return Change{}, fmt.Errorf("stack %s: the path must end in stacks/<env>/<cloud>/<account>/<region>/<stack>", stackDir)
	}
	p := parts[i+1:]
	ch := Change{
		StackPath: strings.Join(p, "/"),
		Target: evidence.Target{
			// target.stack is the whole stack path, as trust scopes and
			// audit queries name stacks.
			Environment: p[0], Cloud: p[1], Account: p[2], Region: p[3], Stack: strings.Join(p, "/"),
		},
	}
	get := func(names ...string) string {
		for _, n := range names {
			if v := strings.TrimSpace(ci[n]); v != "" {
				return v
			}
		}
		return ""
	}
	ch.Source = evidence.Source{
		Repository: get("EVIDENT_REPOSITORY", "GITHUB_REPOSITORY", "CI_PROJECT_PATH"),
		CommitSHA:  strings.ToLower(get("EVIDENT_COMMIT_SHA", "GITHUB_SHA", "CI_COMMIT_SHA")),
		Branch:     get("EVIDENT_BRANCH", "GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "CI_COMMIT_REF_NAME"),
	}
	pr := get("EVIDENT_PULL_REQUEST", "CI_MERGE_REQUEST_IID")
	if pr == "" {
		// GitHub: refs/pull/<n>/merge on pull_request events.
		if rest, ok := strings.CutPrefix(ci["GITHUB_REF"], "refs/pull/"); ok {
			pr, _, _ = strings.Cut(rest, "/")
		}
	}
	if pr != "" {
		n, err := strconv.Atoi(pr)
		if err != nil || n <= 0 {
			return Change{}, fmt.Errorf("pull request number %q is not a positive integer", pr)
		}
		ch.Source.PullRequest = n
	}
	ch.TargetBranch = get("EVIDENT_TARGET_BRANCH", "GITHUB_BASE_REF", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME")
	ch.Author = get("EVIDENT_AUTHOR", "GITLAB_USER_EMAIL", "GITHUB_ACTOR")
	ch.Actor = get("EVIDENT_ACTOR", "GITHUB_TRIGGERING_ACTOR", "GITHUB_ACTOR", "GITLAB_USER_EMAIL")
	if ch.Actor == "" {
		ch.Actor = ch.Author
	}
	ch.ID = get("EVIDENT_CHANGE_ID")
	if ch.ID == "" && ch.Source.Repository != "" {
		switch {
		case ch.Source.PullRequest > 0:
			ch.ID = fmt.Sprintf("%s#%d/%s", path.Base(ch.Source.Repository), ch.Source.PullRequest, ch.StackPath)
		case len(ch.Source.CommitSHA) >= 12:
			ch.ID = fmt.Sprintf("%s@%s/%s", path.Base(ch.Source.Repository), ch.Source.CommitSHA[:12], ch.StackPath)
		}
	}
	if len(ch.ID) > maxChangeID && ch.Source.Repository != "" && get("EVIDENT_CHANGE_ID") == "" {
		// A derived ID too long for a record: keep its head, name the
		// stack by digest.
		sum := sha256.Sum256([]byte(ch.StackPath))
		ch.ID = fmt.Sprintf("%s#%d/%x", path.Base(ch.Source.Repository), ch.Source.PullRequest, sum[:8])
		if len(ch.ID) > maxChangeID {
			ch.ID = ch.ID[len(ch.ID)-maxChangeID:]
		}
	}
	if len(ch.ID) > maxChangeID {
		return Change{}, fmt.Errorf("change ID %q is longer than %d bytes", ch.ID, maxChangeID)
	}
	var missing []string
	for _, m := range []struct{ v, name string }{
		{ch.ID, "change ID (EVIDENT_CHANGE_ID, or a repository with a PR or commit)"},
		{ch.Source.Repository, "repository (EVIDENT_REPOSITORY or GITHUB_REPOSITORY)"},
		{ch.Source.CommitSHA, "commit SHA (EVIDENT_COMMIT_SHA or GITHUB_SHA)"},
		{ch.Actor, "actor (EVIDENT_ACTOR or GITHUB_ACTOR)"},
	} {
		if m.v == "" {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return Change{}, fmt.Errorf("change contract incomplete: missing %s", strings.Join(missing, "; "))
	}
	ch.EvidenceRequired = DefaultEvidenceRequired
	if cat != nil {
		if len(cat.EvidenceRequired) > 0 {
			ch.EvidenceRequired = cat.EvidenceRequired
		}
		for _, e := range []CatalogEntry{cat.Environments[ch.Target.Environment], cat.Stacks[ch.StackPath]} {
			ch.RiskClass = maxRisk(ch.RiskClass, e.RiskClass)
			for _, g := range e.RequiresApprovalFrom {
				if !slices.Contains(ch.RequiresApprovalFrom, g) {
					ch.RequiresApprovalFrom = append(ch.RequiresApprovalFrom, g)
				}
			}
			ch.ManualApproval = ch.ManualApproval || e.ManualApproval
			if e.DataClass != "" {
				ch.Target.DataClass = e.DataClass
			}
			if e.Service != "" {
				ch.Target.Service = e.Service
			}
		}
	}
	return ch, nil
}

// transition starts a record of this change.
func (ch Change) transition(kind evidence.Kind) evidence.Transition {
	return evidence.Transition{
		Kind:      kind,
		ChangeID:  ch.ID,
		Actor:     ch.Actor,
		Source:    ch.Source,
		Target:    ch.Target,
		RiskClass: ch.RiskClass,
	}
}
