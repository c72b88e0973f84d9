package podspec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/wasmpod/wasmpod/internal/regfile"
)

// MaxSpecBytes is the largest spec Parse accepts (Kubernetes keeps objects under 1.5 MB too). It
// keeps a spec posted to the admin API from tying up the host.
const MaxSpecBytes = 1 << 20

// MaxPodFileBytes bounds the pod file Load reads (and the host's watcher re-reads, see
// ReadPodFile): a larger file is refused from its size, unread, so a huge file put in its place
// cannot take the host's memory. It is MaxSpecBytes: Parse refuses a larger spec anyway.
const MaxPodFileBytes = MaxSpecBytes

// maxNodes bounds the YAML nodes visited once aliases are expanded, so a small file of nested
// aliases ("billion laughs") cannot make decoding explode.
const maxNodes = 100_000

// maxMergeDepth bounds chains of merge keys (<<: *a where a itself merges another mapping).
const maxMergeDepth = 16

// Parse reads a pod spec from YAML (JSON is YAML too, so Marshal's output is accepted). Decoding
// is strict: an unknown field, a value of the wrong type, a duplicate field, more than one
// document or an empty document is an error. Defaults are applied and the spec is validated
// without touching the filesystem (see Load and [Pod.Validate] for the checks that do). baseDir
// becomes [Pod.BaseDir], the directory relative paths are resolved against.
//
// On failure Parse returns a nil Pod and a *SpecError listing every problem, each as
// "line N: field.path: message", wrapping ErrInvalidSpec.
func Parse(data []byte, baseDir string) (*Pod, error) {
	return parse(data, "", baseDir, ValidateOptions{})
}

// Load reads the spec file at path like Parse, with paths relative to the file's directory and
// errors as "path:line: field.path: message". It also checks the filesystem: every wasm file must
// exist and match its sha256, every hostPath directory must be usable (ValidateOptions with
// CheckFiles and VerifyDigests). A file that cannot be read gives the os error, wrapped.
func Load(path string) (*Pod, error) {
	data, err := ReadPodFile(path)
	var se *SpecError
	if errors.As(err, &se) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("podspec: %w", err)
	}
	return parse(data, path, filepath.Dir(path), ValidateOptions{CheckFiles: true, VerifyDigests: true})
}

// ReadPodFile reads the pod file at path: a regular file (through symlinks) of at most
// MaxPodFileBytes. A larger one is refused from its size, unread, with a *SpecError (wrapping
// ErrInvalidSpec) naming the file, its size and the limit; other errors are the os error.
func ReadPodFile(path string) ([]byte, error) {
	data, err := regfile.Read(path, MaxPodFileBytes)
	var tl *regfile.TooLargeError
	if !errors.As(err, &tl) {
		return data, err
	}
	ps := &problems{file: path}
	if tl.Grew {
		ps.add(0, "", "pod file grew past the limit MaxPodFileBytes=%d while read", MaxPodFileBytes)
	} else {
		ps.add(0, "", "pod file is %d bytes; the limit is MaxPodFileBytes=%d", tl.Size, MaxPodFileBytes)
	}
	return nil, ps.err()
}

func parse(data []byte, file, baseDir string, opts ValidateOptions) (*Pod, error) {
	ps := &problems{file: file}
	root := readDocument(data, ps)
	if root == nil {
		return nil, ps.err()
	}
	d := &decoder{probs: ps, lines: map[string]int{"": root.Line}, failed: map[string]bool{}}
	p := &Pod{BaseDir: baseDir}
	d.value(root, "", reflect.ValueOf(p).Elem())
	p.src = &source{file: file, lines: d.lines}
	p.ApplyDefaults()
	(&validator{p: p, probs: ps, opts: opts, failed: d.failed}).run()
	if err := ps.err(); err != nil {
		return nil, err
	}
	return p, nil
}

// readDocument parses data and returns the root node of its only document, or nil after adding
// the problem to ps.
func readDocument(data []byte, ps *problems) *yaml.Node {
	if len(data) > MaxSpecBytes {
		ps.add(0, "", "spec is %d bytes; the limit is %d", len(data), MaxSpecBytes)
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for len(docs) < 2 {
		doc := new(yaml.Node)
		err := decodeYAML(dec, doc)
		if err == io.EOF {
			break
		}
		if err != nil {
			addYAMLError(ps, err)
			return nil
		}
		if len(doc.Content) == 0 || isNull(doc.Content[0]) {
			continue // an empty document, e.g. a trailing "---", holds nothing
		}
		docs = append(docs, doc)
	}
	switch len(docs) {
	case 0:
		ps.add(0, "", "empty spec: expected a Pod (apiVersion: %s, kind: %s)", APIVersion, KindPod)
		return nil
	case 1:
		return docs[0].Content[0]
	default:
		ps.add(docs[1].Line, "", "a spec holds exactly one Pod, but a second YAML document starts here")
		return nil
	}
}

// decodeYAML runs the YAML parser, turning a panic inside it into an error: a malformed file
// must never take the host down.
func decodeYAML(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: parser failure: %v", r)
		}
	}()
	return dec.Decode(n)
}

var yamlLineError = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func addYAMLError(ps *problems, err error) {
	msg := err.Error()
	if m := yamlLineError.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		ps.add(line, "", "invalid YAML: %s", m[2])
		return
	}
	ps.add(0, "", "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

// decoder walks a YAML node tree into Go values, driven by the values' types and JSON tags, and
// records every problem instead of stopping at the first.
type decoder struct {
	probs  *problems
	lines  map[string]int  // field path -> line, for Validate
	failed map[string]bool // paths whose values could not be decoded
	nodes  int
	tooBig bool
}

// fail records a problem with the value at path; Validate stays quiet about that path.
func (d *decoder) fail(line int, path, format string, args ...any) {
	d.probs.add(line, path, format, args...)
	d.failed[path] = true
}

// count charges n nodes to the budget and reports whether decoding may go on.
func (d *decoder) count(n int, line int) bool {
	d.nodes += n
	if d.nodes <= maxNodes {
		return true
	}
	if !d.tooBig {
		d.tooBig = true
		d.fail(line, "", "spec too large: more than %d YAML nodes once aliases are expanded", maxNodes)
	}
	return false
}

func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

var nodeDecoderType = reflect.TypeFor[nodeDecoder]()

// value decodes n into v, which must be settable.
func (d *decoder) value(n *yaml.Node, path string, v reflect.Value) {
	line := n.Line
	n = resolve(n)
	if n == nil || n.Kind == yaml.AliasNode {
		d.fail(line, path, "alias cannot be resolved")
		return
	}
	if !d.count(1, line) {
		return
	}
	if isNull(n) {
		// An empty value leaves the field unset, as in Kubernetes, except that an empty
		// object-valued field ("emptyDir:", "livenessProbe:") is present with all its defaults.
		if v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return
	}
	if reflect.PointerTo(v.Type()).Implements(nodeDecoderType) {
		if err := v.Addr().Interface().(nodeDecoder).decodeNode(n); err != nil {
			d.fail(n.Line, path, "%s", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		d.value(n, path, e.Elem())
		v.Set(e)
	case reflect.Struct:
		d.object(n, path, v)
	case reflect.Map:
		d.stringMap(n, path, v)
	case reflect.Slice:
		d.list(n, path, v)
	case reflect.String:
		if s, ok := d.str(n, path); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			hint := ""
			if n.ShortTag() == "!!str" && (strings.EqualFold(n.Value, "true") || strings.EqualFold(n.Value, "false")) {
				hint = " (remove the quotes)"
			}
			d.fail(n.Line, path, "expected true or false, got %s%s", describe(n), hint)
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			d.fail(n.Line, path, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			hint := ""
			if _, err := strconv.ParseInt(n.Value, 10, 64); err == nil && n.ShortTag() == "!!str" {
				hint = " (remove the quotes)"
			}
			d.fail(n.Line, path, "expected an integer, got %s%s", describe(n), hint)
			return
		}
		var i int64
		if err := n.Decode(&i); err != nil || v.OverflowInt(i) {
			d.fail(n.Line, path, "integer %s is out of range", truncate(n.Value))
			return
		}
		v.SetInt(i)
	default:
		panic("podspec: no decoder for field type " + v.Type().String())
	}
}

// str decodes a string scalar.
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		hint := ""
		if n.Kind == yaml.ScalarNode && !isNull(n) {
			hint = fmt.Sprintf(" (quote it: %s)", strconv.Quote(truncate(n.Value)))
		}
		d.fail(n.Line, path, "expected a string, got %s%s", describe(n), hint)
		return "", false
	}
	if !utf8.ValidString(n.Value) {
		d.fail(n.Line, path, "string is not valid UTF-8")
		return "", false
	}
	return n.Value, true
}

// object decodes a mapping into the struct v, field by field.
func (d *decoder) object(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(n.Line, path, "expected a mapping, got %s", describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	for _, e := range d.entries(n, path, nil) {
		name := e.key.Value
		fp := keyPath(path, name)
		idx := -1
		for _, f := range fields {
			if f.name == name {
				idx = f.index
				break
			}
		}
		if idx < 0 {
			known := make([]string, len(fields))
			for i, f := range fields {
				known[i] = f.name
			}
			d.probs.add(e.key.Line, fp, "%s", unknownFieldMsg(name, known))
			continue
		}
		d.lines[fp] = e.key.Line
		d.value(e.val, fp, v.Field(idx))
	}
}

// stringMap decodes a mapping of strings; an empty mapping leaves the map nil.
func (d *decoder) stringMap(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(n.Line, path, "expected a mapping of strings, got %s", describe(n))
		return
	}
	entries := d.entries(n, path, nil)
	if len(entries) == 0 {
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(entries))
	for _, e := range entries {
		kp := keyPath(path, e.key.Value)
		d.lines[kp] = e.key.Line
		if !utf8.ValidString(e.key.Value) {
			d.fail(e.key.Line, kp, "key is not valid UTF-8")
			continue
		}
		val := resolve(e.val)
		if val == nil || !d.count(1, e.key.Line) {
			continue
		}
		if isNull(val) {
			d.fail(val.Line, kp, "expected a string, got null (write \"\" for an empty value)")
			continue
		}
		if s, ok := d.str(val, kp); ok {
			m.SetMapIndex(reflect.ValueOf(e.key.Value), reflect.ValueOf(s))
		}
	}
	if m.Len() > 0 {
		v.Set(m)
	}
}

// list decodes a sequence; an empty sequence leaves the slice nil.
func (d *decoder) list(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n.Line, path, "expected a list, got %s", describe(n))
		return
	}
	if len(n.Content) == 0 {
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		ip := fmt.Sprintf("%s[%d]", path, i)
		d.lines[ip] = item.Line
		d.value(item, ip, s.Index(i))
	}
	v.Set(s)
}

type entry struct{ key, val *yaml.Node }

// entries returns the key/value pairs of a mapping with YAML merge keys (<<: *defaults) expanded:
// a key written in the mapping wins over a merged one, and an earlier merged mapping wins over a
// later one. A duplicate key is a problem. ancestry holds the mappings being merged into, to catch
// a mapping that merges itself.
func (d *decoder) entries(n *yaml.Node, path string, ancestry []*yaml.Node) []entry {
	if !d.count(len(n.Content)/2, n.Line) {
		return nil
	}
	var out []entry
	seen := make(map[string]int, len(n.Content)/2)
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		if k == nil || k.Kind != yaml.ScalarNode {
			d.fail(n.Content[i].Line, path, "a field name must be a string, got %s", describeOrAlias(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			merges = append(merges, n.Content[i+1])
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(k.Line, keyPath(path, k.Value), "duplicate field %q (first set at line %d)", truncate(k.Value), first)
			continue
		}
		seen[k.Value] = k.Line
		out = append(out, entry{k, n.Content[i+1]})
	}
	if len(merges) == 0 {
		return out
	}
	ancestry = append(ancestry, n)
	for _, m := range merges {
		line := m.Line
		m = resolve(m)
		var sources []*yaml.Node
		switch {
		case m != nil && m.Kind == yaml.MappingNode:
			sources = []*yaml.Node{m}
		case m != nil && m.Kind == yaml.SequenceNode:
			for _, s := range m.Content {
				sources = append(sources, resolve(s))
			}
		default:
			d.fail(line, path, "a merge (<<) takes a mapping or a list of mappings, got %s", describeOrAlias(m))
			continue
		}
		for _, s := range sources {
			if s == nil || s.Kind != yaml.MappingNode {
				d.fail(line, path, "a merge (<<) takes a mapping or a list of mappings, got %s", describeOrAlias(s))
				continue
			}
			if containsNode(ancestry, s) {
				d.fail(line, path, "a merge (<<) includes the mapping it is in")
				continue
			}
			if len(ancestry) >= maxMergeDepth {
				d.fail(line, path, "merges (<<) are nested more than %d deep", maxMergeDepth)
				continue
			}
			for _, e := range d.entries(s, path, ancestry) {
				if _, dup := seen[e.key.Value]; !dup {
					seen[e.key.Value] = e.key.Line
					out = append(out, e)
				}
			}
		}
	}
	return out
}

func containsNode(list []*yaml.Node, n *yaml.Node) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

func describeOrAlias(n *yaml.Node) string {
	if n == nil {
		return "an unresolvable alias"
	}
	return describe(n)
}

// describe names a node's type and value for an error message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return "null"
	case "!!str":
		return fmt.Sprintf("string %q", truncate(n.Value))
	case "!!int", "!!float":
		return "number " + truncate(n.Value)
	case "!!bool":
		return "boolean " + n.Value
	default:
		return fmt.Sprintf("%s %q", tag, truncate(n.Value))
	}
}

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// keyPath appends a field or map key to a path: spec.modules, config.port, or, for a key that
// is not a plain word, labels["app.kubernetes.io/name"].
func keyPath(path, key string) string {
	if !plainKey.MatchString(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// parentPath removes the last element of a path made by keyPath or list.
func parentPath(p string) string {
	if strings.HasSuffix(p, `"]`) {
		if i := strings.LastIndex(p, `["`); i >= 0 {
			return p[:i]
		}
	}
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

type fieldInfo struct {
	name  string
	index int
}

var fieldCache sync.Map // reflect.Type -> []fieldInfo

// fieldsOf lists the fields of a struct type by their JSON names, skipping json:"-" and
// unexported fields.
func fieldsOf(t reflect.Type) []fieldInfo {
	if c, ok := fieldCache.Load(t); ok {
		return c.([]fieldInfo)
	}
	var fs []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fs = append(fs, fieldInfo{name, i})
	}
	fieldCache.Store(t, fs)
	return fs
}
