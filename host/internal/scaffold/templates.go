package scaffold

// common are the files every plugin gets, rendered with its language's data.
var common = map[string]string{
	"README.md": `# {{.Name}}

A wasmpod main module in {{.Title}}, made by ` + "`" + `wasmpod init` + "`" + `. It answers each request with
"GREETING, BODY", GREETING from its config in ` + "`" + `pod.yaml` + "`" + `.

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
      wasm: plugin.wasm
{{if .Extism}}      abi: extism
      extism: {function: {{.Function}}}
{{end}}      config: {greeting: hello}
      resources: {memory: 64Mi, timeout: 5s, concurrency: 4}
`,
	"test.sh": `#!/bin/sh
# Calls the built plugin the way its pod does and checks the answer.
set -eu
out=$(wasmpod call plugin.wasm {{.Function}} --input wasmpod --config greeting=hello)
if [ "$out" != "hello, wasmpod" ]; then
	echo "FAIL: plugin.wasm answered '$out', want 'hello, wasmpod'" >&2
	exit 1
fi
echo "ok: $out"
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
			"main.go": `// Command {{.Name}} is a wasmpod main module: it answers each request with "GREETING, BODY",
// GREETING from its config (pod.yaml).
package main

import (
	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
)

func init() { handler.Handle(greet) }

func greet(body []byte) ([]byte, error) {
	greeting, ok := wasmpod.Config("greeting")
	if !ok {
		greeting = "hello"
	}
	return append([]byte(greeting+", "), body...), nil
}

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
			"plugin.c": `/* {{.Name}}: a wasmpod main module. It answers each request with "GREETING, BODY", GREETING
 * from its config (pod.yaml). */
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
WASMPOD_HANDLE(greet)
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
			"src/lib.rs": `//! {{.Name}}: a wasmpod main module. It answers each request with "GREETING, BODY", GREETING
//! from its config (pod.yaml).

wasmpod::handle!(greet);

fn greet(body: &[u8]) -> wasmpod::Result<Vec<u8>> {
    let greeting = wasmpod::config("greeting").unwrap_or_else(|| "hello".to_string());
    let mut out = greeting.into_bytes();
    out.extend_from_slice(b", ");
    out.extend_from_slice(body);
    Ok(out)
}
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
			"assembly/index.ts": `// {{.Name}}: a wasmpod main module. It answers each request with "GREETING, BODY", GREETING
// from its config (pod.yaml).
export { wasmpod_abi_version, wasmpod_buffer } from "wasmpod-sdk";
import { input, ok, config } from "wasmpod-sdk";

export function wasmpod_handle(len: i32): i64 {
  const body = input(len); // aliases the SDK buffer: copied below
  let greeting = config("greeting");
  if (greeting == null) greeting = "hello";
  const head = Uint8Array.wrap(String.UTF8.encode(greeting + ", "));
  const out = new Uint8Array(head.length + body.length);
  out.set(head, 0);
  out.set(body, head.length);
  return ok(out);
}
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
// "GREETING, INPUT", GREETING from its config.
package main

import "github.com/extism/go-pdk"

//go:wasmexport greet
func greet() int32 {
	greeting, ok := pdk.GetConfig("greeting")
	if !ok {
		greeting = "hello"
	}
	pdk.Output(append([]byte(greeting+", "), pdk.Input()...))
	return 0
}

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
// "GREETING, INPUT", GREETING from its config.
import { Config, Host } from "@extism/as-pdk";

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
