package policies

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"evident.dev/evident/evidence"
)

//go:embed rego
var bundled embed.FS

// Query is the one query the server evaluates per record: the set of every
// rule's decision (rego/evident/decisions.rego).
const Query = "data.evident.decisions"

// Source says where operators' policies come from, in addition to the
// bundled ones. At most one of Dir and Bundle is set.
type Source struct {
	// Dir is a directory of Rego modules (*.rego, tests excluded), read
	// recursively. Rules are packages under evident.rules.
	Dir string
	// Bundle is an OPA bundle: a .tar.gz file or a bundle directory. Its
	// data documents are loaded too.
	Bundle string
}

// Set is a loaded, compiled policy set with its query prepared. Safe for
// concurrent use.
type Set struct {
	info  evidence.PolicySet
	query rego.PreparedEvalQuery
	memo  *memo // nil when the set cannot be memoised
	reads reads // the input members the rules read; nil: all
}

// file is one file of a policy set.
type file struct {
	path string
	raw  []byte
}

// Load reads the bundled policies and those of src, compiles them and
// prepares the query.
func Load(ctx context.Context, src Source) (*Set, error) {
	files, err := bundledFiles(false)
	if err != nil {
		return nil, err
	}
	var data map[string]any
	switch {
	case src.Dir != "" && src.Bundle != "":
		return nil, errors.New("policies: set a directory or a bundle, not both")
	case src.Dir != "":
		more, err := dirFiles(src.Dir)
		if err != nil {
			return nil, err
		}
		files = append(files, more...)
	case src.Bundle != "":
		more, bdata, err := bundleFiles(src.Bundle)
		if err != nil {
			return nil, err
		}
		files, data = append(files, more...), bdata
	}
	return compile(ctx, files, data)
}

func compile(ctx context.Context, files []file, data map[string]any) (*Set, error) {
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.path, b.path) })
	modules := map[string]*ast.Module{}
	var sums bytes.Buffer
	info := evidence.PolicySet{}
	for i, f := range files {
		if i > 0 && files[i-1].path == f.path {
			return nil, fmt.Errorf("policies: two files at %s", f.path)
		}
		sum := sha256.Sum256(f.raw)
		h := hex.EncodeToString(sum[:])
		fmt.Fprintf(&sums, "%s  %s\n", h, f.path)
		info.Modules = append(info.Modules, evidence.PolicyModule{Path: f.path, SHA256: h})
		if path.Ext(f.path) != ".rego" {
			continue // the data document, loaded below
		}
		m, err := ast.ParseModuleWithOpts(f.path, string(f.raw), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, fmt.Errorf("policies: %w", err)
		}
		modules[f.path] = m
	}
	sum := sha256.Sum256(sums.Bytes())
	info.BundleSHA256 = hex.EncodeToString(sum[:])
	c := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(modules); c.Failed() {
		return nil, fmt.Errorf("policies: compile: %w", c.Errors)
	}
	opts := []func(*rego.Rego){rego.Query(Query), rego.Compiler(c)}
	if data != nil {
		opts = append(opts, rego.Store(inmem.NewFromObject(data)))
	}
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policies: compile: %w", err)
	}
	s := &Set{info: info, query: pq}
	if paths, ok := memoPaths(c); ok {
		s.memo = newMemo(paths, memoSize)
		s.reads = readsOf(paths)
	}
	return s, nil
}

// Info is the set's digest and files, as a trust.updated entry records it.
func (s *Set) Info() evidence.PolicySet {
	out := s.info
	out.Modules = slices.Clone(s.info.Modules)
	return out
}

// Digest is the bundleSha256 every decision of this set carries.
func (s *Set) Digest() string { return s.info.BundleSHA256 }

// bundledFiles returns the embedded modules, with or without their tests.
func bundledFiles(tests bool) ([]file, error) {
	var out []file
	err := fs.WalkDir(bundled, "rego", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".rego" || strings.HasSuffix(p, "_test.rego") && !tests {
			return err
		}
		raw, err := bundled.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, file{path: strings.TrimPrefix(p, "rego/"), raw: raw})
		return nil
	})
	return out, err
}

// dirFiles reads the Rego modules under dir, but for tests, as
// "operator/<relative path>".
func dirFiles(dir string) ([]file, error) {
	var out []file
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".rego" || strings.HasSuffix(p, "_test.rego") {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, file{path: "operator/" + filepath.ToSlash(rel), raw: raw})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("policies: read %s: %w", dir, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("policies: no Rego modules in %s", dir)
	}
	return out, nil
}

// bundleFiles reads an OPA bundle's modules, as "bundle/<path>", and its
// data, whose canonical JSON counts in the digest as "bundle/data.json".
func bundleFiles(p string) ([]file, map[string]any, error) {
	b, err := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).AsBundle(p)
	if err != nil {
		return nil, nil, fmt.Errorf("policies: bundle %s: %w", p, err)
	}
	var out []file
	for _, m := range b.Modules {
		if strings.HasSuffix(m.Path, "_test.rego") {
			continue
		}
		out = append(out, file{path: "bundle/" + strings.TrimPrefix(filepath.ToSlash(m.Path), "/"), raw: m.Raw})
	}
	if len(b.Data) > 0 {
		raw, err := json.Marshal(b.Data) // map keys sorted: canonical enough to hash
		if err != nil {
			return nil, nil, fmt.Errorf("policies: bundle %s data: %w", p, err)
		}
		out = append(out, file{path: "bundle/data.json", raw: raw})
	}
	return out, b.Data, nil
}
