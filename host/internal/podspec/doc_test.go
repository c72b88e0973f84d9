package podspec

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestPodSpecDoc checks docs/podspec.md against the decoder: every struct type the decoder
// reaches from Pod has a "### Type" section whose table has one row per field (by its YAML
// name) with its type, default and example filled in, and no row for a field that does not
// exist; every YAML example in it parses.
func TestPodSpecDoc(t *testing.T) {
	b, err := os.ReadFile("../../../docs/podspec.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	sections := map[string]string{} // type name -> section text
	for _, part := range strings.Split(doc, "\n### ")[1:] {
		name, body, _ := strings.Cut(part, "\n")
		sections[strings.TrimSpace(name)] = body
	}
	row := regexp.MustCompile("(?m)^\\| `([A-Za-z0-9]+)` \\|(.*)\\|\\s*$")
	seen := map[reflect.Type]bool{}
	var visit func(typ reflect.Type)
	visit = func(typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] || typ.PkgPath() != reflect.TypeFor[Pod]().PkgPath() {
			return
		}
		seen[typ] = true
		body, ok := sections[typ.Name()]
		if !ok {
			t.Errorf("docs/podspec.md has no section \"### %s\"", t.Name())
			return
		}
		documented := map[string]bool{}
		for _, m := range row.FindAllStringSubmatch(body, -1) {
			cells := strings.Split(m[2], " | ")
			if len(cells) != 4 {
				t.Errorf("%s.%s: want 5 cells (field, type, default, example, meaning), got %d", typ.Name(), m[1], len(cells)+1)
			}
			for _, c := range cells {
				if strings.TrimSpace(c) == "" {
					t.Errorf("%s.%s: an empty cell", typ.Name(), m[1])
				}
			}
			documented[m[1]] = true
		}
		for _, f := range fieldsOf(typ) {
			if !documented[f.name] {
				t.Errorf("docs/podspec.md section %s has no row for field %q", typ.Name(), f.name)
			}
			delete(documented, f.name)
			visit(typ.Field(f.index).Type)
		}
		for name := range documented {
			t.Errorf("docs/podspec.md section %s documents %q, which the decoder does not know", typ.Name(), name)
		}
	}
	visit(reflect.TypeFor[Pod]())
	if len(seen) < 15 {
		t.Fatalf("walked only %d types", len(seen))
	}
	examples := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(doc, -1)
	if len(examples) == 0 {
		t.Fatal("no YAML example")
	}
	for _, ex := range examples {
		if _, err := Parse([]byte(ex[1]), ""); err != nil {
			t.Errorf("example does not parse: %v\n%s", err, ex[1])
		}
	}
}
