// Package scaffold writes a new plugin for `wasmpod init`: its source in one of six languages,
// the build command, a pod spec that serves it through ingress, a test and a README whose
// commands a stranger runs as written, outside this repository. The SDK a native plugin needs
// is written into the plugin (the wasmpod SDKs are not published to a registry): Go's as a
// module the plugin's go.mod replaces, C's two files beside the source, Rust's as a path crate,
// AssemblyScript's as a file: package. Extism plugins take their PDK from the registries (go-pdk
// from the Go module proxy, @extism/as-pdk from npm).
package scaffold

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"
)

//go:embed sdk.txt
var sdkArchive []byte

// Languages are the values of --lang, in the order the help lists them.
var Languages = []string{"go", "c", "rust", "assemblyscript", "extism-go", "extism-as"}

// Roles are the roles init scaffolds, every role of a pod spec (podspec.Roles):
//   - main: served through ingress;
//   - sidecar, ambassador, adapter: a helper and the main it serves in one file (pod.yaml runs it
//     twice; main's config names the helper, which main reaches with a pod-local call);
//   - leaf and merge: a scatter/gather leaf whose file also serves as the merge, served through
//     ingress by a one-shard scatter (merge scaffolds the same plugin as leaf);
//   - stage: a work-queue stage, with a one-stage pipeline.
var Roles = []string{"main", "sidecar", "ambassador", "adapter", "leaf", "merge", "stage"}

// helperRoles are the roles that serve main.
var helperRoles = []string{"sidecar", "ambassador", "adapter"}

// Options say what to scaffold.
type Options struct {
	Lang string // one of Languages
	Role string // one of Roles
	Dir  string // the new plugin's directory: missing or empty
}

// ErrNotEmpty: the target directory already holds files.
var ErrNotEmpty = errors.New("directory is not empty")

// data is what the templates see.
type data struct {
	language
	Name   string // the plugin's name: a DNS label made of the directory's name
	Crate  string // Name as a Rust crate name
	Lang   string
	Role   string
	Extism bool   // an Extism plugin (abi: extism, its function named in pod.yaml)
	Call   string // what test.sh calls: the Extism function, or the native role
	Leaf   bool   // role leaf (or merge): a leaf that also serves as the merge
	Helper bool   // role sidecar, ambassador or adapter: the helper and its main in one file
	Export string // the native handler export: wasmpod_handle, wasmpod_leaf or wasmpod_stage
	What   string // what the plugin is, for comments: "main module", ...
	Unit   string // what it answers, for comments: "request", ...
	// MainWasm is the main module's file: plugin.wasm, or for an Extism helper main.wasm, a small
	// native main (an Extism plugin cannot make the pod-local call that reaches a helper).
	MainWasm string
	Both     string // for a helper's README: which files play main and the helper
}

var nameRE = regexp.MustCompile(`[^a-z0-9-]+`)

// Write scaffolds the plugin into o.Dir and returns the files written, relative to it.
func Write(o Options) ([]string, error) {
	lang, ok := languages[o.Lang]
	if !ok {
		return nil, fmt.Errorf("unknown language %q (use %s)", o.Lang, strings.Join(Languages, ", "))
	}
	if !contains(Roles, o.Role) {
		return nil, fmt.Errorf("unknown role %q (use %s)", o.Role, strings.Join(Roles, ", "))
	}
	role := o.Role
	if role == "merge" {
		role = "leaf" // the leaf's file serves as the merge too: one scaffold for both
	}
	helper := contains(helperRoles, role)
	abs, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if entries, err := os.ReadDir(abs); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%s: %w", abs, ErrNotEmpty)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	name := strings.Trim(nameRE.ReplaceAllString(strings.ToLower(filepath.Base(abs)), "-"), "-")
	if name == "" || name[0] < 'a' {
		name = "plugin-" + name
	}
	// A module name is a DNS label of at most 63 characters, and the pod's second module is
	// NAME-ambassador at the longest.
	if max := 63 - len("-ambassador"); len(name) > max {
		name = strings.TrimRight(name[:max], "-")
	}
	d := data{language: lang, Name: name, Crate: strings.ReplaceAll(name, "-", "_"), Lang: o.Lang, Role: role,
		Extism: strings.HasPrefix(o.Lang, "extism-"), Leaf: role == "leaf", Helper: helper,
		Export: "wasmpod_handle", What: "main module", Unit: "request", MainWasm: "plugin.wasm"}
	bt := "`"
	if helper {
		d.Both = bt + "plugin.wasm" + bt + " plays both, and " + bt + "pod.yaml" + bt + " runs it twice."
		if d.Extism {
			// The Extism helper's function is named after its role; main is native.
			d.Function, d.MainWasm = role, "main.wasm"
			d.Both = bt + "plugin.wasm" + bt + " is the " + role + ", an Extism plugin (its function " + bt + role + bt +
				"), and\n" + bt + "main.wasm" + bt + " (source in " + bt + "main/" + bt + ") a small native main: an Extism plugin cannot make the\npod-local call with which main reaches a helper."
		}
	}
	switch {
	case d.Leaf:
		d.Export, d.What, d.Unit = "wasmpod_leaf", "scatter/gather leaf and merge", "shard input"
	case role == "stage":
		d.Export, d.What, d.Unit = "wasmpod_stage", "work-queue stage", "input file's contents"
	}
	switch {
	case d.Extism:
		d.Call = d.Function
	case d.Leaf:
		d.Call = "leaf"
	case role == "stage":
		d.Call = "stage"
	default:
		d.Call = "handle"
	}
	d.Build = nil // build commands are templates too ({{.Crate}})
	build := lang.Build
	if helper {
		build = append(append([]string(nil), build...), lang.HelperBuild...)
	}
	needs, err := render("needs", lang.Needs, d)
	if err != nil {
		return nil, err
	}
	d.Needs = string(needs)
	for _, line := range build {
		b, err := render("build", line, d)
		if err != nil {
			return nil, err
		}
		d.Build = append(d.Build, string(b))
	}
	files := map[string]string{}
	for path, text := range common {
		files[path] = text
	}
	for path, text := range lang.Files {
		files[path] = text
	}
	if helper {
		for path, text := range lang.Helper {
			files[path] = text
		}
	}
	out := map[string][]byte{}
	for path, text := range files {
		b, err := render(o.Lang+"/"+path, text, d)
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue // a file this role does not have
		}
		out[path] = b
	}
	sdk, err := parseArchive(sdkArchive)
	if err != nil {
		return nil, err
	}
	sdkFor := sdkFiles[o.Lang]
	if helper && helperSDKFiles[o.Lang] != nil {
		sdkFor = helperSDKFiles[o.Lang]
	}
	for from, to := range sdkFor {
		for src, content := range sdk {
			if rel, ok := strings.CutPrefix(src, from); ok {
				out[to+rel] = content
			}
		}
	}
	names := make([]string, 0, len(out))
	for path, content := range out {
		full := filepath.Join(abs, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return nil, err
		}
		mode := fs.FileMode(0o644)
		if strings.HasSuffix(path, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(full, content, mode); err != nil {
			return nil, err
		}
		names = append(names, path)
	}
	sort.Strings(names)
	return names, nil
}

// render executes one template.
func render(name, text string, d data) ([]byte, error) {
	t, err := template.New(name).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("scaffold: template %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("scaffold: template %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// sdkFiles maps, per language, a prefix of the archive's paths to where those files go in the
// plugin.
var sdkFiles = map[string]map[string]string{
	"go":             {"guest-sdk/go/": "wasmpod-sdk/go/"},
	"c":              {"guest-sdk/c/": ""},
	"rust":           {"guest-sdk/rust/wasmpod/": "wasmpod-sdk/rust/"},
	"assemblyscript": {"guest-sdk/assemblyscript/": "wasmpod-sdk/assemblyscript/"},
	"extism-go":      {"plugins/extism-go/go.sum": "go.sum"},
}

// helperSDKFiles replace sdkFiles for the helper roles of the Extism languages, whose pods
// have a native main built with the language's wasmpod SDK.
var helperSDKFiles = map[string]map[string]string{
	"extism-go": {"plugins/extism-go/go.sum": "go.sum", "guest-sdk/go/": "wasmpod-sdk/go/"},
	"extism-as": {"guest-sdk/assemblyscript/": "wasmpod-sdk/assemblyscript/"},
}

// ReadSDK reads the archive's files from a checkout of the repository at root.
func ReadSDK(root string) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, pattern := range sdkSources {
		matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(pattern)))
		if err != nil {
			return nil, err
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("no file matches %s", pattern)
		}
		for _, m := range matches {
			if strings.HasSuffix(m, "_test.go") {
				continue
			}
			b, err := os.ReadFile(m)
			if err != nil {
				return nil, err
			}
			rel, err := filepath.Rel(root, m)
			if err != nil {
				return nil, err
			}
			files[filepath.ToSlash(rel)] = b
		}
	}
	return files, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
