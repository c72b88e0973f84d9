package podspec

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// header is the start of most specs in these tests; the body after it starts at line 5.
const header = "apiVersion: wasmpod.dev/v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"

// withModule is header plus one valid main module (lines 5-8); what follows starts at line 9.
const withModule = header + "  modules:\n    - name: web\n      wasm: web.wasm\n      role: main\n"

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		// want holds one fragment per expected problem, in order: "line N: path: text".
		want []string
	}{
		// Document-level problems.
		{"empty file", "", []string{"empty spec: expected a Pod"}},
		{"only comments", "# nothing here\n", []string{"empty spec"}},
		{"null document", "~\n", []string{"empty spec"}},
		{"two documents", withModule + "---\n" + withModule, []string{"line 9: a spec holds exactly one Pod, but a second YAML document starts here"}},
		{"syntax error", header + "  modules: [\n", []string{"invalid YAML"}},
		{"syntax error with line", "apiVersion: wasmpod.dev/v1\nkind: Pod\n  metadata: x\n", []string{"line 3: invalid YAML: mapping values are not allowed"}},
		{"top level list", "- a\n- b\n", []string{"line 1: expected a mapping, got a list"}},
		{"too big", withModule + "#" + strings.Repeat("x", MaxSpecBytes) + "\n", []string{"the limit is 1048576"}},

		// Strict decoding: unknown fields, wrong types, duplicates.
		{"unknown top-level field", "status: {}\n" + withModule, []string{`line 1: status: unknown field "status" (known fields: apiVersion, kind, metadata, spec)`}},
		{"unknown module field suggests", withModule + "      imag: web.wasm\n", []string{`line 9: spec.modules[0].imag: unknown field "imag"; did you mean "wasm"?`}},
		{"typo suggests the field", withModule + "      resources: {timout: 5s}\n", []string{`line 9: spec.modules[0].resources.timout: unknown field "timout"; did you mean "timeout"?`}},
		{"transposition suggests", withModule + "      resources: {memroy: 5Mi}\n", []string{`did you mean "memory"?`}},
		{"case suggests", withModule + "  RestartPolicy: Always\n", []string{`line 9: spec.RestartPolicy: unknown field "RestartPolicy"; did you mean "restartPolicy"?`}},
		{"kubernetes containers", header + "  containers: []\n" + "  modules: [{name: a, wasm: a.wasm}]\n", []string{`line 5: spec.containers: unknown field "containers"; did you mean "modules"? (a pod's containers are its modules)`}},
		{"kubernetes limits", withModule + "      resources:\n        limits: {memory: 64Mi}\n", []string{`line 10: spec.modules[0].resources.limits: unknown field "limits"; did you mean "memory"? (set memory, timeout, concurrency and minInstances directly under resources)`}},
		{"kubernetes namespace", "apiVersion: wasmpod.dev/v1\nkind: Pod\nmetadata: {name: p, namespace: default}\nspec:\n  modules: [{name: a, wasm: a.wasm}]\n", []string{`line 3: metadata.namespace: unknown field "namespace"; did you mean "name"? (wasmpod has no namespaces)`}},
		{"unknown field with odd name", withModule + "      \"a b\": 1\n", []string{`line 9: spec.modules[0]["a b"]: unknown field "a b"`}},
		{"duplicate field", withModule + "      wasm: other.wasm\n", []string{`line 9: spec.modules[0].wasm: duplicate field "wasm" (first set at line 7)`}},
		{"list expected", header + "  modules: {name: a}\n", []string{"line 5: spec.modules: expected a list, got a mapping"}},
		{"mapping expected", header + "  modules: [web]\n", []string{`line 5: spec.modules[0]: expected a mapping, got string "web"`}},
		{"string expected", header + "  modules: [{name: 123, wasm: a.wasm}]\n", []string{`line 5: spec.modules[0].name: expected a string, got number 123 (quote it: "123")`}},
		{"string expected from bool", header + "  modules: [{name: a, wasm: true}]\n", []string{`spec.modules[0].wasm: expected a string, got boolean true`}},
		{"integer expected, quoted", withModule + "      resources: {concurrency: \"4\"}\n", []string{`line 9: spec.modules[0].resources.concurrency: expected an integer, got string "4" (remove the quotes)`}},
		{"integer expected, float", withModule + "      resources: {concurrency: 1.5}\n", []string{`line 9: spec.modules[0].resources.concurrency: expected an integer, got number 1.5`}},
		{"integer out of range", withModule + "      resources: {concurrency: 99999999999}\n", []string{`line 9: spec.modules[0].resources.concurrency: integer 99999999999 is out of range`}},
		{"bool expected", withModule + "      trusted: yes\n", []string{`line 9: spec.modules[0].trusted: expected true or false, got string "yes"`}},
		{"bool quoted", withModule + "      trusted: \"true\"\n", []string{`expected true or false, got string "true" (remove the quotes)`}},
		{"config value number", withModule + "      config:\n        port: 8080\n", []string{`line 10: spec.modules[0].config.port: expected a string, got number 8080 (quote it: "8080")`}},
		{"config value null", withModule + "      config: {debug: }\n", []string{`line 9: spec.modules[0].config.debug: expected a string, got null (write "" for an empty value)`}},
		{"config not a map", withModule + "      config: [a]\n", []string{`line 9: spec.modules[0].config: expected a mapping of strings, got a list`}},
		{"config key invalid", withModule + "      config: {\"a b\": x}\n", []string{`line 9: spec.modules[0].config["a b"]: invalid config key "a b"`}},
		{"merge of a scalar", withModule + "      <<: 5\n", []string{`line 9: spec.modules[0]: a merge (<<) takes a mapping or a list of mappings, got number 5`}},
		{"merge of itself", header + "  modules:\n    - &m\n      name: a\n      wasm: a.wasm\n      <<: *m\n", []string{`spec.modules[0]: a merge (<<) includes the mapping it is in`}},

		// Scalars.
		{"quantity with MB", withModule + "      resources:\n        memory: 64MB\n", []string{`line 10: spec.modules[0].resources.memory: invalid quantity "64MB" (use Ki, Mi or Gi: "64Mi")`}},
		{"quantity garbage", withModule + "      resources: {memory: lots}\n", []string{`line 9: spec.modules[0].resources.memory: invalid quantity "lots"`}},
		{"quantity float", withModule + "      resources: {memory: 1.5}\n", []string{`spec.modules[0].resources.memory: expected a quantity such as "64Mi", got number 1.5`}},
		{"quantity fractional bytes", withModule + "      resources: {memory: 1.1Ki}\n", []string{`invalid quantity "1.1Ki": not a whole number of bytes`}},
		{"quantity negative", withModule + "      resources: {memory: -1Mi}\n", []string{`line 9: spec.modules[0].resources.memory: invalid quantity "-1Mi": must not be negative`}},
		{"memory below a page", withModule + "      resources: {memory: 32Ki}\n", []string{`line 9: spec.modules[0].resources.memory: memory 32Ki is less than one wasm page (64Ki)`}},
		{"memory above 4Gi", withModule + "      resources: {memory: 5Gi}\n", []string{`line 9: spec.modules[0].resources.memory: memory 5Gi exceeds 4Gi`}},
		{"duration without unit", withModule + "      resources: {timeout: 5}\n", []string{`line 9: spec.modules[0].resources.timeout: invalid duration 5: a duration needs a unit (e.g. "5s")`}},
		{"duration in days", withModule + "      tickInterval: 1d\n", []string{`line 9: spec.modules[0].tickInterval: invalid duration "1d" (there is no day unit: use hours, e.g. "24h")`}},
		{"duration negative", withModule + "      resources: {timeout: -1s}\n", []string{`line 9: spec.modules[0].resources.timeout: invalid duration "-1s": must not be negative`}},
		{"duration as list", withModule + "      tickInterval: [1s]\n", []string{`line 9: spec.modules[0].tickInterval: expected a duration such as "5s", got a list`}},
		{"tick too short", withModule + "      tickInterval: 100us\n", []string{`line 9: spec.modules[0].tickInterval: tick interval 100µs is too short (at least 1ms)`}},
		{"priority unknown name", withModule + "      priority: urgent\n", []string{`line 9: spec.modules[0].priority: invalid priority "urgent" (use high, normal, low or an integer)`}},
		{"priority wrong case", withModule + "      priority: High\n", []string{`invalid priority "High" (did you mean "high"?)`}},
		{"priority quoted number", withModule + "      priority: \"10\"\n", []string{`invalid priority "10" (a number must not be quoted)`}},
		{"priority out of range", withModule + "      priority: 2000000000\n", []string{`line 9: spec.modules[0].priority: priority 2000000000 is out of range [-1000000000, 1000000000]`}},
		{"priority beyond int32", withModule + "      priority: 9999999999\n", []string{`line 9: spec.modules[0].priority: priority 9999999999 is out of range`}},

		// Pod fields.
		{"apiVersion missing", "kind: Pod\nmetadata: {name: p}\nspec:\n  modules: [{name: a, wasm: a.wasm}]\n", []string{"line 1: apiVersion: required field is missing (use wasmpod.dev/v1)"}},
		{"apiVersion wrong", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  modules: [{name: a, wasm: a.wasm}]\n", []string{`line 1: apiVersion: unsupported apiVersion "v1" (use wasmpod.dev/v1)`}},
		{"kind wrong", "apiVersion: wasmpod.dev/v1\nkind: Deployment\nmetadata: {name: p}\nspec:\n  modules: [{name: a, wasm: a.wasm}]\n", []string{`line 2: kind: unsupported kind "Deployment" (use Pod)`}},
		{"name missing", "apiVersion: wasmpod.dev/v1\nkind: Pod\nmetadata: {}\nspec:\n  modules: [{name: a, wasm: a.wasm}]\n", []string{"line 3: metadata.name: required field is missing"}},
		{"name invalid", "apiVersion: wasmpod.dev/v1\nkind: Pod\nmetadata:\n  name: My_Pod\nspec:\n  modules: [{name: a, wasm: a.wasm}]\n", []string{`line 4: metadata.name: invalid name "My_Pod": must be a DNS-1123 subdomain`}},
		{"label key invalid", "apiVersion: wasmpod.dev/v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    -bad: x\nspec:\n  modules: [{name: a, wasm: a.wasm}]\n", []string{`line 6: metadata.labels["-bad"]: invalid label key`}},
		{"label prefix invalid", "apiVersion: wasmpod.dev/v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {\"Ex_ample/a\": x}\nspec:\n  modules: [{name: a, wasm: a.wasm}]\n", []string{`line 5: metadata.labels["Ex_ample/a"]: invalid label key: prefix "Ex_ample" must be a DNS-1123 subdomain`}},
		{"label value invalid", "apiVersion: wasmpod.dev/v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    app: \"a b\"\n", []string{`line 6: metadata.labels.app: invalid label value: "a b"`}},
		{"annotation key invalid", "apiVersion: wasmpod.dev/v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    \"a/b/c\": x\nspec:\n  modules: [{name: a, wasm: a.wasm}]\n", []string{`line 6: metadata.annotations["a/b/c"]: invalid annotation key`}},
		{"annotations too large", "apiVersion: wasmpod.dev/v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    big: " + strings.Repeat("x", 300*1024) + "\nspec:\n  modules: [{name: a, wasm: a.wasm}]\n", []string{`line 5: metadata.annotations: annotations take 307203 bytes; the limit is 256Ki`}},
		{"spec missing", "apiVersion: wasmpod.dev/v1\nkind: Pod\nmetadata: {name: p}\n", []string{"line 1: spec.modules: at least one module is required"}},
		{"modules empty", header + "  modules: []\n", []string{"line 5: spec.modules: at least one module is required"}},
		{"restart policy case", withModule + "  restartPolicy: always\n", []string{`line 9: spec.restartPolicy: unknown restart policy "always"; did you mean "Always"?`}},
		{"restart policy unknown", withModule + "  restartPolicy: Sometimes\n", []string{`unknown restart policy "Sometimes" (use Always, OnFailure or Never)`}},
		{"grace negative", withModule + "  terminationGracePeriodSeconds: -5\n", []string{"line 9: spec.terminationGracePeriodSeconds: must not be negative, got -5"}},
		{"backoff max below initial", withModule + "  restartBackoff:\n    initial: 1m\n    max: 10s\n", []string{"line 11: spec.restartBackoff.max: max (10s) is less than initial (1m0s)"}},

		// Modules.
		{"module name missing", header + "  modules:\n    - wasm: a.wasm\n", []string{"line 6: spec.modules[0].name: required field is missing"}},
		{"module name invalid", header + "  modules:\n    - name: Web\n      wasm: a.wasm\n", []string{`line 6: spec.modules[0].name: invalid name "Web": must be a DNS-1123 label`, `(did you mean "web"?)`}},
		{"module name too long", header + "  modules:\n    - name: " + strings.Repeat("a", 64) + "\n      wasm: a.wasm\n", []string{"line 6: spec.modules[0].name: invalid name"}},
		{"wasm missing", header + "  modules:\n    - name: a\n", []string{"line 6: spec.modules[0].wasm: required field is missing"}},
		{"wasm url", header + "  modules:\n    - name: a\n      wasm: https://example.com/a.wasm\n", []string{`line 7: spec.modules[0].wasm: "https://example.com/a.wasm" is a URL`}},
		{"sha256 short", withModule + "      sha256: abc\n", []string{`line 9: spec.modules[0].sha256: invalid sha256 "abc": want 64 hex digits, got 3 characters`}},
		{"sha256 prefixed", withModule + "      sha256: sha256:" + strings.Repeat("a", 64) + "\n", []string{`drop the "sha256:" prefix`}},
		{"sha256 not hex", withModule + "      sha256: " + strings.Repeat("g", 64) + "\n", []string{`line 9: spec.modules[0].sha256: invalid sha256`, "want 64 hex digits"}},
		{"duplicate module names", withModule + "    - name: web\n      wasm: b.wasm\n      role: sidecar\n", []string{`line 9: spec.modules[1].name: duplicate module name "web" (also spec.modules[0], line 6)`}},
		{"unknown role", withModule + "    - name: b\n      wasm: b.wasm\n      role: sidekick\n", []string{`line 11: spec.modules[1].role: unknown role "sidekick" (use main, sidecar, ambassador, adapter, leaf, merge or stage)`}},
		{"two mains", withModule + "    - name: b\n      wasm: b.wasm\n      role: main\n", []string{`line 11: spec.modules[1].role: more than one main module (spec.modules[0], line 6 is main too)`}},
		{"two mains by default", withModule + "    - name: b\n      wasm: b.wasm\n", []string{`line 9: spec.modules[1].role: more than one main module (spec.modules[0], line 6 is main too); role defaults to main when not set`}},
		{"two merges", header + "  modules:\n    - {name: a, wasm: a.wasm, role: merge}\n    - {name: b, wasm: b.wasm, role: merge}\n", []string{`line 7: spec.modules[1].role: more than one merge module`}},
		{"helper without main", header + "  modules:\n    - name: a\n      wasm: a.wasm\n      role: leaf\n    - name: b\n      wasm: b.wasm\n      role: adapter\n", []string{`line 11: spec.modules[1].role: role adapter serves a main module, but the pod has none`}},
		{"abi unknown", withModule + "      abi: wasi\n", []string{`line 9: spec.modules[0].abi: unknown abi "wasi" (use native or extism)`}},
		{"concurrency negative", withModule + "      resources: {concurrency: -1}\n", []string{"line 9: spec.modules[0].resources.concurrency: must not be negative, got -1"}},
		{"minInstances negative", withModule + "      resources: {minInstances: -2}\n", []string{"line 9: spec.modules[0].resources.minInstances: must not be negative, got -2"}},
		{"minInstances above concurrency", withModule + "      resources:\n        concurrency: 2\n        minInstances: 3\n", []string{"line 11: spec.modules[0].resources.minInstances: minInstances (3) exceeds concurrency (2)"}},
		{"probe negative", withModule + "      livenessProbe:\n        periodSeconds: -1\n        initialDelaySeconds: -3\n", []string{"line 10: spec.modules[0].livenessProbe.periodSeconds: must not be negative, got -1", "line 11: spec.modules[0].livenessProbe.initialDelaySeconds: must not be negative, got -3"}},
		{"liveness success threshold", withModule + "      livenessProbe: {successThreshold: 2}\n", []string{"line 9: spec.modules[0].livenessProbe.successThreshold: must be 1 for a liveness or startup probe, got 2"}},
		{"startup success threshold", withModule + "      startupProbe: {successThreshold: 3}\n", []string{"line 9: spec.modules[0].startupProbe.successThreshold: must be 1"}},
		{"probe httpGet", withModule + "      readinessProbe:\n        httpGet: {path: /}\n", []string{`line 10: spec.modules[0].readinessProbe.httpGet: unknown field "httpGet" (a probe calls the module's wasmpod_health export; set only its timing`}},
		{"probe typo", withModule + "      readinessProbe:\n        periodSecond: 3\n", []string{`line 10: spec.modules[0].readinessProbe.periodSecond: unknown field "periodSecond"; did you mean "periodSeconds"?`}},
		{"probe unknown field", withModule + "      readinessProbe:\n        color: red\n", []string{`line 10: spec.modules[0].readinessProbe.color: unknown field "color" (known fields: initialDelaySeconds, periodSeconds, timeoutSeconds, successThreshold, failureThreshold)`}},
		{"kubernetes ports", withModule + "      ports: [{containerPort: 80}]\n", []string{`line 9: spec.modules[0].ports: unknown field "ports" (modules do not listen on ports: the host routes requests to main)`}},
		{"scale min above max", withModule + "      allowScale: {min: 3, max: 2}\n", []string{"line 9: spec.modules[0].allowScale.min: min (3) exceeds max (2)"}},
		{"scale max above concurrency", withModule + "      resources: {concurrency: 2}\n      allowScale:\n        max: 8\n", []string{"line 11: spec.modules[0].allowScale.max: max (8) exceeds resources.concurrency (2)"}},
		{"scale excludes minInstances", withModule + "      resources: {minInstances: 1}\n      allowScale: {min: 2, max: 4}\n", []string{"line 9: spec.modules[0].resources.minInstances: minInstances (1) lies outside allowScale [2, 4]"}},
		{"scale negative", withModule + "      allowScale: {min: -1}\n", []string{"line 9: spec.modules[0].allowScale.min: must not be negative, got -1"}},
		{"network on main", withModule + "      network:\n        allow: [\"a.example.com:443\"]\n", []string{"line 9: spec.modules[0].network: only an ambassador or an Extism module may have a network allowlist (this module's role is main, abi native)"}},
		{"network on an Extism main", withModule + "      abi: extism\n      network:\n        allow: [\"a.example.com\", \"*.b.example.com:8443\", \"10.0.0.1\", \"[::1]\", \"::1\", \"bad_host!\", \"[10.0.0.1]\"]\n",
			[]string{
				`line 11: spec.modules[0].network.allow[4]: invalid host "::1": an IPv6 address must be in brackets`,
				`line 11: spec.modules[0].network.allow[5]: invalid destination "bad_host!": host must be a DNS name`,
				`line 11: spec.modules[0].network.allow[6]: invalid host "[10.0.0.1]": brackets are for IPv6 addresses only`,
			}},
		{"extism options on a native module", withModule + "      extism: {function: count_vowels}\n      resources: {vars: 1Mi}\n",
			[]string{
				"line 9: spec.modules[0].extism: extism options are for Extism modules; set abi: extism or remove them",
				"line 10: spec.modules[0].resources.vars: vars are Extism's (var_get, var_set); this module's abi is native",
			}},
		{"extism vars and function", withModule + "      abi: extism\n      extism: {function: \"a\\tb\"}\n      resources: {vars: 65Mi}\n",
			[]string{
				`line 10: spec.modules[0].extism.function: function name "a\tb" has a control character`,
				"line 11: spec.modules[0].resources.vars: vars 65Mi exceeds 64Mi",
			}},
		{"watch with sha256", withModule + "      watch: true\n      sha256: " + strings.Repeat("ab", 32) + "\n",
			[]string{"line 9: spec.modules[0].watch: a watched module takes whatever new bytes appear; remove sha256 (or watch)"}},
		{"network destinations", withModule + "    - name: amb\n      role: ambassador\n      wasm: amb.wasm\n      network:\n        allow:\n          - api.example.com\n          - \"x.example.com:0\"\n          - \"x.example.com:99999\"\n          - \"bad_host!:80\"\n          - \"ok.example.com:443\"\n          - \"OK.example.com:443\"\n          - \"[a.b]:80\"\n",
			[]string{
				`line 14: spec.modules[1].network.allow[0]: invalid destination "api.example.com": want host:port`,
				`line 15: spec.modules[1].network.allow[1]: invalid destination "x.example.com:0": port must be a number from 1 to 65535`,
				`line 16: spec.modules[1].network.allow[2]: invalid destination "x.example.com:99999": port must be`,
				`line 17: spec.modules[1].network.allow[3]: invalid destination "bad_host!:80": host must be a DNS name`,
				`line 19: spec.modules[1].network.allow[5]: duplicate destination "OK.example.com:443" (also spec.modules[1].network.allow[4], line 18)`,
				`line 20: spec.modules[1].network.allow[6]: invalid destination "[a.b]:80": brackets are for IPv6 addresses only`,
			}},

		// Volumes and mounts.
		{"volume without source", withModule + "  volumes:\n    - name: data\n", []string{"line 10: spec.volumes[0]: a volume needs exactly one source: emptyDir or hostPath"}},
		{"volume with two sources", withModule + "  volumes:\n    - name: data\n      emptyDir: {}\n      hostPath: {path: /tmp}\n", []string{"line 10: spec.volumes[0]: a volume needs exactly one source, got both emptyDir and hostPath"}},
		{"volume name missing", withModule + "  volumes:\n    - emptyDir: {}\n", []string{"line 10: spec.volumes[0].name: required field is missing"}},
		{"duplicate volume names", withModule + "  volumes:\n    - {name: data, emptyDir: {}}\n    - {name: data, emptyDir: {}}\n", []string{`line 11: spec.volumes[1].name: duplicate volume name "data" (also spec.volumes[0], line 10)`}},
		{"hostPath type", withModule + "  volumes:\n    - name: data\n      hostPath:\n        path: /srv\n        type: File\n", []string{`line 13: spec.volumes[0].hostPath.type: unsupported hostPath type "File" (a WASI mount is a directory: use Directory or DirectoryOrCreate)`}},
		{"hostPath path missing", withModule + "  volumes:\n    - name: data\n      hostPath: {type: Directory}\n", []string{"line 11: spec.volumes[0].hostPath.path: required field is missing"}},
		{"emptyDir sizeLimit invalid", withModule + "  volumes:\n    - name: data\n      emptyDir: {sizeLimit: 1GB}\n", []string{`line 11: spec.volumes[0].emptyDir.sizeLimit: invalid quantity "1GB" (use Ki, Mi or Gi: "1Gi")`}},
		{"mount of undefined volume", withModule + "      volumeMounts:\n        - name: dat\n          mountPath: /data\n  volumes:\n    - {name: data, emptyDir: {}}\n", []string{`line 10: spec.modules[0].volumeMounts[0].name: volume "dat" is not defined in spec.volumes; did you mean "data"?`}},
		{"mount without volumes", withModule + "      volumeMounts: [{name: data, mountPath: /data}]\n", []string{`line 9: spec.modules[0].volumeMounts[0].name: volume "data" is not defined (the pod has no spec.volumes)`}},
		{"mount path relative", withModule + "      volumeMounts:\n        - {name: data, mountPath: data}\n  volumes: [{name: data, emptyDir: {}}]\n", []string{`line 10: spec.modules[0].volumeMounts[0].mountPath: mount path "data" must be absolute (e.g. "/data")`}},
		{"mount path unclean", withModule + "      volumeMounts:\n        - {name: data, mountPath: /data/../x/}\n  volumes: [{name: data, emptyDir: {}}]\n", []string{`mount path "/data/../x/" is not clean (use "/x")`}},
		{"mount path twice", withModule + "      volumeMounts:\n        - {name: data, mountPath: /data}\n        - {name: data, mountPath: /data}\n  volumes: [{name: data, emptyDir: {}}]\n", []string{`line 11: spec.modules[0].volumeMounts[1].mountPath: mount path "/data" is already used by spec.modules[0].volumeMounts[0], line 10`}},
		{"mount fields missing", withModule + "      volumeMounts:\n        - readOnly: true\n", []string{"line 10: spec.modules[0].volumeMounts[0].name: required field is missing", "line 10: spec.modules[0].volumeMounts[0].mountPath: required field is missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.src), "")
			if err == nil {
				t.Fatalf("Parse succeeded, want errors %q", tt.want)
			}
			if p != nil {
				t.Errorf("Parse returned a Pod along with an error")
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("errors.Is(err, ErrInvalidSpec) = false for %v", err)
			}
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("error is %T, want *SpecError", err)
			}
			assertProblems(t, se, tt.want)
		})
	}
}

// assertProblems checks that want's fragments appear in se's problems in order (consecutive
// fragments may match the same problem), and that every problem has a message.
func assertProblems(t *testing.T, se *SpecError, want []string) {
	t.Helper()
	i := 0
	for _, p := range se.Problems {
		if p.Msg == "" {
			t.Errorf("problem without a message: %+v", p)
		}
		for i < len(want) && strings.Contains(p.Error(), want[i]) {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("missing problem %q in:\n%v", want[i], se)
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	src := header + `  modules:
    - name: Web
      wasm: web.wasm
      resources: {memory: 64MB, concurrency: -1}
    - name: Web
      role: sidekick
  volumes:
    - name: data
  restartPolicy: always
`
	_, err := Parse([]byte(src), "")
	var se *SpecError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a *SpecError", err)
	}
	want := []string{
		`line 6: spec.modules[0].name: invalid name "Web"`,
		`line 8: spec.modules[0].resources.memory: invalid quantity "64MB"`,
		`line 8: spec.modules[0].resources.concurrency: must not be negative, got -1`,
		`line 9: spec.modules[1].name: invalid name "Web"`,
		`line 9: spec.modules[1].name: duplicate module name "Web" (also spec.modules[0], line 6)`,
		`line 9: spec.modules[1].wasm: required field is missing`,
		`line 10: spec.modules[1].role: unknown role "sidekick"`,
		`line 12: spec.volumes[0]: a volume needs exactly one source`,
		`line 13: spec.restartPolicy: unknown restart policy "always"`,
	}
	if len(se.Problems) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(se.Problems), len(want), err)
	}
	assertProblems(t, se, want)
	// One line per problem, sorted by line.
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(se.Problems) {
		t.Errorf("Error() has %d lines for %d problems", len(lines), len(se.Problems))
	}
	for i := 1; i < len(se.Problems); i++ {
		if se.Problems[i].Line < se.Problems[i-1].Line {
			t.Errorf("problems not sorted by line: %d after %d", se.Problems[i].Line, se.Problems[i-1].Line)
		}
	}
	for _, p := range se.Problems {
		if !errors.Is(p, ErrInvalidSpec) {
			t.Errorf("problem %v does not wrap ErrInvalidSpec", p)
		}
	}
}

func TestDecodeErrorSuppressesFollowUps(t *testing.T) {
	// A name of the wrong type must not also be reported as missing, and a bad memory value
	// must not also be reported as below one page.
	src := header + "  modules:\n    - name: 12\n      wasm: a.wasm\n      resources: {memory: 12MB}\n"
	_, err := Parse([]byte(src), "")
	var se *SpecError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a *SpecError", err)
	}
	if len(se.Problems) != 2 {
		t.Errorf("got %d problems, want 2:\n%v", len(se.Problems), err)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	tests := []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "pod.yaml", Line: 12, Path: "spec.x", Msg: "bad"}, "pod.yaml:12: spec.x: bad"},
		{FieldError{File: "pod.yaml", Path: "spec.x", Msg: "bad"}, "pod.yaml: spec.x: bad"},
		{FieldError{Line: 3, Path: "spec.x", Msg: "bad"}, "line 3: spec.x: bad"},
		{FieldError{Path: "spec.x", Msg: "bad"}, "spec.x: bad"},
		{FieldError{File: "pod.yaml", Line: 1, Msg: "empty"}, "pod.yaml:1: empty"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestSuggestField(t *testing.T) {
	known := []string{"name", "role", "wasm", "sha256", "abi", "resources", "livenessProbe", "volumeMounts"}
	tests := []struct{ in, want string }{
		{"nmae", "name"},
		{"Name", "name"},
		{"wams", "wasm"},
		{"image", "wasm"},
		{"imag", "wasm"},
		{"resource", "resources"},
		{"livenesProbe", "livenessProbe"},
		{"mounts", "volumeMounts"},
		{"colour", ""},
		{"x", ""},
		{strings.Repeat("q", 100), ""},
	}
	for _, tt := range tests {
		if got, _ := suggestField(tt.in, known); got != tt.want {
			t.Errorf("suggestField(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"kitten", "sitting", 3},
		{"memory", "memroy", 1}, {"timeout", "timout", 1}, {"abc", "abc", 0},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestProblemsAreCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString(header + "  modules:\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "    - {name: m%d, wasm: m.wasm, role: leaf, colour: red}\n", i)
	}
	_, err := Parse([]byte(b.String()), "")
	var se *SpecError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a *SpecError", err)
	}
	if len(se.Problems) != maxProblems+1 {
		t.Fatalf("got %d problems, want %d", len(se.Problems), maxProblems+1)
	}
	if last := se.Problems[maxProblems].Error(); last != "800 more problems not listed" {
		t.Errorf("last problem = %q", last)
	}
	if first := se.Problems[0].Error(); !strings.HasPrefix(first, `line 6: spec.modules[0].colour: unknown field "colour"`) {
		t.Errorf("first problem = %q", first)
	}
}

func TestLargeSpecsStayFast(t *testing.T) {
	// Thousands of volumes and of mounts of undefined volumes: the checks must stay linear.
	var b strings.Builder
	b.WriteString(header + "  volumes:\n")
	for i := range 4000 {
		fmt.Fprintf(&b, "    - {name: v%d, emptyDir: {}}\n", i)
	}
	b.WriteString("  modules:\n")
	for i := range 4000 {
		fmt.Fprintf(&b, "    - {name: m%d, wasm: m.wasm, role: leaf, volumeMounts: [{name: x%d, mountPath: /a}], resources: {memory: 1Mi}}\n", i, i)
	}
	if b.Len() > MaxSpecBytes {
		t.Fatalf("test spec is %d bytes, over the limit", b.Len())
	}
	// No timing assertion (the machine may be loaded): the checks are linear by construction
	// (maxSuggestCandidates); BenchmarkParseLargeSpec shows the cost.
	_, err := Parse([]byte(b.String()), "")
	if err == nil {
		t.Fatal("Parse accepted mounts of undefined volumes")
	}
	if !strings.Contains(err.Error(), `spec.modules[0].volumeMounts[0].name`) {
		t.Fatalf("error does not name the first bad mount: %.300s", err)
	}
}

func BenchmarkParseLargeSpec(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(header + "  volumes:\n")
	for i := range 4000 {
		fmt.Fprintf(&sb, "    - {name: v%d, emptyDir: {}}\n", i)
	}
	sb.WriteString("  modules:\n")
	for i := range 4000 {
		fmt.Fprintf(&sb, "    - {name: m%d, wasm: m.wasm, role: leaf, volumeMounts: [{name: x%d, mountPath: /a}], resources: {memory: 1Mi}}\n", i, i)
	}
	spec := []byte(sb.String())
	for b.Loop() {
		if _, err := Parse(spec, ""); err == nil {
			b.Fatal("accepted")
		}
	}
}
