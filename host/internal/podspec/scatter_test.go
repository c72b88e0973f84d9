package podspec

import (
	"strings"
	"testing"
	"time"
)

// scatterPod is a pod with two leaves and a merge (lines 5-15); its scatter section starts at
// line 16 with "  scatter:" and the lines given.
func scatterPod(lines ...string) string {
	return header + `  modules:
    - name: leaf-a
      role: leaf
      wasm: leaf.wasm
    - name: leaf-b
      role: leaf
      wasm: leaf.wasm
    - name: merge
      role: merge
      wasm: merge.wasm
    - {name: web, wasm: web.wasm}
  scatter:
` + strings.Join(lines, "\n") + "\n"
}

func TestScatterDefaults(t *testing.T) {
	p, err := Parse([]byte(scatterPod("    shards: [{name: s0, leaf: leaf-a}, {name: s1, remote: true}]")), "")
	if err != nil {
		t.Fatal(err)
	}
	sc := p.Spec.Scatter
	if sc.Path != "/" || sc.Merge != "merge" || sc.Replicas != 2 || sc.Deadline.Std() != 200*time.Millisecond ||
		sc.MergeReserve.Std() != 10*time.Millisecond || sc.Hedge != (Hedge{Min: Duration(time.Millisecond), Initial: Duration(5 * time.Millisecond), Percentile: 95}) {
		t.Errorf("defaults: %+v", sc)
	}
	if !sc.Shards[0].Local() || sc.Shards[1].Local() {
		t.Errorf("Local: %+v", sc.Shards)
	}
}

func TestScatterErrors(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  []string // one fragment per problem, in order
	}{
		{"no shards", []string{"    path: /q"}, []string{"line 16: spec.scatter.shards: at least one shard is required"}},
		{"unknown field", []string{"    shard: []", "    shards: [{name: s0, leaf: leaf-a}]"}, []string{`line 17: spec.scatter.shard: unknown field "shard"; did you mean "shards"?`}},
		{"unknown shard field", []string{"    shards: [{name: s0, module: leaf-a}]"}, []string{`line 17: spec.scatter.shards[0].module: unknown field "module"`, "set leaf"}},
		{"neither leaf nor remote", []string{"    shards:", "      - name: s0"}, []string{"line 18: spec.scatter.shards[0]: set leaf (the module holding the shard on this node) or remote: true"}},
		{"both leaf and remote", []string{"    shards: [{name: s0, leaf: leaf-a, remote: true}]"}, []string{"spec.scatter.shards[0].remote: a shard with a local leaf module is not remote"}},
		{"duplicate shard", []string{"    shards:", "      - {name: s0, leaf: leaf-a}", "      - {name: s0, leaf: leaf-b}"}, []string{`line 19: spec.scatter.shards[1].name: duplicate shard name "s0" (also spec.scatter.shards[0], line 18)`}},
		{"bad shard name", []string{"    shards: [{name: S_0, remote: true}]"}, []string{"spec.scatter.shards[0].name:"}},
		{"missing shard name", []string{"    shards: [{remote: true}]"}, []string{"spec.scatter.shards[0].name: required field is missing"}},
		{"leaf not found", []string{"    shards: [{name: s0, leaf: leaf-c}]"}, []string{`line 17: spec.scatter.shards[0].leaf: no module named "leaf-c" in spec.modules; did you mean "leaf-a"?`}},
		{"leaf of wrong role", []string{"    shards: [{name: s0, leaf: web}]"}, []string{`spec.scatter.shards[0].leaf: module "web" has role main; a shard's module needs role leaf`}},
		{"leaf used twice", []string{"    shards: [{name: s0, leaf: leaf-a}, {name: s1, leaf: leaf-a}]"}, []string{`spec.scatter.shards[1].leaf: module "leaf-a" already serves spec.scatter.shards[0]`}},
		{"merge of wrong role", []string{"    merge: leaf-b", "    shards: [{name: s0, leaf: leaf-a}]"}, []string{`line 17: spec.scatter.merge: module "leaf-b" has role leaf; the merge module needs role merge`}},
		{"merge not found", []string{"    merge: merger", "    shards: [{name: s0, leaf: leaf-a}]"}, []string{`spec.scatter.merge: no module named "merger" in spec.modules; did you mean "merge"?`}},
		{"relative path", []string{"    path: search", "    shards: [{name: s0, leaf: leaf-a}]"}, []string{`line 17: spec.scatter.path: path "search" must start with /`}},
		{"unclean path", []string{"    path: /a/../b", "    shards: [{name: s0, leaf: leaf-a}]"}, []string{`spec.scatter.path: path "/a/../b" is not a clean URL path`}},
		{"path with query", []string{"    path: /a?q=1", "    shards: [{name: s0, leaf: leaf-a}]"}, []string{`is not a clean URL path`}},
		{"reserved path", []string{"    path: /_wasmpod/x", "    shards: [{name: s0, leaf: leaf-a}]"}, []string{`reserved for the host`}},
		{"replicas negative", []string{"    replicas: -1", "    shards: [{name: s0, leaf: leaf-a}]"}, []string{"line 17: spec.scatter.replicas: must be at least 1, got -1"}},
		{"reserve over deadline", []string{"    deadline: 10ms", "    mergeReserve: 10ms", "    shards: [{name: s0, leaf: leaf-a}]"}, []string{"line 18: spec.scatter.mergeReserve: mergeReserve (10ms) must be less than deadline (10ms)"}},
		{"deadline as number", []string{"    deadline: 100", "    shards: [{name: s0, leaf: leaf-a}]"}, []string{"line 17: spec.scatter.deadline: invalid duration 100"}},
		{"percentile out of range", []string{"    hedge: {percentile: 101}", "    shards: [{name: s0, leaf: leaf-a}]"}, []string{"line 17: spec.scatter.hedge.percentile: must be in [1, 100], got 101"}},
		{"hedge typo", []string{"    hedge: {disable: true}", "    shards: [{name: s0, leaf: leaf-a}]"}, []string{`spec.scatter.hedge.disable: unknown field "disable"; did you mean "disabled"?`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(scatterPod(tt.lines...)), "")
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", scatterPod(tt.lines...))
			}
			se := err.(*SpecError)
			if len(se.Problems) != len(tt.want) {
				t.Fatalf("%d problems, want %d:\n%v", len(se.Problems), len(tt.want), err)
			}
			for i, w := range tt.want {
				if got := se.Problems[i].Error(); !strings.Contains(got, w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got, w)
				}
			}
		})
	}
}

func TestScatterMergeRequired(t *testing.T) {
	src := header + "  modules: [{name: l, role: leaf, wasm: l.wasm}]\n  scatter:\n    shards: [{name: s0, leaf: l}]\n"
	_, err := Parse([]byte(src), "")
	if err == nil || !strings.Contains(err.Error(), "line 6: spec.scatter.merge: required: the pod has no module with role merge") {
		t.Fatalf("err = %v", err)
	}
}
