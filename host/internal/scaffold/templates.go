package scaffold

// common are the files every plugin gets, rendered with its language's data.
var common = map[string]string{
	"README.md": `# {{.Name}}

{{if eq .Role "leaf"}}A wasmpod scatter/gather leaf in {{.Title}}, made by ` + "`" + `wasmpod init` + "`" + `. Each shard answers
"GREETING, BODY", GREETING from its config in ` + "`" + `pod.yaml` + "`" + `; the same file also serves as the merge,
which joins the shards' answers with newlines. ` + "`" + `pod.yaml` + "`" + ` serves one shard through ingress (add
shards, local or on other nodes, under ` + "`" + `spec.scatter.shards` + "`" + `).{{else}}A wasmpod main module in {{.Title}}, made by ` + "`" + `wasmpod init` + "`" + `. It answers each request with
"GREETING, BODY", GREETING from its config in ` + "`" + `pod.yaml` + "`" + `.{{end}}

Needs {{.Needs}} Every command below runs in this directory; ` + "`" + `wasmpod` + "`" + ` is the wasmpod binary.

Build:

<!-- doctest: run -->
{{range .Build}}    {{.}}
{{end}}
Test (` + "`" + `test.sh` + "`" + ` calls ` + "`" + `plugin.wasm` + "`" + ` with ` + "`" + `wasmpod call` + "`" + `, as the pod will):

<!-- doctest: run -->
    ./test.sh

Serve it through ingress (:8080; admin API on 127.0.0.1:9901), and ask it from another terminal:

<!-- doctest: serve -->
    wasmpod validate pod.yaml
    wasmpod run pod.yaml
    curl -s -d wasmpod 127.0.0.1:8080/         #=> hello, wasmpod
    wasmpod get                                #=> {{.Name}}

Ctrl-C (SIGTERM) drains and stops it. Check a build against the ABI with
` + "`" + `wasmpod abi-check plugin.wasm{{if .Extism}} --function {{.Function}}{{end}}` + "`" + `; the pod spec's fields are in wasmpod's
docs/podspec.md.
`,
	"pod.yaml": `apiVersion: wasmpod.dev/v1
kind: Pod
metadata:
  name: {{.Name}}
spec:
  modules:
    - name: {{.Name}}
{{- if eq .Role "leaf"}}
      role: leaf
{{- end}}
      wasm: plugin.wasm
{{- if .Extism}}
      abi: extism
      extism: {function: {{.Function}}}
{{- end}}
      config: {greeting: hello}
      resources: {memory: 64Mi, timeout: 5s, concurrency: 4}
{{- if eq .Role "leaf"}}
    - name: {{.Name}}-merge
      role: merge
      wasm: plugin.wasm
{{- if .Extism}}
      abi: extism
      extism: {function: join}
{{- end}}
  scatter:
    path: /
    merge: {{.Name}}-merge
    shards:
      - {name: s1, leaf: {{.Name}}}
{{- end}}
`,
	"test.sh": `#!/bin/sh
# Calls the built plugin the way its pod does and checks the answer.
set -eu
out=$(wasmpod call plugin.wasm {{.Call}} --input wasmpod --config greeting=hello)
if [ "$out" != "hello, wasmpod" ]; then
	echo "FAIL: plugin.wasm answered '$out', want 'hello, wasmpod'" >&2
	exit 1
fi
echo "ok: $out"
{{- if and (eq .Role "leaf") (not .Extism)}}
out=$(wasmpod call plugin.wasm merge --part "hello, a" --part "hello, b")
if [ "$out" != "$(printf 'hello, a\nhello, b')" ]; then
	echo "FAIL: the merge answered '$out'" >&2
	exit 1
fi
echo "ok: merge"
{{- end}}
`,
}

// language is what differs between the languages' plugins.
type language struct {
	Title    string            // "Go", ...
	Needs    string            // the toolchain, and where the SDK or PDK comes from
	Build    []string          // the build commands
	Function string            // the function test.sh calls
	Files    map[string]string // the plugin's own files: path -> template
}

// languages are the six languages init writes plugins in.
var languages = map[string]language{
	"go": {
		Title:    `Go`,
		Needs:    `Go 1.24 or newer. The wasmpod Go SDK is not published as a module: ` + "`" + `wasmpod init` + "`" + ` wrote its source into ` + "`" + `wasmpod-sdk/go` + "`" + `, and ` + "`" + `go.mod` + "`" + ` points the SDK's module path there with a ` + "`" + `replace` + "`" + ` directive, so the build needs no network.`,
		Build:    []string{`GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .`},
		Function: "handle",
		Files: map[string]string{
			".gitignore": `plugin.wasm
.wasmpod-state/
`,
			"go.mod": `module example.com/{{.Name}}

go 1.24

require github.com/wasmpod/wasmpod/guest-sdk/go v0.0.0

// The wasmpod Go SDK is not published as a module: wasmpod init wrote its source here.
replace github.com/wasmpod/wasmpod/guest-sdk/go => ./wasmpod-sdk/go
`,
			"main.go": `// Command {{.Name}} is a wasmpod {{if eq .Role "leaf"}}scatter/gather leaf and merge{{else}}main module{{end}}: it answers each
// {{if eq .Role "leaf"}}shard input{{else}}request{{end}} with "GREETING, BODY", GREETING from its config (pod.yaml).{{if eq .Role "leaf"}} The merge joins
// the shards' answers with newlines.{{end}}
package main

import (
{{- if eq .Role "leaf"}}
	"bytes"
{{end}}
	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
{{- if eq .Role "leaf"}}
	"github.com/wasmpod/wasmpod/guest-sdk/go/leaf"
	"github.com/wasmpod/wasmpod/guest-sdk/go/merge"
{{- else}}
	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
{{- end}}
)

func init() {
{{- if eq .Role "leaf"}}
	leaf.Handle(greet)
	merge.Handle(join)
{{- else}}
	handler.Handle(greet)
{{- end}}
}

func greet(body []byte) ([]byte, error) {
	greeting, ok := wasmpod.Config("greeting")
	if !ok {
		greeting = "hello"
	}
	return append([]byte(greeting+", "), body...), nil
}
{{- if eq .Role "leaf"}}

func join(parts []merge.Part) ([]byte, error) {
	var present [][]byte
	for _, p := range parts {
		if !p.Missing {
			present = append(present, p.Data)
		}
	}
	return bytes.Join(present, []byte("\n")), nil
}
{{- end}}

func main() {}
`,
		},
	},
	"c": {
		Title:    `C`,
		Needs:    `clang, wasm-ld and wasi-libc (Debian: ` + "`" + `apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32` + "`" + `; with wasi-sdk, its clang and ` + "`" + `--sysroot=/opt/wasi-sdk/share/wasi-sysroot` + "`" + `). ` + "`" + `wasmpod.h` + "`" + ` and ` + "`" + `wasmpod.c` + "`" + ` are the wasmpod C SDK. ` + "`" + `-mexec-model=reactor` + "`" + ` makes a WASI reactor: the host calls its ` + "`" + `_initialize` + "`" + `, never ` + "`" + `_start` + "`" + ` (guest-sdk/ABI.md section 9).`,
		Build:    []string{`clang --target=wasm32-wasi --sysroot=/usr -O2 -mexec-model=reactor -o plugin.wasm plugin.c wasmpod.c`},
		Function: "handle",
		Files: map[string]string{
			".gitignore": `plugin.wasm
.wasmpod-state/
`,
			"plugin.c": `/* {{.Name}}: a wasmpod {{if eq .Role "leaf"}}scatter/gather leaf and merge{{else}}main module{{end}}. It answers each {{if eq .Role "leaf"}}shard input{{else}}request{{end}} with
 * "GREETING, BODY", GREETING from its config (pod.yaml).{{if eq .Role "leaf"}} The merge joins the shards' answers with
 * newlines.{{end}} */
#include <string.h>

#include "wasmpod.h"

static int32_t greet(wasmpod_bytes in, wasmpod_bytes *out) {
	char greeting[256];
	int32_t n = wasmpod_config_get("greeting", greeting, sizeof greeting);
	if (n < 0) {
		memcpy(greeting, "hello", 5);
		n = 5;
	} else if (n > (int32_t)sizeof greeting) {
		return wasmpod_failf(2, "greeting longer than %u bytes", (unsigned)sizeof greeting);
	}
	uint8_t *buf = wasmpod_output((uint32_t)n + 2 + in.len);
	if (buf == NULL) {
		return wasmpod_failf(1, "out of memory");
	}
	memcpy(buf, greeting, (size_t)n);
	memcpy(buf + n, ", ", 2);
	memcpy(buf + n + 2, in.ptr, in.len);
	out->ptr = buf;
	out->len = (uint32_t)n + 2 + in.len;
	return 0;
}
{{- if eq .Role "leaf"}}
WASMPOD_LEAF(greet)

static int32_t join(wasmpod_parts *parts, wasmpod_bytes *out) {
	wasmpod_parts it = *parts;
	wasmpod_part part;
	uint64_t size = 0;
	uint32_t present = 0;
	while (wasmpod_parts_next(&it, &part)) {
		if (part.present) {
			size += part.data.len + (present++ > 0 ? 1 : 0);
		}
	}
	uint8_t *buf = wasmpod_output((uint32_t)size);
	if (buf == NULL && size > 0) {
		return wasmpod_failf(1, "out of memory");
	}
	uint8_t *p = buf;
	present = 0;
	while (wasmpod_parts_next(parts, &part)) {
		if (part.present) {
			if (present++ > 0) *p++ = '\n';
			memcpy(p, part.data.ptr, part.data.len);
			p += part.data.len;
		}
	}
	out->ptr = buf;
	out->len = (uint32_t)size;
	return 0;
}
WASMPOD_MERGE(join)
{{- else}}
WASMPOD_HANDLE(greet)
{{- end}}
`,
		},
	},
	"rust": {
		Title:    `Rust`,
		Needs:    `Rust with the wasm32-wasi target: Debian's rustc and cargo (` + "`" + `apt-get install rustc libstd-rust-dev-wasm32 cargo` + "`" + `), called by path because a rustup toolchain first on PATH usually lacks the target and its cargo is too new for Debian's rustc. (With rustup >= 1.78 instead: ` + "`" + `rustup target add wasm32-wasip1` + "`" + `, then plain ` + "`" + `cargo build --release --target wasm32-wasip1` + "`" + `.) The wasmpod Rust SDK is in ` + "`" + `wasmpod-sdk/rust` + "`" + `, a path dependency, so the build needs no registry.`,
		Build:    []string{`RUSTC=/usr/bin/rustc /usr/bin/cargo build --release --target wasm32-wasi --offline`, `cp target/wasm32-wasi/release/{{.Crate}}.wasm plugin.wasm`},
		Function: "handle",
		Files: map[string]string{
			".gitignore": `plugin.wasm
.wasmpod-state/
target/
Cargo.lock
`,
			"Cargo.toml": `[package]
name = "{{.Name}}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]
path = "src/lib.rs"

[dependencies]
# The wasmpod Rust SDK is not published to a registry: wasmpod init wrote its source here.
wasmpod = { path = "wasmpod-sdk/rust" }

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
strip = "debuginfo"

# A crate of its own, not a member of an enclosing workspace.
[workspace]
`,
			"src/lib.rs": `//! {{.Name}}: a wasmpod {{if eq .Role "leaf"}}scatter/gather leaf and merge{{else}}main module{{end}}. It answers each {{if eq .Role "leaf"}}shard input{{else}}request{{end}} with "GREETING, BODY",
//! GREETING from its config (pod.yaml).{{if eq .Role "leaf"}} The merge joins the shards' answers with newlines.{{end}}
{{if eq .Role "leaf"}}
wasmpod::leaf!(greet);
wasmpod::merge!(join);
{{- else}}
wasmpod::handle!(greet);
{{- end}}

fn greet(body: &[u8]) -> wasmpod::Result<Vec<u8>> {
    let greeting = wasmpod::config("greeting").unwrap_or_else(|| "hello".to_string());
    let mut out = greeting.into_bytes();
    out.extend_from_slice(b", ");
    out.extend_from_slice(body);
    Ok(out)
}
{{- if eq .Role "leaf"}}

fn join(parts: wasmpod::Parts) -> wasmpod::Result<Vec<u8>> {
    Ok(parts.present().collect::<Vec<_>>().join(&b'\n'))
}
{{- end}}
`,
		},
	},
	"assemblyscript": {
		Title:    `AssemblyScript`,
		Needs:    `Node.js >= 20 and npm. The wasmpod AssemblyScript SDK is in ` + "`" + `wasmpod-sdk/assemblyscript` + "`" + `, a ` + "`" + `file:` + "`" + ` dependency inside the plugin; the compiler (assemblyscript 0.28.20) comes from npm. The first ` + "`" + `npm install` + "`" + ` writes ` + "`" + `package-lock.json` + "`" + `; commit it, and use ` + "`" + `npm ci` + "`" + ` from then on.`,
		Build:    []string{`npm install`, `npm run build`},
		Function: "handle",
		Files: map[string]string{
			".gitignore": `plugin.wasm
.wasmpod-state/
node_modules/
`,
			"assembly/index.ts": `// {{.Name}}: a wasmpod {{if eq .Role "leaf"}}scatter/gather leaf and merge{{else}}main module{{end}}. It answers each {{if eq .Role "leaf"}}shard input{{else}}request{{end}} with "GREETING, BODY",
// GREETING from its config (pod.yaml).{{if eq .Role "leaf"}} The merge joins the shards' answers with newlines.{{end}}
export { wasmpod_abi_version, wasmpod_buffer } from "wasmpod-sdk";
import { input, ok, config{{if eq .Role "leaf"}}, fail, mergeInput{{end}} } from "wasmpod-sdk";

export function {{if eq .Role "leaf"}}wasmpod_leaf{{else}}wasmpod_handle{{end}}(len: i32): i64 {
  const body = input(len); // aliases the SDK buffer: copied below
  let greeting = config("greeting");
  if (greeting == null) greeting = "hello";
  const head = Uint8Array.wrap(String.UTF8.encode(greeting! + ", "));
  const out = new Uint8Array(head.length + body.length);
  out.set(head, 0);
  out.set(body, head.length);
  return ok(out);
}
{{- if eq .Role "leaf"}}

export function wasmpod_merge(len: i32): i64 {
  const parts = mergeInput(len);
  if (parts == null) return fail(1, "malformed merge input");
  const present = parts.present();
  let size = 0;
  for (let i = 0; i < present.length; i++) size += present[i].length + (i > 0 ? 1 : 0);
  const out = new Uint8Array(size);
  let at = 0;
  for (let i = 0; i < present.length; i++) {
    if (i > 0) out[at++] = 0x0a;
    out.set(present[i], at);
    at += present[i].length;
  }
  return ok(out);
}
{{- end}}
`,
			"package.json": `{
  "name": "{{.Name}}",
  "version": "0.1.0",
  "private": true,
  "scripts": {
    "build": "asc assembly/index.ts --config node_modules/wasmpod-sdk/asconfig.json -o plugin.wasm"
  },
  "dependencies": {
    "wasmpod-sdk": "file:./wasmpod-sdk/assemblyscript"
  },
  "devDependencies": {
    "assemblyscript": "0.28.20"
  }
}
`,
		},
	},
	"extism-go": {
		Title:    `Go, as an Extism plugin (extism go-pdk)`,
		Needs:    `Go 1.24 or newer; go-pdk v1.1.3 comes from the Go module proxy (` + "`" + `go.sum` + "`" + ` pins it). The plugin knows nothing of wasmpod: any Extism host runs it, and wasmpod runs it with ` + "`" + `abi: extism` + "`" + `, its function ` + "`" + `greet` + "`" + ` named in pod.yaml (` + "`" + `extism: {function: greet}` + "`" + `).`,
		Build:    []string{`GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .`},
		Function: "greet",
		Files: map[string]string{
			".gitignore": `plugin.wasm
.wasmpod-state/
`,
			"go.mod": `module example.com/{{.Name}}

go 1.24

require github.com/extism/go-pdk v1.1.3
`,
			"main.go": `// Command {{.Name}} is an Extism plugin (extism go-pdk): its function greet answers with
// "GREETING, INPUT", GREETING from its config.{{if eq .Role "leaf"}} Its function join is a wasmpod merge: it joins the
// parts of its input (framed as in wasmpod's guest-sdk/ABI.md section 2.1) with newlines.{{end}}
package main

import (
{{- if eq .Role "leaf"}}
	"bytes"
	"encoding/binary"
	"errors"
{{end}}
	"github.com/extism/go-pdk"
)

//go:wasmexport greet
func greet() int32 {
	greeting, ok := pdk.GetConfig("greeting")
	if !ok {
		greeting = "hello"
	}
	pdk.Output(append([]byte(greeting+", "), pdk.Input()...))
	return 0
}
{{- if eq .Role "leaf"}}

//go:wasmexport join
func join() int32 {
	parts, err := present(pdk.Input())
	if err != nil {
		pdk.SetError(err)
		return 1
	}
	pdk.Output(bytes.Join(parts, []byte("\n")))
	return 0
}

// present decodes merge input: a u32 count, then per part a u32 length (0xFFFFFFFF: missing)
// and the bytes; it returns the parts that arrived.
func present(in []byte) ([][]byte, error) {
	bad := errors.New("malformed merge input")
	if len(in) < 4 {
		return nil, bad
	}
	n := binary.LittleEndian.Uint32(in)
	in = in[4:]
	var out [][]byte
	for i := uint32(0); i < n; i++ {
		if len(in) < 4 {
			return nil, bad
		}
		l := binary.LittleEndian.Uint32(in)
		in = in[4:]
		if l == 0xFFFFFFFF {
			continue
		}
		if uint64(l) > uint64(len(in)) {
			return nil, bad
		}
		out, in = append(out, in[:l]), in[l:]
	}
	if len(in) != 0 {
		return nil, bad
	}
	return out, nil
}
{{- end}}

func main() {}
`,
		},
	},
	"extism-as": {
		Title:    `AssemblyScript, as an Extism plugin (@extism/as-pdk)`,
		Needs:    `Node.js >= 20 and npm; @extism/as-pdk and the compiler come from npm. The first ` + "`" + `npm install` + "`" + ` writes ` + "`" + `package-lock.json` + "`" + `; commit it, and use ` + "`" + `npm ci` + "`" + ` from then on. The plugin knows nothing of wasmpod: wasmpod runs it with ` + "`" + `abi: extism` + "`" + `, its function ` + "`" + `greet` + "`" + ` named in pod.yaml.`,
		Build:    []string{`npm install`, `npm run build`},
		Function: "greet",
		Files: map[string]string{
			".gitignore": `plugin.wasm
.wasmpod-state/
node_modules/
`,
			"assembly/index.ts": `// {{.Name}}: an Extism plugin (@extism/as-pdk). Its function greet answers with
// "GREETING, INPUT", GREETING from its config.{{if eq .Role "leaf"}} Its function join is a wasmpod merge: it joins the
// parts of its input (framed as in wasmpod's guest-sdk/ABI.md section 2.1) with newlines.{{end}}
import { Config, Host } from "@extism/as-pdk";
{{- if eq .Role "leaf"}}
import { error_set } from "@extism/as-pdk/lib/env";
import { Memory } from "@extism/as-pdk";
{{- end}}

// AssemblyScript's abort, wired with --use abort=assembly/index/abort, so the plugin imports
// only Extism's host functions.
export function abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  unreachable();
}

export function greet(): i32 {
  let greeting = Config.get("greeting");
  if (greeting == null) greeting = "hello";
  const head = Uint8Array.wrap(String.UTF8.encode(greeting + ", "));
  const body = Host.input();
  const out = new Uint8Array(head.length + body.length);
  out.set(head, 0);
  out.set(body, head.length);
  Host.output(out);
  return 0;
}
{{- if eq .Role "leaf"}}

export function join(): i32 {
  const data = Host.input();
  const n = data.length;
  if (n < 4) return malformed();
  const count = load<u32>(data.dataStart);
  let at = 4;
  const present = new Array<Uint8Array>();
  for (let i: u32 = 0; i < count; i++) {
    if (n - at < 4) return malformed();
    const len = load<u32>(data.dataStart + <usize>at);
    at += 4;
    if (len == 0xffffffff) continue;
    if (<u64>len > <u64>(n - at)) return malformed();
    present.push(data.subarray(at, at + <i32>len));
    at += <i32>len;
  }
  if (at != n) return malformed();
  let size = 0;
  for (let i = 0; i < present.length; i++) size += present[i].length + (i > 0 ? 1 : 0);
  const out = new Uint8Array(size);
  let o = 0;
  for (let i = 0; i < present.length; i++) {
    if (i > 0) out[o++] = 0x0a;
    out.set(present[i], o);
    o += present[i].length;
  }
  Host.output(out);
  return 0;
}

function malformed(): i32 {
  error_set(Memory.allocateString("malformed merge input").offset);
  return 1;
}
{{- end}}
`,
			"package.json": `{
  "name": "{{.Name}}",
  "version": "0.1.0",
  "private": true,
  "scripts": {
    "build": "asc assembly/index.ts --use abort=assembly/index/abort --runtime incremental -O3 -o plugin.wasm"
  },
  "dependencies": {
    "@extism/as-pdk": "1.0.0"
  },
  "devDependencies": {
    "assemblyscript": "0.28.20"
  }
}
`,
		},
	},
}
