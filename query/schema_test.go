package query_test

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"evident.dev/evident/query"
)

const schemaGolden = "testdata/schema.graphql"

// TestSchemaGolden checks the schema the server answers introspection with
// against testdata/schema.graphql, printed as SDL, so that any change to a
// type, field, argument or description shows in review as a diff of that
// file. The schema is read back through introspection rather than from the
// Go values because introspection is what clients see.
func TestSchemaGolden(t *testing.T) {
	h := newHarness(t, query.AccessConfig{})
	q, err := os.ReadFile("testdata/graphiql-introspection.graphql")
	if err != nil {
		t.Fatal(err)
	}
	r := h.query("", string(q), nil)
	if len(r.Errors) > 0 {
		t.Fatalf("introspection: %v", r.Errors)
	}
	var res struct {
		Schema introspectedSchema `json:"__schema"`
	}
	if err := json.Unmarshal(r.Data, &res); err != nil {
		t.Fatal(err)
	}
	got := printSDL(&res.Schema)
	if *update {
		if err := os.WriteFile(schemaGolden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(schemaGolden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("the schema differs from %s: run go test ./query -run TestSchemaGolden -update and review the diff", schemaGolden)
	}
}

type introspectedSchema struct {
	QueryType  struct{ Name string }   `json:"queryType"`
	Types      []introspectedType      `json:"types"`
	Directives []introspectedDirective `json:"directives"`
}

type introspectedDirective struct {
	Name        string              `json:"name"`
	Description string              `json:"description"`
	Locations   []string            `json:"locations"`
	Args        []introspectedInput `json:"args"`
}

type introspectedType struct {
	Kind          string                  `json:"kind"`
	Name          string                  `json:"name"`
	Description   string                  `json:"description"`
	Fields        []introspectedField     `json:"fields"`
	InputFields   []introspectedInput     `json:"inputFields"`
	Interfaces    []typeRef               `json:"interfaces"`
	EnumValues    []introspectedEnumValue `json:"enumValues"`
	PossibleTypes []typeRef               `json:"possibleTypes"`
}

type introspectedField struct {
	Name              string              `json:"name"`
	Description       string              `json:"description"`
	Args              []introspectedInput `json:"args"`
	Type              typeRef             `json:"type"`
	IsDeprecated      bool                `json:"isDeprecated"`
	DeprecationReason string              `json:"deprecationReason"`
}

type introspectedEnumValue struct {
	Name              string `json:"name"`
	Description       string `json:"description"`
	IsDeprecated      bool   `json:"isDeprecated"`
	DeprecationReason string `json:"deprecationReason"`
}

type introspectedInput struct {
	Name         string  `json:"name"`
	Description  string  `json:"description"`
	Type         typeRef `json:"type"`
	DefaultValue *string `json:"defaultValue"`
}

type typeRef struct {
	Kind   string   `json:"kind"`
	Name   string   `json:"name"`
	OfType *typeRef `json:"ofType"`
}

func (r typeRef) String() string {
	switch r.Kind {
	case "NON_NULL":
		return r.OfType.String() + "!"
	case "LIST":
		return "[" + r.OfType.String() + "]"
	}
	return r.Name
}

// builtIn is what every graphql-go schema holds whatever this package
// defines, left out of the golden so that it shows only this package's work.
func builtIn(name string) bool {
	switch name {
	case "String", "Int", "Float", "Boolean", "ID", "include", "skip", "deprecated", "specifiedBy":
		return true
	}
	return strings.HasPrefix(name, "__")
}

// sortByName sorts what introspection lists: graphql-go lists types,
// arguments, input fields, enum values and an interface's fields in map
// order, which would make the golden flap.
func sortByName[T any](s []T, name func(T) string) {
	slices.SortFunc(s, func(x, y T) int { return cmp.Compare(name(x), name(y)) })
}

func typeNames(refs []typeRef) []string {
	names := make([]string, len(refs))
	for i, r := range refs {
		names[i] = r.Name
	}
	slices.Sort(names)
	return names
}

// printSDL prints the schema in SDL, every list sorted by name.
func printSDL(s *introspectedSchema) string {
	var b strings.Builder
	fmt.Fprintf(&b, "schema {\n  query: %s\n}\n", s.QueryType.Name)
	sortByName(s.Directives, func(d introspectedDirective) string { return d.Name })
	for _, d := range s.Directives {
		if builtIn(d.Name) {
			continue
		}
		b.WriteString("\n")
		description(&b, "", d.Description)
		fmt.Fprintf(&b, "directive @%s%s on %s\n", d.Name, args(d.Args), strings.Join(d.Locations, " | "))
	}
	sortByName(s.Types, func(t introspectedType) string { return t.Name })
	for _, t := range s.Types {
		if builtIn(t.Name) {
			continue
		}
		b.WriteString("\n")
		description(&b, "", t.Description)
		printType(&b, &t)
	}
	return b.String()
}

func printType(b *strings.Builder, t *introspectedType) {
	switch t.Kind {
	case "SCALAR":
		fmt.Fprintf(b, "scalar %s\n", t.Name)
	case "UNION":
		fmt.Fprintf(b, "union %s = %s\n", t.Name, strings.Join(typeNames(t.PossibleTypes), " | "))
	case "ENUM":
		fmt.Fprintf(b, "enum %s {\n", t.Name)
		sortByName(t.EnumValues, func(v introspectedEnumValue) string { return v.Name })
		for _, v := range t.EnumValues {
			description(b, "  ", v.Description)
			fmt.Fprintf(b, "  %s%s\n", v.Name, deprecated(v.IsDeprecated, v.DeprecationReason))
		}
		b.WriteString("}\n")
	case "INPUT_OBJECT":
		fmt.Fprintf(b, "input %s {\n", t.Name)
		sortByName(t.InputFields, inputName)
		for _, f := range t.InputFields {
			description(b, "  ", f.Description)
			fmt.Fprintf(b, "  %s\n", input(f))
		}
		b.WriteString("}\n")
	default:
		keyword := "type"
		if t.Kind == "INTERFACE" {
			keyword = "interface"
		}
		fmt.Fprintf(b, "%s %s", keyword, t.Name)
		if len(t.Interfaces) > 0 {
			fmt.Fprintf(b, " implements %s", strings.Join(typeNames(t.Interfaces), " & "))
		}
		b.WriteString(" {\n")
		sortByName(t.Fields, func(f introspectedField) string { return f.Name })
		for _, f := range t.Fields {
			description(b, "  ", f.Description)
			fmt.Fprintf(b, "  %s%s: %s%s\n", f.Name, args(f.Args), f.Type, deprecated(f.IsDeprecated, f.DeprecationReason))
		}
		b.WriteString("}\n")
	}
}

func inputName(in introspectedInput) string { return in.Name }

func input(in introspectedInput) string {
	s := in.Name + ": " + in.Type.String()
	if in.DefaultValue != nil {
		s += " = " + *in.DefaultValue
	}
	return s
}

// args prints arguments on one line, each description as an inline string
// before its argument, so a field stays on one line of the golden.
func args(in []introspectedInput) string {
	if len(in) == 0 {
		return ""
	}
	sortByName(in, inputName)
	parts := make([]string, len(in))
	for i, a := range in {
		parts[i] = input(a)
		if a.Description != "" {
			parts[i] = strconv.Quote(a.Description) + " " + parts[i]
		}
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func deprecated(is bool, reason string) string {
	if !is {
		return ""
	}
	return " @deprecated(reason: " + strconv.Quote(reason) + ")"
}

func description(b *strings.Builder, indent, d string) {
	if d == "" {
		return
	}
	fmt.Fprintf(b, "%s\"\"\"\n", indent)
	for line := range strings.Lines(d) {
		fmt.Fprintf(b, "%s%s", indent, strings.TrimSuffix(line, "\n"))
		b.WriteString("\n")
	}
	fmt.Fprintf(b, "%s\"\"\"\n", indent)
}
