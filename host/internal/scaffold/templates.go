package scaffold

// common are the files every plugin gets, rendered with its language's data.
var common = map[string]string{
	"README.md": `# {{.Name}}

{{if .Leaf}}A wasmpod scatter/gather leaf in {{.Title}}, made by ` + "`" + `wasmpod init` + "`" + `. Each shard answers
"GREETING, BODY", GREETING from its config in ` + "`" + `pod.yaml` + "`" + `; the same file also serves as the merge,
which joins the shards' answers with newlines. ` + "`" + `pod.yaml` + "`" + ` serves one shard through ingress (add
shards, local or on other nodes, under ` + "`" + `spec.scatter.shards` + "`" + `).
{{- else if eq .Role "stage"}}A wasmpod work-queue stage in {{.Title}}, made by ` + "`" + `wasmpod init` + "`" + `. It turns each input
file's contents BODY into "GREETING, BODY", GREETING from its config in ` + "`" + `pod.yaml` + "`" + `; the output file
keeps the input's name. ` + "`" + `pod.yaml` + "`" + ` defines a one-stage pipeline, ` + "`" + `{{.Name}}` + "`" + `, run by the cluster's
durable work queue (add stages under ` + "`" + `spec.pipelines` + "`" + `, see wasmpod's docs/podspec.md).
{{- else if eq .Role "adapter"}}A wasmpod adapter in {{.Title}}, made by ` + "`" + `wasmpod init` + "`" + `, with the main module it serves:
{{.Both}} Main answers each request with "GREETING,
BODY" (GREETING from its config) and has the adapter, the module its config key ` + "`" + `adapter` + "`" + ` names,
present that answer in a uniform form: the JSON object ` + "`" + `{"message": ANSWER}` + "`" + `. Main reaches it with a
pod-local call (guest-sdk/ABI.md section 4.1).
{{- else if eq .Role "sidecar"}}A wasmpod sidecar in {{.Title}}, made by ` + "`" + `wasmpod init` + "`" + `, with the main module it serves:
{{.Both}} Main answers each request with "GREETING,
BODY" (GREETING from its config) and hands the sidecar, the module its config key ` + "`" + `sidecar` + "`" + ` names, a
copy of the request with a pod-local call (guest-sdk/ABI.md section 4.1); the sidecar logs it as an
access-log line. The sidecar has its own budget and its own failures: when it fails, main logs a
warning and still answers.
{{- else if eq .Role "ambassador"}}A wasmpod ambassador in {{.Title}}, made by ` + "`" + `wasmpod init` + "`" + `, with the main module it serves:
{{.Both}} Main has no network; the ambassador, the module its config key ` + "`" + `ambassador` + "`" + ` names, is
the only module that may reach out, and only to the addresses its ` + "`" + `network.allow` + "`" + ` lists.
{{- if .Extism}} Main gives it a path (a pod-local call, guest-sdk/ABI.md section 4.1); it sends an HTTP
GET for that path to its config's ` + "`" + `upstream` + "`" + ` with Extism's ` + "`" + `http_request` + "`" + ` and returns the response
body. Main answers each request with "GREETING, BODY (upstream: STATUS)", STATUS being the body
the ambassador got for ` + "`" + `/healthz` + "`" + `, or "unreachable".
{{- else}} It forwards the bytes main gives it (a pod-local call, guest-sdk/ABI.md section 4.1) to its
config's ` + "`" + `upstream` + "`" + ` over TCP and returns what the upstream answers until it closes the connection.
Main answers each request with "GREETING, BODY (upstream: STATUS)", STATUS being the body of an
HTTP/1.0 ` + "`" + `GET /healthz` + "`" + ` sent through the ambassador, or "unreachable".
{{- end}} In ` + "`" + `pod.yaml` + "`" + ` the upstream is the wasmpod host's own admin API (127.0.0.1:9901, whose
/healthz answers "ok"), so the pod runs alone; point ` + "`" + `upstream` + "`" + ` and ` + "`" + `network.allow` + "`" + ` at your service.
{{- else}}A wasmpod main module in {{.Title}}, made by ` + "`" + `wasmpod init` + "`" + `. It answers each request with
"GREETING, BODY", GREETING from its config in ` + "`" + `pod.yaml` + "`" + `.
{{- end}}

Needs {{.Needs}} Every command below runs in this directory; ` + "`" + `wasmpod` + "`" + ` is the wasmpod binary.

Build:

<!-- doctest: run -->
{{range .Build}}    {{.}}
{{end}}
{{- if and .UnitTest (not .Helper)}}
Unit-test its logic natively (` + "`" + `main_test.go` + "`" + `: the SDK's package ` + "`" + `wasmpodtest` + "`" + ` plays the host, its config
and the calls of the exports):

<!-- doctest: run -->
    {{.UnitTest}}
{{end}}
Test (` + "`" + `test.sh` + "`" + ` calls ` + "`" + `plugin.wasm` + "`" + `{{if ne .MainWasm "plugin.wasm"}} and ` + "`" + `{{.MainWasm}}` + "`" + `{{end}} with ` + "`" + `wasmpod call` + "`" + `, as the pod will{{if .Helper}}; ` + "`" + `wasmpod call` + "`" + ` runs one module, with no pod
around it, so its pod-local calls fail and its network is closed{{end}}):

<!-- doctest: run -->
    ./test.sh
{{if eq .Role "stage"}}
Serve it: ` + "`" + `wasmpod run` + "`" + ` defines the pipeline in a one-node cluster and starts its workers (admin API
on 127.0.0.1:9901). Submitting a job needs the admin token, here in the file ` + "`" + `token` + "`" + `. The pipeline
is defined once the cluster has elected its leader, a moment after the host logs "pod running"
(it logs "pipeline defined"). From another terminal, wait for it, submit one input file, wait for
the job and fetch its output (` + "`" + `queue submit` + "`" + ` prints the job's id):

<!-- doctest: serve -->
    head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > token
    printf wasmpod > input.txt
    wasmpod validate pod.yaml
    wasmpod run --token-file token pod.yaml
    until wasmpod queue pipelines | grep -qw {{.Name}}; do sleep 0.5; done
    wasmpod queue get --token-file token "$(wasmpod queue submit --token-file token --pipeline {{.Name}} --wait input.txt)" -o out
    cat out/input.txt                          #=> hello, wasmpod
    wasmpod queue status                       #=> {{.Name}}
{{else}}
Serve it through ingress (:8080; admin API on 127.0.0.1:9901), and ask it from another terminal:

<!-- doctest: serve -->
    wasmpod validate pod.yaml
    wasmpod run pod.yaml
{{- if eq .Role "adapter"}}
    curl -s -d wasmpod 127.0.0.1:8080/         #=> {"message":"hello, wasmpod"}
{{- else if eq .Role "sidecar"}}
    curl -s -d wasmpod 127.0.0.1:8080/         #=> hello, wasmpod
    wasmpod logs {{.Name}}-sidecar             #=> request: wasmpod
{{- else if eq .Role "ambassador"}}
    curl -s -d wasmpod 127.0.0.1:8080/         #=> hello, wasmpod (upstream: ok)
{{- else}}
    curl -s -d wasmpod 127.0.0.1:8080/         #=> hello, wasmpod
{{- end}}
    wasmpod get                                #=> {{.Name}}
{{end}}
Ctrl-C (SIGTERM) drains and stops it. Check a build against the ABI with
` + "`" + `wasmpod abi-check plugin.wasm{{if .Extism}} --function {{.Function}}{{end}}` + "`" + `{{if ne .MainWasm "plugin.wasm"}} (and ` + "`" + `wasmpod abi-check {{.MainWasm}}` + "`" + `){{end}}; the pod spec's
fields are in wasmpod's docs/podspec.md.
`,
	"pod.yaml": `apiVersion: wasmpod.dev/v1
kind: Pod
metadata:
  name: {{.Name}}
spec:
  modules:
    - name: {{.Name}}
{{- if .Leaf}}
      role: leaf
{{- else if eq .Role "stage"}}
      role: stage
{{- end}}
      wasm: {{.MainWasm}}
{{- if and .Extism (not .Helper)}}
      abi: extism
      extism: {function: {{.Function}}}
{{- end}}
{{- if .Helper}}
      # main: its config names the {{.Role}} it calls
      config: {greeting: hello, {{.Role}}: {{.Name}}-{{.Role}}}
{{- else}}
      config: {greeting: hello}
{{- end}}
      resources: {memory: 64Mi, timeout: 5s, concurrency: 4}
{{- if .Helper}}
    - name: {{.Name}}-{{.Role}}
      role: {{.Role}}
      wasm: plugin.wasm
{{- if .Extism}}
      abi: extism
      extism: {function: {{.Function}}}
{{- end}}
{{- if eq .Role "ambassador"}}
      config: {upstream: "127.0.0.1:9901"}
      network:
        allow: ["127.0.0.1:9901"]
{{- end}}
      resources: {memory: 64Mi, timeout: 5s, concurrency: 4}
{{- end}}
{{- if .Leaf}}
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
{{- if eq .Role "stage"}}
  pipelines:
    - name: {{.Name}}
      maxAttempts: 3
      stages:
        - module: {{.Name}}
{{- end}}
`,
	"test.sh": `#!/bin/sh
# Calls the built plugin the way its pod does and checks the answers.
set -eu
{{- if eq .Role "adapter"}}
# As the adapter{{if not .Extism}} (no adapter named in its config){{end}}: main's answer in, JSON out.
out=$(wasmpod call plugin.wasm {{.Call}} --input 'hello, "wasmpod"')
if [ "$out" != '{"message":"hello, \"wasmpod\""}' ]; then
	echo "FAIL: the adapter answered '$out'" >&2
	exit 1
fi
echo "ok: $out"
{{- else if eq .Role "sidecar"}}
# As the sidecar{{if not .Extism}} (no sidecar named in its config){{end}}: it logs the request (stderr here) and
# answers nothing.
log=$(wasmpod call plugin.wasm {{.Call}} --input wasmpod 2>&1 >/dev/null)
case "$log" in
*"request: wasmpod"*) echo "ok: sidecar logged the request" ;;
*) echo "FAIL: the sidecar logged '$log', want 'request: wasmpod'" >&2; exit 1 ;;
esac
# As main: its sidecar is missing here (no pod), which main logs and survives.
out=$(wasmpod call {{.MainWasm}} handle --input wasmpod --config greeting=hello --config sidecar={{.Name}}-sidecar 2>/dev/null)
if [ "$out" != "hello, wasmpod" ]; then
	echo "FAIL: main answered '$out', want 'hello, wasmpod'" >&2
	exit 1
fi
echo "ok: $out"
{{- else if eq .Role "ambassador"}}
# As the ambassador: wasmpod call grants no network{{if .Extism}} (no --allow-host){{end}}, so reaching its upstream is refused.
if wasmpod call plugin.wasm {{.Call}} --input /healthz --config upstream=127.0.0.1:9901 >/dev/null 2>&1; then
	echo "FAIL: the ambassador reached its upstream without a network allowlist" >&2
	exit 1
fi
echo "ok: the ambassador has no network outside its pod"
# As main: its ambassador is missing here (no pod), so the upstream is unreachable.
out=$(wasmpod call {{.MainWasm}} handle --input wasmpod --config greeting=hello --config ambassador={{.Name}}-ambassador 2>/dev/null)
if [ "$out" != "hello, wasmpod (upstream: unreachable)" ]; then
	echo "FAIL: main answered '$out', want 'hello, wasmpod (upstream: unreachable)'" >&2
	exit 1
fi
echo "ok: $out"
{{- else}}
out=$(wasmpod call plugin.wasm {{.Call}} --input wasmpod --config greeting=hello)
if [ "$out" != "hello, wasmpod" ]; then
	echo "FAIL: plugin.wasm answered '$out', want 'hello, wasmpod'" >&2
	exit 1
fi
echo "ok: $out"
{{- end}}
{{- if and .Leaf (not .Extism)}}
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
	UnitTest string            // the command that runs the plugin's native unit tests, if it has any
	Function string            // the function test.sh calls
	Files    map[string]string // the plugin's own files: path -> template
	// Helper replaces files of Files for the helper roles (sidecar, ambassador, adapter): for a
	// native language the source of a plugin that plays both main and the helper; for an Extism
	// language the helper's source and a small native main in main/ (an Extism plugin cannot make
	// the pod-local call with which main reaches a helper).
	Helper map[string]string
	// HelperBuild are build commands added for the helper roles (the native main's).
	HelperBuild []string
}

// languages are the six languages init writes plugins in.
var languages = map[string]language{
	"go": {
		Title:    `Go`,
		Needs:    `Go 1.24 or newer. The wasmpod Go SDK is not published as a module: ` + "`" + `wasmpod init` + "`" + ` wrote its source into ` + "`" + `wasmpod-sdk/go` + "`" + `, and ` + "`" + `go.mod` + "`" + ` points the SDK's module path there with a ` + "`" + `replace` + "`" + ` directive, so the build needs no network.`,
		Build:    []string{`GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .`},
		UnitTest: `go test .`,
		Function: "handle",
		Files: map[string]string{
			".gitignore": `plugin.wasm
.wasmpod-state/
`,
			// Not for the helper roles (empty: not written).
			"main_test.go": `{{if not .Helper}}//go:build !wasip1

// Unit tests of this {{.What}}, run natively with ` + "`" + `go test .` + "`" + `:
// package wasmpodtest plays the wasmpod host (the config, the logs, the calls of the exports).
package main

import (
	"testing"
{{if .Leaf}}
	"github.com/wasmpod/wasmpod/guest-sdk/go/merge"
{{- end}}
	"github.com/wasmpod/wasmpod/guest-sdk/go/wasmpodtest"
)

func TestGreet(t *testing.T) {
	for _, tc := range []struct{ greeting, body, want string }{
		{"", "wasmpod", "hello, wasmpod"},
		{"hi", "wasmpod", "hi, wasmpod"},
	} {
		wasmpodtest.Reset()
		if tc.greeting != "" {
			wasmpodtest.SetConfig("greeting", tc.greeting)
		}
		out, err := wasmpodtest.{{if .Leaf}}CallLeaf{{else if eq .Role "stage"}}CallStage{{else}}CallHandler{{end}}([]byte(tc.body))
		if err != nil || string(out) != tc.want {
			t.Errorf("greeting %q, body %q: %q, %v; want %q", tc.greeting, tc.body, out, err, tc.want)
		}
	}
}
{{- if .Leaf}}

func TestMerge(t *testing.T) {
	wasmpodtest.Reset()
	parts := []merge.Part{
		{Data: []byte("hello, a")},
		{Missing: true},
		{Data: []byte("hello, b")},
	}
	out, err := wasmpodtest.CallMerge(parts)
	if err != nil || string(out) != "hello, a\nhello, b" {
		t.Errorf("merge: %q, %v; want the two present parts on two lines", out, err)
	}
}
{{- end}}
{{end}}`,
			"go.mod": `module example.com/{{.Name}}

go 1.24

require github.com/wasmpod/wasmpod/guest-sdk/go v0.0.0

// The wasmpod Go SDK is not published as a module: wasmpod init wrote its source here.
replace github.com/wasmpod/wasmpod/guest-sdk/go => ./wasmpod-sdk/go
`,
			"main.go": `// Command {{.Name}} is a wasmpod {{.What}}: it answers each
// {{.Unit}} with "GREETING, BODY", GREETING from its config (pod.yaml).{{if .Leaf}} The merge joins
// the shards' answers with newlines.{{end}}
package main

import (
{{- if .Leaf}}
	"bytes"
{{end}}
	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
{{- if .Leaf}}
	"github.com/wasmpod/wasmpod/guest-sdk/go/leaf"
	"github.com/wasmpod/wasmpod/guest-sdk/go/merge"
{{- else if eq .Role "stage"}}
	"github.com/wasmpod/wasmpod/guest-sdk/go/stage"
{{- else}}
	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
{{- end}}
)

func init() {
{{- if .Leaf}}
	leaf.Handle(greet)
	merge.Handle(join)
{{- else if eq .Role "stage"}}
	stage.Handle(greet)
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
{{- if .Leaf}}

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
		Helper: map[string]string{
			"main.go": `// Command {{.Name}} is a wasmpod {{.Role}} and the main module it serves, in one file: pod.yaml
// runs it twice, as main (whose config key {{.Role}} names the {{.Role}} module) and as the {{.Role}}.
package main

import (
{{- if eq .Role "ambassador"}}
	"bytes"
	"io"
{{- else if eq .Role "adapter"}}
	"encoding/json"
{{- end}}
{{if ne .Role "sidecar"}}
{{end}}	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
{{- if eq .Role "ambassador"}}
	"github.com/wasmpod/wasmpod/guest-sdk/go/net"
{{- end}}
	"github.com/wasmpod/wasmpod/guest-sdk/go/pod"
)

func init() {
	handler.Handle(serve)
}

// serve plays main when the module's config names its {{.Role}}, else the {{.Role}}.
func serve(body []byte) ([]byte, error) {
	helper, isMain := wasmpod.Config("{{.Role}}")
	if !isMain {
		return {{.Role}}(body)
	}
{{- if eq .Role "adapter"}}
	// Main: answer, then have the adapter present the answer.
	return pod.Call(helper, greet(body))
{{- else if eq .Role "sidecar"}}
	// Main: hand the sidecar a copy of the request. Its failures are its own: log them, answer.
	if _, err := pod.Call(helper, body); err != nil {
		wasmpod.Warnf("sidecar: %v", err)
	}
	return greet(body), nil
{{- else}}
	// Main: ask the upstream how it is, through the ambassador (main has no network).
	status := "unreachable"
	if resp, err := pod.Call(helper, []byte("GET /healthz HTTP/1.0\r\nConnection: close\r\n\r\n")); err != nil {
		wasmpod.Warnf("ambassador: %v", err)
	} else if _, b, ok := bytes.Cut(resp, []byte("\r\n\r\n")); ok {
		status = string(bytes.TrimSpace(b))
	}
	return append(greet(body), " (upstream: "+status+")"...), nil
{{- end}}
}

// greet is main's answer: "GREETING, BODY", GREETING from its config.
func greet(body []byte) []byte {
	greeting, ok := wasmpod.Config("greeting")
	if !ok {
		greeting = "hello"
	}
	return append([]byte(greeting+", "), body...)
}
{{- if eq .Role "adapter"}}

// adapter presents main's answer in a uniform form: the JSON object {"message": ANSWER}.
func adapter(answer []byte) ([]byte, error) {
	return json.Marshal(struct {
		Message string ` + "`" + `json:"message"` + "`" + `
	}{string(answer)})
}
{{- else if eq .Role "sidecar"}}

// maxLogged bounds how much of a request the sidecar logs.
const maxLogged = 256

// sidecar gets a copy of each request main serves and logs it as an access-log line (its
// first maxLogged bytes).
func sidecar(request []byte) ([]byte, error) {
	if len(request) > maxLogged {
		wasmpod.Infof("request: %s... (%d bytes)", request[:maxLogged], len(request))
	} else {
		wasmpod.Infof("request: %s", request)
	}
	return nil, nil
}
{{- else}}

// maxReply bounds what the ambassador reads from the upstream.
const maxReply = 1 << 20

// ambassador forwards main's bytes to the upstream (its config key upstream, "host:port", which
// the pod spec's network.allow must list) and returns what the upstream answers until it closes
// the connection (at most maxReply bytes).
func ambassador(request []byte) ([]byte, error) {
	upstream, ok := wasmpod.Config("upstream")
	if !ok {
		return nil, wasmpod.Codef(2, "no upstream in the config")
	}
	c, err := net.Dial(upstream)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := c.Write(request); err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(c, maxReply))
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
			"plugin.c": `/* {{.Name}}: a wasmpod {{.What}}. It answers each {{.Unit}} with
 * "GREETING, BODY", GREETING from its config (pod.yaml).{{if .Leaf}} The merge joins the shards' answers with
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
{{- if .Leaf}}
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
{{- else if eq .Role "stage"}}
WASMPOD_STAGE(greet)
{{- else}}
WASMPOD_HANDLE(greet)
{{- end}}
`,
		},
		Helper: map[string]string{
			"plugin.c": `/* {{.Name}}: a wasmpod {{.Role}} and the main module it serves, in one file: pod.yaml runs it
 * twice, as main (whose config key {{.Role}} names the {{.Role}} module) and as the {{.Role}}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wasmpod.h"

/* The pod-local call (guest-sdk/ABI.md section 4.1): call the module target's wasmpod_handle. */
__attribute__((import_module("wasmpod"), import_name("call")))
int32_t pod_call_(const char *target, uint32_t target_len, const uint8_t *in, uint32_t in_len);
__attribute__((import_module("wasmpod"), import_name("call_result")))
int32_t pod_call_result_(uint8_t *buf, uint32_t cap);
{{- if eq .Role "ambassador"}}

/* Outbound TCP (section 4.1): only for the addresses of the module's network.allow. */
__attribute__((import_module("wasmpod"), import_name("net_dial")))
int32_t net_dial_(const char *addr, uint32_t addr_len);
__attribute__((import_module("wasmpod"), import_name("net_write")))
int32_t net_write_(int32_t handle, const uint8_t *buf, uint32_t len);
__attribute__((import_module("wasmpod"), import_name("net_read")))
int32_t net_read_(int32_t handle, uint8_t *buf, uint32_t cap);
__attribute__((import_module("wasmpod"), import_name("net_close")))
int32_t net_close_(int32_t handle);
{{- end}}

/* pod_call calls target with in. It returns the response length, its bytes in a malloc'd
 * *resp (free it), or a negative code of the call import (then *resp holds the host's message,
 * *resp_len long, or is NULL). */
static int32_t pod_call(const char *target, wasmpod_bytes in, uint8_t **resp, uint32_t *resp_len) {
	int32_t code = pod_call_(target, (uint32_t)strlen(target), in.ptr, in.len);
	*resp = NULL;
	*resp_len = 0;
	int32_t n = pod_call_result_(NULL, 0); /* the kept response's (or message's) length */
	if (n > 0) {
		*resp = malloc((size_t)n);
		if (*resp == NULL) {
			return -2;
		}
		pod_call_result_(*resp, (uint32_t)n);
		*resp_len = (uint32_t)n;
	}
	return code;
}

/* config reads a config key into buf (NUL-terminated); -1 when it is missing or too long. */
static int32_t config(const char *key, char *buf, int32_t cap) {
	int32_t n = wasmpod_config_get(key, buf, (uint32_t)cap - 1);
	if (n < 0 || n >= cap) {
		return -1;
	}
	buf[n] = 0;
	return n;
}

/* greet writes main's answer, "GREETING, BODY" (GREETING from its config), and extra after it. */
static int32_t greet(wasmpod_bytes in, const uint8_t *extra, uint32_t extra_len, wasmpod_bytes *out) {
	char greeting[256];
	int32_t n = config("greeting", greeting, sizeof greeting);
	if (n < 0) {
		memcpy(greeting, "hello", 6);
		n = 5;
	}
	uint32_t size = (uint32_t)n + 2 + in.len + extra_len;
	uint8_t *buf = wasmpod_output(size);
	if (buf == NULL) {
		return wasmpod_failf(1, "out of memory");
	}
	memcpy(buf, greeting, (size_t)n);
	memcpy(buf + n, ", ", 2);
	memcpy(buf + n + 2, in.ptr, in.len);
	if (extra_len > 0) {
		memcpy(buf + n + 2 + in.len, extra, extra_len);
	}
	out->ptr = buf;
	out->len = size;
	return 0;
}
{{- if eq .Role "adapter"}}

/* adapter presents main's answer in a uniform form: the JSON object {"message": ANSWER}. */
static int32_t adapter(wasmpod_bytes in, wasmpod_bytes *out) {
	static const char hex[] = "0123456789abcdef";
	uint64_t cap = (uint64_t)in.len * 6 + 16; /* \u00XX at worst */
	if (cap > 16u << 20) {
		return wasmpod_failf(2, "answer of %u bytes is too large", (unsigned)in.len);
	}
	uint8_t *buf = wasmpod_output((uint32_t)cap);
	if (buf == NULL) {
		return wasmpod_failf(1, "out of memory");
	}
	uint8_t *p = buf;
	memcpy(p, "{\"message\":\"", 12);
	p += 12;
	for (uint32_t i = 0; i < in.len; i++) {
		uint8_t c = in.ptr[i];
		if (c == '"' || c == '\\') {
			*p++ = '\\';
			*p++ = c;
		} else if (c < 0x20) {
			memcpy(p, "\\u00", 4);
			p[4] = (uint8_t)hex[c >> 4];
			p[5] = (uint8_t)hex[c & 15];
			p += 6;
		} else {
			*p++ = c;
		}
	}
	memcpy(p, "\"}", 2);
	p += 2;
	out->ptr = buf;
	out->len = (uint32_t)(p - buf);
	return 0;
}
{{- else if eq .Role "sidecar"}}

/* MAX_LOGGED bounds how much of a request the sidecar logs. */
#define MAX_LOGGED 256u

/* sidecar gets a copy of each request main serves and logs it as an access-log line (its first
 * MAX_LOGGED bytes). */
static int32_t sidecar(wasmpod_bytes in, wasmpod_bytes *out) {
	if (in.len > MAX_LOGGED) {
		wasmpod_logf(WASMPOD_INFO, "request: %.*s... (%u bytes)", (int)MAX_LOGGED, (const char *)in.ptr, (unsigned)in.len);
	} else {
		wasmpod_logf(WASMPOD_INFO, "request: %.*s", (int)in.len, (const char *)in.ptr);
	}
	out->len = 0;
	return 0;
}
{{- else}}

/* MAX_REPLY bounds what the ambassador reads from the upstream. */
#define MAX_REPLY (1u << 20)

/* ambassador forwards main's bytes to the upstream (its config key upstream, "host:port", which
 * the pod spec's network.allow must list) and returns what the upstream answers until it closes
 * the connection (at most MAX_REPLY bytes). */
static int32_t ambassador(wasmpod_bytes in, wasmpod_bytes *out) {
	char upstream[256];
	if (config("upstream", upstream, sizeof upstream) < 0) {
		return wasmpod_failf(2, "no upstream in the config");
	}
	int32_t h = net_dial_(upstream, (uint32_t)strlen(upstream));
	if (h < 0) {
		return wasmpod_failf(3, "dial %s: code %d", upstream, (int)h);
	}
	for (uint32_t done = 0; done < in.len;) {
		int32_t n = net_write_(h, in.ptr + done, in.len - done);
		if (n < 0) {
			net_close_(h);
			return wasmpod_failf(3, "write %s: code %d", upstream, (int)n);
		}
		done += (uint32_t)n;
	}
	uint32_t size = 0, cap = 65536;
	uint8_t *buf = wasmpod_output(cap);
	while (buf != NULL && size < MAX_REPLY) {
		if (size == cap) {
			cap *= 2;
			buf = wasmpod_output(cap);
			if (buf == NULL) {
				break;
			}
		}
		int32_t n = net_read_(h, buf + size, cap - size);
		if (n == 0) {
			break;
		}
		if (n < 0) {
			net_close_(h);
			return wasmpod_failf(3, "read %s: code %d", upstream, (int)n);
		}
		size += (uint32_t)n;
	}
	net_close_(h);
	if (buf == NULL) {
		return wasmpod_failf(1, "out of memory");
	}
	out->ptr = buf;
	out->len = size < MAX_REPLY ? size : MAX_REPLY;
	return 0;
}
{{- end}}

/* serve plays main when the module's config names its {{.Role}}, else the {{.Role}}. */
static int32_t serve(wasmpod_bytes in, wasmpod_bytes *out) {
	char helper[256];
	if (config("{{.Role}}", helper, sizeof helper) < 0) {
		return {{.Role}}(in, out);
	}
	uint8_t *resp;
	uint32_t resp_len;
{{- if eq .Role "adapter"}}
	/* Main: answer, then have the adapter present the answer. */
	wasmpod_bytes answer;
	int32_t rc = greet(in, NULL, 0, &answer);
	if (rc != 0) {
		return rc;
	}
	int32_t code = pod_call(helper, answer, &resp, &resp_len);
	if (code < 0) {
		rc = wasmpod_failf(2, "adapter %s: code %d: %.*s", helper, (int)code, (int)resp_len, resp ? (const char *)resp : "");
		free(resp);
		return rc;
	}
	uint8_t *buf = wasmpod_output(resp_len);
	if (buf == NULL && resp_len > 0) {
		free(resp);
		return wasmpod_failf(1, "out of memory");
	}
	if (resp_len > 0) {
		memcpy(buf, resp, resp_len);
	}
	free(resp);
	out->ptr = buf;
	out->len = resp_len;
	return 0;
{{- else if eq .Role "sidecar"}}
	/* Main: hand the sidecar a copy of the request. Its failures are its own: log them, answer. */
	int32_t code = pod_call(helper, in, &resp, &resp_len);
	if (code < 0) {
		wasmpod_logf(WASMPOD_WARN, "sidecar %s: code %d: %.*s", helper, (int)code, (int)resp_len, resp ? (const char *)resp : "");
	}
	free(resp);
	return greet(in, NULL, 0, out);
{{- else}}
	/* Main: ask the upstream how it is, through the ambassador (main has no network). */
	static const char req[] = "GET /healthz HTTP/1.0\r\nConnection: close\r\n\r\n";
	const char *status = "unreachable";
	size_t status_len = strlen(status);
	int32_t code = pod_call(helper, (wasmpod_bytes){(const uint8_t *)req, sizeof req - 1}, &resp, &resp_len);
	if (code < 0) {
		wasmpod_logf(WASMPOD_WARN, "ambassador %s: code %d: %.*s", helper, (int)code, (int)resp_len, resp ? (const char *)resp : "");
	} else {
		for (uint32_t i = 0; i + 4 <= resp_len; i++) {
			if (memcmp(resp + i, "\r\n\r\n", 4) == 0) {
				const char *b = (const char *)resp + i + 4, *e = (const char *)resp + resp_len;
				while (b < e && (*b == ' ' || *b == '\n' || *b == '\r' || *b == '\t')) b++;
				while (e > b && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r' || e[-1] == '\t')) e--;
				status = b;
				status_len = (size_t)(e - b);
				break;
			}
		}
	}
	char extra[512];
	int n = snprintf(extra, sizeof extra, " (upstream: %.*s)", (int)(status_len < 400 ? status_len : 400), status);
	free(resp);
	return greet(in, (const uint8_t *)extra, (uint32_t)n, out);
{{- end}}
}
WASMPOD_HANDLE(serve)
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
			"src/lib.rs": `//! {{.Name}}: a wasmpod {{.What}}. It answers each {{.Unit}} with "GREETING, BODY",
//! GREETING from its config (pod.yaml).{{if .Leaf}} The merge joins the shards' answers with newlines.{{end}}
{{if .Leaf}}
wasmpod::leaf!(greet);
wasmpod::merge!(join);
{{- else if eq .Role "stage"}}
wasmpod::stage!(greet);
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
{{- if .Leaf}}

fn join(parts: wasmpod::Parts) -> wasmpod::Result<Vec<u8>> {
    Ok(parts.present().collect::<Vec<_>>().join(&b'\n'))
}
{{- end}}
`,
		},
		Helper: map[string]string{
			"src/lib.rs": `//! {{.Name}}: a wasmpod {{.Role}} and the main module it serves, in one crate: pod.yaml runs it
//! twice, as main (whose config key {{.Role}} names the {{.Role}} module) and as the {{.Role}}.

wasmpod::handle!(serve);

// The pod-local call (guest-sdk/ABI.md section 4.1){{if eq .Role "ambassador"}} and outbound TCP, only for the addresses of
// the module's network.allow{{end}}.
#[link(wasm_import_module = "wasmpod")]
extern "C" {
    #[link_name = "call"]
    fn pod_call_(target: *const u8, target_len: u32, input: *const u8, input_len: u32) -> i32;
    #[link_name = "call_result"]
    fn pod_call_result_(buf: *mut u8, cap: u32) -> i32;
{{- if eq .Role "ambassador"}}
    #[link_name = "net_dial"]
    fn net_dial_(addr: *const u8, addr_len: u32) -> i32;
    #[link_name = "net_write"]
    fn net_write_(handle: i32, buf: *const u8, len: u32) -> i32;
    #[link_name = "net_read"]
    fn net_read_(handle: i32, buf: *mut u8, cap: u32) -> i32;
    #[link_name = "net_close"]
    fn net_close_(handle: i32) -> i32;
{{- end}}
}

/// Calls the pod's module ` + "`" + `target` + "`" + ` with ` + "`" + `input` + "`" + `: its response, or the call import's code
/// with the host's message.
fn pod_call(target: &str, input: &[u8]) -> Result<Vec<u8>, (i32, String)> {
    let code = unsafe { pod_call_(target.as_ptr(), target.len() as u32, input.as_ptr(), input.len() as u32) };
    let n = unsafe { pod_call_result_(std::ptr::null_mut(), 0) };
    let mut kept = vec![0u8; n.max(0) as usize];
    if n > 0 {
        unsafe { pod_call_result_(kept.as_mut_ptr(), n as u32) };
    }
    if code < 0 {
        return Err((code, String::from_utf8_lossy(&kept).into_owned()));
    }
    Ok(kept)
}

/// Plays main when the module's config names its {{.Role}}, else the {{.Role}}.
fn serve(body: &[u8]) -> wasmpod::Result<Vec<u8>> {
    let helper = match wasmpod::config("{{.Role}}") {
        Some(helper) => helper,
        None => return {{.Role}}(body),
    };
{{- if eq .Role "adapter"}}
    // Main: answer, then have the adapter present the answer.
    pod_call(&helper, &greet(body)).map_err(|(code, msg)| wasmpod::err!(2, "adapter {}: code {}: {}", helper, code, msg))
{{- else if eq .Role "sidecar"}}
    // Main: hand the sidecar a copy of the request. Its failures are its own: log them, answer.
    if let Err((code, msg)) = pod_call(&helper, body) {
        wasmpod::warn!("sidecar {}: code {}: {}", helper, code, msg);
    }
    Ok(greet(body))
{{- else}}
    // Main: ask the upstream how it is, through the ambassador (main has no network).
    let mut status = "unreachable".to_string();
    match pod_call(&helper, b"GET /healthz HTTP/1.0\r\nConnection: close\r\n\r\n") {
        Err((code, msg)) => wasmpod::warn!("ambassador {}: code {}: {}", helper, code, msg),
        Ok(resp) => {
            if let Some(i) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
                status = String::from_utf8_lossy(&resp[i + 4..]).trim().to_string();
            }
        }
    }
    let mut out = greet(body);
    out.extend_from_slice(format!(" (upstream: {})", status).as_bytes());
    Ok(out)
{{- end}}
}

/// Main's answer: "GREETING, BODY", GREETING from its config.
fn greet(body: &[u8]) -> Vec<u8> {
    let greeting = wasmpod::config("greeting").unwrap_or_else(|| "hello".to_string());
    let mut out = greeting.into_bytes();
    out.extend_from_slice(b", ");
    out.extend_from_slice(body);
    out
}
{{- if eq .Role "adapter"}}

/// Presents main's answer in a uniform form: the JSON object {"message": ANSWER}.
fn adapter(answer: &[u8]) -> wasmpod::Result<Vec<u8>> {
    let mut out = b"{\"message\":\"".to_vec();
    for &c in answer {
        match c {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', c]),
            0..=0x1f => out.extend_from_slice(format!("\\u{:04x}", c).as_bytes()),
            _ => out.push(c),
        }
    }
    out.extend_from_slice(b"\"}");
    Ok(out)
}
{{- else if eq .Role "sidecar"}}

/// Bounds how much of a request the sidecar logs.
const MAX_LOGGED: usize = 256;

/// Gets a copy of each request main serves and logs it as an access-log line (its first
/// MAX_LOGGED bytes).
fn sidecar(request: &[u8]) -> wasmpod::Result<Vec<u8>> {
    if request.len() > MAX_LOGGED {
        wasmpod::info!("request: {}... ({} bytes)", String::from_utf8_lossy(&request[..MAX_LOGGED]), request.len());
    } else {
        wasmpod::info!("request: {}", String::from_utf8_lossy(request));
    }
    Ok(Vec::new())
}
{{- else}}

/// Bounds what the ambassador reads from the upstream.
const MAX_REPLY: usize = 1 << 20;

/// Forwards main's bytes to the upstream (its config key upstream, "host:port", which the pod
/// spec's network.allow must list) and returns what the upstream answers until it closes the
/// connection (at most MAX_REPLY bytes).
fn ambassador(request: &[u8]) -> wasmpod::Result<Vec<u8>> {
    let upstream = wasmpod::config("upstream").ok_or_else(|| wasmpod::err!(2, "no upstream in the config"))?;
    let h = unsafe { net_dial_(upstream.as_ptr(), upstream.len() as u32) };
    if h < 0 {
        return Err(wasmpod::err!(3, "dial {}: code {}", upstream, h));
    }
    let result = exchange(h, request, &upstream);
    unsafe { net_close_(h) };
    result
}

fn exchange(h: i32, request: &[u8], upstream: &str) -> wasmpod::Result<Vec<u8>> {
    let mut done = 0;
    while done < request.len() {
        let n = unsafe { net_write_(h, request[done..].as_ptr(), (request.len() - done) as u32) };
        if n < 0 {
            return Err(wasmpod::err!(3, "write {}: code {}", upstream, n));
        }
        done += n as usize;
    }
    let mut reply = Vec::new();
    let mut buf = vec![0u8; 65536];
    while reply.len() < MAX_REPLY {
        let n = unsafe { net_read_(h, buf.as_mut_ptr(), buf.len() as u32) };
        if n == 0 {
            break;
        }
        if n < 0 {
            return Err(wasmpod::err!(3, "read {}: code {}", upstream, n));
        }
        reply.extend_from_slice(&buf[..n as usize]);
    }
    reply.truncate(MAX_REPLY);
    Ok(reply)
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
			"assembly/index.ts": `// {{.Name}}: a wasmpod {{.What}}. It answers each {{.Unit}} with "GREETING, BODY",
// GREETING from its config (pod.yaml).{{if .Leaf}} The merge joins the shards' answers with newlines.{{end}}
export { wasmpod_abi_version, wasmpod_buffer } from "wasmpod-sdk";
import { input, ok, config{{if .Leaf}}, fail, mergeInput{{end}} } from "wasmpod-sdk";

export function {{.Export}}(len: i32): i64 {
  const body = input(len); // aliases the SDK buffer: copied below
  let greeting = config("greeting");
  if (greeting == null) greeting = "hello";
  const head = Uint8Array.wrap(String.UTF8.encode(greeting + ", "));
  const out = new Uint8Array(head.length + body.length);
  out.set(head, 0);
  out.set(body, head.length);
  return ok(out);
}
{{- if .Leaf}}

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
		Helper: map[string]string{
			"assembly/index.ts": `// {{.Name}}: a wasmpod {{.Role}} and the main module it serves, in one file: pod.yaml runs it
// twice, as main (whose config key {{.Role}} names the {{.Role}} module) and as the {{.Role}}.
export { wasmpod_abi_version, wasmpod_buffer } from "wasmpod-sdk";
import { input, ok, fail, config, info, warn } from "wasmpod-sdk";

// The pod-local call (guest-sdk/ABI.md section 4.1){{if eq .Role "ambassador"}} and outbound TCP, only for the addresses of
// the module's network.allow{{end}}.
@external("wasmpod", "call")
declare function pod_call_(target: usize, targetLen: i32, input: usize, inputLen: i32): i32;
@external("wasmpod", "call_result")
declare function pod_call_result_(buf: usize, cap: i32): i32;
{{- if eq .Role "ambassador"}}
@external("wasmpod", "net_dial")
declare function net_dial_(addr: usize, addrLen: i32): i32;
@external("wasmpod", "net_write")
declare function net_write_(handle: i32, buf: usize, len: i32): i32;
@external("wasmpod", "net_read")
declare function net_read_(handle: i32, buf: usize, cap: i32): i32;
@external("wasmpod", "net_close")
declare function net_close_(handle: i32): i32;
{{- end}}

// The code of the last podCall (negative: failed, and its result is the host's message).
let callCode: i32 = 0;

// Calls the pod's module target with data: its response, or on failure (callCode < 0) the
// host's message.
function podCall(target: string, data: Uint8Array): Uint8Array {
  const t = String.UTF8.encode(target);
  callCode = pod_call_(changetype<usize>(t), t.byteLength, data.dataStart, data.length);
  const n = pod_call_result_(0, 0);
  const kept = new Uint8Array(n > 0 ? n : 0);
  if (n > 0) pod_call_result_(kept.dataStart, n);
  return kept;
}

// Main's answer: "GREETING, BODY", GREETING from its config.
function greet(body: Uint8Array): Uint8Array {
  let greeting = config("greeting");
  if (greeting == null) greeting = "hello";
  const head = Uint8Array.wrap(String.UTF8.encode(greeting + ", "));
  const out = new Uint8Array(head.length + body.length);
  out.set(head, 0);
  out.set(body, head.length);
  return out;
}

// Plays main when the module's config names its {{.Role}}, else the {{.Role}}.
export function wasmpod_handle(len: i32): i64 {
  const body = input(len); // aliases the SDK buffer: used before the next call
  const helper = config("{{.Role}}");
  if (helper == null) return {{.Role}}(body);
{{- if eq .Role "adapter"}}
  // Main: answer, then have the adapter present the answer.
  const resp = podCall(helper, greet(body));
  if (callCode < 0) return fail(2, "adapter " + helper + ": code " + callCode.toString() + ": " + String.UTF8.decode(resp.buffer));
  return ok(resp);
{{- else if eq .Role "sidecar"}}
  // Main: hand the sidecar a copy of the request. Its failures are its own: log them, answer.
  const answer = greet(body);
  const resp = podCall(helper, body);
  if (callCode < 0) warn("sidecar " + helper + ": code " + callCode.toString() + ": " + String.UTF8.decode(resp.buffer));
  return ok(answer);
{{- else}}
  // Main: ask the upstream how it is, through the ambassador (main has no network).
  const answer = greet(body);
  let status = "unreachable";
  const resp = podCall(helper, Uint8Array.wrap(String.UTF8.encode("GET /healthz HTTP/1.0\r\nConnection: close\r\n\r\n")));
  if (callCode < 0) {
    warn("ambassador " + helper + ": code " + callCode.toString() + ": " + String.UTF8.decode(resp.buffer));
  } else {
    for (let i = 0; i + 4 <= resp.length; i++) {
      if (resp[i] == 13 && resp[i + 1] == 10 && resp[i + 2] == 13 && resp[i + 3] == 10) {
        status = String.UTF8.decode(resp.slice(i + 4).buffer).trim();
        break;
      }
    }
  }
  const tail = Uint8Array.wrap(String.UTF8.encode(" (upstream: " + status + ")"));
  const out = new Uint8Array(answer.length + tail.length);
  out.set(answer, 0);
  out.set(tail, answer.length);
  return ok(out);
{{- end}}
}
{{- if eq .Role "adapter"}}

// Presents main's answer in a uniform form: the JSON object {"message": ANSWER}.
function adapter(answer: Uint8Array): i64 {
  const hex = "0123456789abcdef";
  const out = new Uint8Array(answer.length * 6 + 16); // \u00XX at worst
  const head = "{\"message\":\"";
  let at = 0;
  for (let i = 0; i < head.length; i++) out[at++] = <u8>head.charCodeAt(i);
  for (let i = 0; i < answer.length; i++) {
    const c = answer[i];
    if (c == 0x22 || c == 0x5c) {
      out[at++] = 0x5c;
      out[at++] = c;
    } else if (c < 0x20) {
      out[at++] = 0x5c;
      out[at++] = 0x75; // u
      out[at++] = 0x30;
      out[at++] = 0x30;
      out[at++] = <u8>hex.charCodeAt(c >> 4);
      out[at++] = <u8>hex.charCodeAt(c & 15);
    } else {
      out[at++] = c;
    }
  }
  out[at++] = 0x22;
  out[at++] = 0x7d;
  return ok(out.subarray(0, at));
}
{{- else if eq .Role "sidecar"}}

// Bounds how much of a request the sidecar logs.
const MAX_LOGGED: i32 = 256;

// Gets a copy of each request main serves and logs it as an access-log line (its first
// MAX_LOGGED bytes).
function sidecar(request: Uint8Array): i64 {
  if (request.length > MAX_LOGGED) {
    info("request: " + String.UTF8.decodeUnsafe(request.dataStart, MAX_LOGGED) + "... (" + request.length.toString() + " bytes)");
  } else {
    info("request: " + String.UTF8.decodeUnsafe(request.dataStart, request.length));
  }
  return ok(new Uint8Array(0));
}
{{- else}}

// Bounds what the ambassador reads from the upstream.
const MAX_REPLY: i32 = 1 << 20;

// Forwards main's bytes to the upstream (its config key upstream, "host:port", which the pod
// spec's network.allow must list) and returns what the upstream answers until it closes the
// connection (at most MAX_REPLY bytes).
function ambassador(request: Uint8Array): i64 {
  const upstream = config("upstream");
  if (upstream == null) return fail(2, "no upstream in the config");
  const addr = String.UTF8.encode(upstream);
  const h = net_dial_(changetype<usize>(addr), addr.byteLength);
  if (h < 0) return fail(3, "dial " + upstream + ": code " + h.toString());
  for (let done = 0; done < request.length; ) {
    const n = net_write_(h, request.dataStart + <usize>done, request.length - done);
    if (n < 0) {
      net_close_(h);
      return fail(3, "write " + upstream + ": code " + n.toString());
    }
    done += n;
  }
  let reply = new Uint8Array(65536);
  let size = 0;
  while (size < MAX_REPLY) {
    if (size == reply.length) {
      const bigger = new Uint8Array(reply.length * 2);
      bigger.set(reply, 0);
      reply = bigger;
    }
    const n = net_read_(h, reply.dataStart + <usize>size, reply.length - size);
    if (n == 0) break;
    if (n < 0) {
      net_close_(h);
      return fail(3, "read " + upstream + ": code " + n.toString());
    }
    size += n;
  }
  net_close_(h);
  return ok(reply.subarray(0, size < MAX_REPLY ? size : MAX_REPLY));
}
{{- end}}
`,
		},
	},
	"extism-go": {
		Title:    `Go, as an Extism plugin (extism go-pdk)`,
		Needs:    `Go 1.24 or newer; go-pdk v1.1.3 comes from the Go module proxy (` + "`" + `go.sum` + "`" + ` pins it). The plugin knows nothing of wasmpod: any Extism host runs it, and wasmpod runs it with ` + "`" + `abi: extism` + "`" + `, its function ` + "`" + `{{.Function}}` + "`" + ` named in pod.yaml (` + "`" + `extism: {function: {{.Function}}}` + "`" + `).{{if .Helper}} The native main in ` + "`" + `main/` + "`" + ` uses the wasmpod Go SDK, which is not published as a module: ` + "`" + `wasmpod init` + "`" + ` wrote its source into ` + "`" + `wasmpod-sdk/go` + "`" + `, and ` + "`" + `go.mod` + "`" + ` points the SDK's module path there with a ` + "`" + `replace` + "`" + ` directive.{{end}}`,
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
// "GREETING, INPUT", GREETING from its config.{{if .Leaf}} Its function join is a wasmpod merge: it joins the
// parts of its input (framed as in wasmpod's guest-sdk/ABI.md section 2.1) with newlines.{{end}}
package main

import (
{{- if .Leaf}}
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
{{- if .Leaf}}

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
		Helper: map[string]string{
			".gitignore": `plugin.wasm
main.wasm
.wasmpod-state/
`,
			"go.mod": `module example.com/{{.Name}}

go 1.24

require (
	github.com/extism/go-pdk v1.1.3
	github.com/wasmpod/wasmpod/guest-sdk/go v0.0.0
)

// The wasmpod Go SDK (for the native main in main/) is not published as a module: wasmpod init
// wrote its source here.
replace github.com/wasmpod/wasmpod/guest-sdk/go => ./wasmpod-sdk/go
`,
			"main.go": `// Command {{.Name}} is an Extism plugin (extism go-pdk) that wasmpod runs as a {{.Role}}: its function
// {{.Role}} serves the main module in main/ (main.wasm), which calls it.
package main

import (
{{- if eq .Role "adapter"}}
	"encoding/json"
{{end}}
{{- if eq .Role "sidecar"}}
	"fmt"
{{end}}
{{- if eq .Role "ambassador"}}
	"fmt"
	"strings"
{{end}}
	"github.com/extism/go-pdk"
)
{{- if eq .Role "adapter"}}

// adapter presents main's answer in a uniform form: the JSON object {"message": ANSWER}.
//
//go:wasmexport adapter
func adapter() int32 {
	out, err := json.Marshal(struct {
		Message string ` + "`" + `json:"message"` + "`" + `
	}{string(pdk.Input())})
	if err != nil {
		pdk.SetError(err)
		return 1
	}
	pdk.Output(out)
	return 0
}
{{- else if eq .Role "sidecar"}}

// maxLogged bounds how much of a request the sidecar logs.
const maxLogged = 256

// sidecar gets a copy of each request main serves and logs it as an access-log line (its
// first maxLogged bytes).
//
//go:wasmexport sidecar
func sidecar() int32 {
	request := pdk.Input()
	if len(request) > maxLogged {
		pdk.Log(pdk.LogInfo, fmt.Sprintf("request: %s... (%d bytes)", request[:maxLogged], len(request)))
	} else {
		pdk.Log(pdk.LogInfo, "request: "+string(request))
	}
	return 0
}
{{- else}}

// ambassador sends an HTTP GET for the path main gives it to the upstream (its config key
// upstream, "host:port", which the pod spec's network.allow must list) and returns the
// response body.
//
//go:wasmexport ambassador
func ambassador() int32 {
	upstream, ok := pdk.GetConfig("upstream")
	if !ok {
		pdk.SetErrorString("no upstream in the config")
		return 2
	}
	path := string(pdk.Input())
	if !strings.HasPrefix(path, "/") {
		pdk.SetErrorString(fmt.Sprintf("path %q does not start with /", path))
		return 2
	}
	resp := pdk.NewHTTPRequest(pdk.MethodGet, "http://"+upstream+path).Send()
	if resp.Status() != 200 {
		pdk.SetErrorString(fmt.Sprintf("GET http://%s%s: status %d", upstream, path, resp.Status()))
		return 3
	}
	pdk.Output(resp.Body())
	return 0
}
{{- end}}

func main() {}
`,
			"main/main.go": `// Command main is the main module the Extism {{.Role}} (plugin.wasm) serves: a small native wasmpod
// module, since an Extism plugin cannot make the pod-local call (guest-sdk/ABI.md section 4.1)
// that reaches a helper. It answers each request with "GREETING, BODY", GREETING from its config.
package main

import (
{{- if eq .Role "ambassador"}}
	"bytes"
{{end}}
	wasmpod "github.com/wasmpod/wasmpod/guest-sdk/go"
	"github.com/wasmpod/wasmpod/guest-sdk/go/handler"
	"github.com/wasmpod/wasmpod/guest-sdk/go/pod"
)

func init() {
	handler.Handle(serve)
}

// serve answers a request with the help of the {{.Role}} its config names.
func serve(body []byte) ([]byte, error) {
	helper, ok := wasmpod.Config("{{.Role}}")
	if !ok {
		return nil, wasmpod.Codef(2, "no {{.Role}} in the config")
	}
{{- if eq .Role "adapter"}}
	// Answer, then have the adapter present the answer.
	return pod.Call(helper, greet(body))
{{- else if eq .Role "sidecar"}}
	// Hand the sidecar a copy of the request. Its failures are its own: log them, answer.
	if _, err := pod.Call(helper, body); err != nil {
		wasmpod.Warnf("sidecar: %v", err)
	}
	return greet(body), nil
{{- else}}
	// Ask the upstream how it is, through the ambassador (main has no network).
	status := "unreachable"
	if resp, err := pod.Call(helper, []byte("/healthz")); err != nil {
		wasmpod.Warnf("ambassador: %v", err)
	} else {
		status = string(bytes.TrimSpace(resp))
	}
	return append(greet(body), " (upstream: "+status+")"...), nil
{{- end}}
}

// greet is the answer: "GREETING, BODY", GREETING from the config.
func greet(body []byte) []byte {
	greeting, ok := wasmpod.Config("greeting")
	if !ok {
		greeting = "hello"
	}
	return append([]byte(greeting+", "), body...)
}

func main() {}
`,
		},
		HelperBuild: []string{`GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o main.wasm ./main`},
	},
	"extism-as": {
		Title:    `AssemblyScript, as an Extism plugin (@extism/as-pdk)`,
		Needs:    `Node.js >= 20 and npm; @extism/as-pdk and the compiler come from npm. The first ` + "`" + `npm install` + "`" + ` writes ` + "`" + `package-lock.json` + "`" + `; commit it, and use ` + "`" + `npm ci` + "`" + ` from then on. The plugin knows nothing of wasmpod: wasmpod runs it with ` + "`" + `abi: extism` + "`" + `, its function ` + "`" + `{{.Function}}` + "`" + ` named in pod.yaml.{{if .Helper}} The native main in ` + "`" + `main/` + "`" + ` uses the wasmpod AssemblyScript SDK, in ` + "`" + `wasmpod-sdk/assemblyscript` + "`" + `, a ` + "`" + `file:` + "`" + ` dependency inside the plugin.{{end}}`,
		Build:    []string{`npm install`, `npm run build`},
		Function: "greet",
		Files: map[string]string{
			".gitignore": `plugin.wasm
.wasmpod-state/
node_modules/
`,
			"assembly/index.ts": `// {{.Name}}: an Extism plugin (@extism/as-pdk). Its function greet answers with
// "GREETING, INPUT", GREETING from its config.{{if .Leaf}} Its function join is a wasmpod merge: it joins the
// parts of its input (framed as in wasmpod's guest-sdk/ABI.md section 2.1) with newlines.{{end}}
import { Config, Host } from "@extism/as-pdk";
{{- if .Leaf}}
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
{{- if .Leaf}}

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
		Helper: map[string]string{
			".gitignore": `plugin.wasm
main.wasm
.wasmpod-state/
node_modules/
`,
			"assembly/index.ts": `// {{.Name}}: an Extism plugin (@extism/as-pdk) that wasmpod runs as a {{.Role}}: its function {{.Role}}
// serves the main module in main/ (main.wasm), which calls it.
import { Host{{if eq .Role "ambassador"}}, Config, Memory{{end}}{{if eq .Role "sidecar"}}, LogLevel{{end}} } from "@extism/as-pdk";
{{- if eq .Role "ambassador"}}
import { error_set, http_request, length } from "@extism/as-pdk/lib/env";

// The status of the last http_request (an Extism host function as-pdk 1.0.0 does not declare).
@external("extism:host/env", "http_status_code")
declare function http_status_code(): i32;
{{- end}}

// AssemblyScript's abort, wired with --use abort=assembly/index/abort, so the plugin imports
// only Extism's host functions.
export function abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  unreachable();
}
{{- if eq .Role "adapter"}}

// Presents main's answer in a uniform form: the JSON object {"message": ANSWER}.
export function adapter(): i32 {
  const answer = Host.input();
  const hex = "0123456789abcdef";
  const out = new Uint8Array(answer.length * 6 + 16); // \u00XX at worst
  const head = "{\"message\":\"";
  let at = 0;
  for (let i = 0; i < head.length; i++) out[at++] = <u8>head.charCodeAt(i);
  for (let i = 0; i < answer.length; i++) {
    const c = answer[i];
    if (c == 0x22 || c == 0x5c) {
      out[at++] = 0x5c;
      out[at++] = c;
    } else if (c < 0x20) {
      out[at++] = 0x5c;
      out[at++] = 0x75; // u
      out[at++] = 0x30;
      out[at++] = 0x30;
      out[at++] = <u8>hex.charCodeAt(c >> 4);
      out[at++] = <u8>hex.charCodeAt(c & 15);
    } else {
      out[at++] = c;
    }
  }
  out[at++] = 0x22;
  out[at++] = 0x7d;
  Host.output(out.subarray(0, at));
  return 0;
}
{{- else if eq .Role "sidecar"}}

// Bounds how much of a request the sidecar logs.
const MAX_LOGGED: i32 = 256;

// Gets a copy of each request main serves and logs it as an access-log line (its first
// MAX_LOGGED bytes).
export function sidecar(): i32 {
  const request = Host.input();
  if (request.length > MAX_LOGGED) {
    Host.log(LogLevel.Info, "request: " + String.UTF8.decodeUnsafe(request.dataStart, MAX_LOGGED) + "... (" + request.length.toString() + " bytes)");
  } else {
    Host.log(LogLevel.Info, "request: " + String.UTF8.decodeUnsafe(request.dataStart, request.length));
  }
  return 0;
}
{{- else}}

// Sends an HTTP GET for the path main gives it to the upstream (its config key upstream,
// "host:port", which the pod spec's network.allow must list) and returns the response body.
export function ambassador(): i32 {
  const upstream = Config.get("upstream");
  if (upstream == null) return fail(2, "no upstream in the config");
  const input = Host.input();
  const path = String.UTF8.decodeUnsafe(input.dataStart, input.length);
  if (!path.startsWith("/") || path.includes("\"") || path.includes("\\") || upstream.includes("\"") || upstream.includes("\\")) {
    return fail(2, "bad path or upstream");
  }
  const url = "http://" + upstream + path;
  const req = Memory.allocateString('{"url":"' + url + '","method":"GET","headers":{}}');
  const offs = http_request(req.offset, 0);
  const status = http_status_code();
  if (status != 200) return fail(3, "GET " + url + ": status " + status.toString());
  if (offs == 0) {
    Host.output(new Uint8Array(0));
    return 0;
  }
  Host.outputMemory(new Memory(offs, length(offs)));
  return 0;
}

function fail(code: i32, message: string): i32 {
  error_set(Memory.allocateString(message).offset);
  return code;
}
{{- end}}
`,
			"main/index.ts": `// The main module the Extism {{.Role}} (plugin.wasm) serves: a small native wasmpod module, since an
// Extism plugin cannot make the pod-local call (guest-sdk/ABI.md section 4.1) that reaches a
// helper. It answers each request with "GREETING, BODY", GREETING from its config.
export { wasmpod_abi_version, wasmpod_buffer } from "wasmpod-sdk";
import { input, ok, fail, config, warn } from "wasmpod-sdk";

// The pod-local call.
@external("wasmpod", "call")
declare function pod_call_(target: usize, targetLen: i32, input: usize, inputLen: i32): i32;
@external("wasmpod", "call_result")
declare function pod_call_result_(buf: usize, cap: i32): i32;

// The code of the last podCall (negative: failed, and its result is the host's message).
let callCode: i32 = 0;

// Calls the pod's module target with data: its response, or on failure (callCode < 0) the
// host's message.
function podCall(target: string, data: Uint8Array): Uint8Array {
  const t = String.UTF8.encode(target);
  callCode = pod_call_(changetype<usize>(t), t.byteLength, data.dataStart, data.length);
  const n = pod_call_result_(0, 0);
  const kept = new Uint8Array(n > 0 ? n : 0);
  if (n > 0) pod_call_result_(kept.dataStart, n);
  return kept;
}

// The answer: "GREETING, BODY", GREETING from the config.
function greet(body: Uint8Array): Uint8Array {
  let greeting = config("greeting");
  if (greeting == null) greeting = "hello";
  const head = Uint8Array.wrap(String.UTF8.encode(greeting + ", "));
  const out = new Uint8Array(head.length + body.length);
  out.set(head, 0);
  out.set(body, head.length);
  return out;
}

// Answers a request with the help of the {{.Role}} its config names.
export function wasmpod_handle(len: i32): i64 {
  const body = input(len); // aliases the SDK buffer: used before the next call
  const helper = config("{{.Role}}");
  if (helper == null) return fail(2, "no {{.Role}} in the config");
{{- if eq .Role "adapter"}}
  // Answer, then have the adapter present the answer.
  const resp = podCall(helper, greet(body));
  if (callCode < 0) return fail(2, "adapter " + helper + ": code " + callCode.toString() + ": " + String.UTF8.decode(resp.buffer));
  return ok(resp);
{{- else if eq .Role "sidecar"}}
  // Hand the sidecar a copy of the request. Its failures are its own: log them, answer.
  const answer = greet(body);
  const resp = podCall(helper, body);
  if (callCode < 0) warn("sidecar " + helper + ": code " + callCode.toString() + ": " + String.UTF8.decode(resp.buffer));
  return ok(answer);
{{- else}}
  // Ask the upstream how it is, through the ambassador (main has no network).
  const answer = greet(body);
  let status = "unreachable";
  const resp = podCall(helper, Uint8Array.wrap(String.UTF8.encode("/healthz")));
  if (callCode < 0) {
    warn("ambassador " + helper + ": code " + callCode.toString() + ": " + String.UTF8.decode(resp.buffer));
  } else {
    status = String.UTF8.decode(resp.buffer).trim();
  }
  const tail = Uint8Array.wrap(String.UTF8.encode(" (upstream: " + status + ")"));
  const out = new Uint8Array(answer.length + tail.length);
  out.set(answer, 0);
  out.set(tail, answer.length);
  return ok(out);
{{- end}}
}
`,
			"package.json": `{
  "name": "{{.Name}}",
  "version": "0.1.0",
  "private": true,
  "scripts": {
    "build": "asc assembly/index.ts --use abort=assembly/index/abort --runtime incremental -O3 -o plugin.wasm && asc main/index.ts --config node_modules/wasmpod-sdk/asconfig.json -o main.wasm"
  },
  "dependencies": {
    "@extism/as-pdk": "1.0.0",
    "wasmpod-sdk": "file:./wasmpod-sdk/assemblyscript"
  },
  "devDependencies": {
    "assemblyscript": "0.28.20"
  }
}
`,
		},
	},
}
