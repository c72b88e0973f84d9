package podspec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that every failure is a *SpecError wrapping
// ErrInvalidSpec with a message for each problem, that any accepted spec survives Marshal and
// Parse unchanged, with Marshal canonical, and that the work queue accepts its pipelines.
//
//	go test -run '^$' -fuzz FuzzParse -fuzztime 60s ./host/internal/podspec
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/*.yaml", "testdata/invalid/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	for _, s := range []string{
		"",
		withModule,
		withModule + "---\n" + withModule,
		withModule + "      config: {a: \"\\x7f\\u0085\\ufeff\\u2028\", b: \"\\t\\r\\n\"}\n",
		withModule + "      priority: high\n      tickInterval: 1h30m\n      allowScale: {}\n      livenessProbe: {}\n",
		withModule + "  volumes: [{name: v, emptyDir: {sizeLimit: 1.5Gi}}]\n",
		withModule + "      resources: {logs: {linesPerSecond: 10, burst: 20, bytesPerSecond: 1Ki, burstBytes: 8Ki}}\n",
		withModule + "      resources: {logs: {unlimited: true}}\n",
		header + "  modules: [&m {name: a, wasm: a.wasm}, {<<: *m, name: b, role: leaf}]\n",
		header + "  modules: [{name: l, role: leaf, wasm: l.wasm}, {name: m, role: merge, wasm: m.wasm}]\n  scatter: {path: /q, shards: [{name: s0, leaf: l}, {name: s1, remote: true}], hedge: {disabled: true}}\n",
		header + "  modules: [{name: m, role: merge, wasm: m.wasm}]\n  scatter:\n    replicas: 3\n    deadline: 1s\n    mergeReserve: 999ms\n    shards: [{name: s0, remote: true}]\n",
		header + "  modules: [{name: m, role: merge, wasm: m.wasm}]\n  scatter:\n",
		header + "  modules: [{name: s, role: stage, wasm: s.wasm}, {name: t, role: stage, wasm: t.wasm}]\n  pipelines:\n    - {name: p.1, maxAttempts: 1000, backoff: 1h, stages: [{module: s}, {module: t, merge: true}, {module: s}]}\n    - {name: q, stages: [{module: t}]}\n",
		header + "  modules: [{name: s, role: stage, wasm: s.wasm}]\n  pipelines: [{name: p, maxAttempts: 0, backoff: 0, stages: [{module: s, merge: false}]}]\n",
		"{\"apiVersion\":\"wasmpod.dev/v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"j\"},\"spec\":{\"modules\":[{\"name\":\"a\",\"wasm\":\"a.wasm\"}]}}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "base")
		if err != nil {
			var se *SpecError
			if !errors.As(err, &se) || !errors.Is(err, ErrInvalidSpec) || p != nil {
				t.Fatalf("Parse error %T (pod %v) is not a *SpecError wrapping ErrInvalidSpec: %v", err, p != nil, err)
			}
			for _, fe := range se.Problems {
				if fe.Msg == "" {
					t.Fatalf("problem without a message: %+v", fe)
				}
			}
			return
		}
		b, err := p.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		if len(b) > MaxSpecBytes {
			return // aliases expanded the spec past what Parse reads; nothing to compare
		}
		p2, err := Parse(b, "base")
		if err != nil {
			t.Fatalf("Parse(Marshal()) failed: %v\ninput: %q\nmarshaled: %s", err, data, b)
		}
		if a, b := withoutSource(p), withoutSource(p2); !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed the pod:\n%#v\n%#v", a, b)
		}
		b2, err := p2.Marshal()
		if err != nil || string(b2) != string(b) {
			t.Fatalf("Marshal is not canonical:\n%s\n%s", b, b2)
		}
		if err := p2.Validate(ValidateOptions{}); err != nil {
			t.Fatalf("Validate of an accepted spec: %v", err)
		}
		for i := range p.Spec.Pipelines {
			q := p.Spec.Pipelines[i].Queue()
			if err := q.Validate(); err != nil {
				t.Fatalf("the queue refuses pipeline %d of an accepted spec: %v", i, err)
			}
		}
	})
}
