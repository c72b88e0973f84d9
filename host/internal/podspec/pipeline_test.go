package podspec

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster/queue"
)

// pipelinePod is a pod with three stage modules and a main (lines 5-9); its pipelines section
// starts at line 10 with "  pipelines:" and the lines given start at line 11.
func pipelinePod(lines ...string) string {
	return header + `  modules:
    - {name: gunzip, role: stage, wasm: gunzip.wasm}
    - {name: wc, role: stage, wasm: wc.wasm}
    - {name: sum, role: stage, wasm: sum.wasm}
    - {name: web, wasm: web.wasm}
  pipelines:
` + strings.Join(lines, "\n") + "\n"
}

func TestPipelines(t *testing.T) {
	p, err := Parse([]byte(pipelinePod(
		"    - name: changelogs",
		"      maxAttempts: 3",
		"      backoff: 250ms",
		"      stages:",
		"        - module: gunzip",
		"        - module: wc",
		"        - {module: sum, merge: true}",
		"    - name: count.v2_x",
		"      stages: [{module: wc}, {module: wc}]",
	)), "")
	if err != nil {
		t.Fatal(err)
	}
	want := []queue.Pipeline{
		{Name: "changelogs", MaxAttempts: 3, Backoff: 250 * time.Millisecond, Stages: []queue.StageDef{{Name: "gunzip"}, {Name: "wc"}, {Name: "sum", Merge: true}}},
		// No defaults are filled in: zero leaves the choice to the cluster.
		{Name: "count.v2_x", Stages: []queue.StageDef{{Name: "wc"}, {Name: "wc"}}},
	}
	for i := range p.Spec.Pipelines {
		q := p.Spec.Pipelines[i].Queue()
		if !reflect.DeepEqual(q, want[i]) {
			t.Errorf("pipeline %d: Queue() = %+v, want %+v", i, q, want[i])
		}
		if err := q.Validate(); err != nil {
			t.Errorf("the queue refuses a valid spec pipeline: %v", err)
		}
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); !strings.Contains(s, `"pipelines":[{"name":"changelogs","maxAttempts":3,"backoff":"250ms","stages":[{"module":"gunzip"},{"module":"wc"},{"module":"sum","merge":true}]}`) {
		t.Errorf("Marshal() shows the pipelines as:\n%s", s)
	}
}

func TestPipelineErrors(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  []string // one fragment per problem, in order
	}{
		{"name missing", []string{"    - stages: [{module: wc}]"}, []string{"line 11: spec.pipelines[0].name: required field is missing"}},
		{"name uppercase", []string{"    - {name: Logs, stages: [{module: wc}]}"}, []string{`line 11: spec.pipelines[0].name: invalid pipeline name "Logs": want 1 to 64 lowercase letters, digits, '.', '_' and '-', starting and ending with a letter or digit (did you mean "logs"?)`}},
		{"name too long", []string{"    - {name: " + strings.Repeat("a", 65) + ", stages: [{module: wc}]}"}, []string{"line 11: spec.pipelines[0].name: invalid pipeline name"}},
		{"name with slash", []string{"    - {name: a/b, stages: [{module: wc}]}"}, []string{`invalid pipeline name "a/b"`}},
		{"name ends with dot", []string{"    - {name: a., stages: [{module: wc}]}"}, []string{`invalid pipeline name "a."`}},
		{"duplicate name", []string{"    - {name: p, stages: [{module: wc}]}", "    - {name: p, stages: [{module: sum}]}"}, []string{`line 12: spec.pipelines[1].name: duplicate pipeline name "p" (also spec.pipelines[0], line 11)`}},
		{"no stages", []string{"    - name: p"}, []string{"line 11: spec.pipelines[0].stages: at least one stage is required"}},
		{"empty stages", []string{"    - name: p", "      stages: []"}, []string{"line 12: spec.pipelines[0].stages: at least one stage is required"}},
		{"too many stages", []string{"    - name: p", "      stages: [" + strings.Repeat("{module: wc}, ", 65) + "]"}, []string{"line 12: spec.pipelines[0].stages: 65 stages is over the limit of 64"}},
		{"stage module missing", []string{"    - name: p", "      stages:", "        - merge: false"}, []string{"line 13: spec.pipelines[0].stages[0].module: required field is missing (the name of a module with role stage)"}},
		{"stage module typo", []string{"    - name: p", "      stages:", "        - module: gunzp"}, []string{`line 13: spec.pipelines[0].stages[0].module: no module named "gunzp" in spec.modules; did you mean "gunzip"?`}},
		{"stage module unknown", []string{"    - name: p", "      stages:", "        - module: resize"}, []string{`no module named "resize" in spec.modules (use gunzip, sum or wc)`}},
		{"stage module of wrong role", []string{"    - name: p", "      stages:", "        - module: web"}, []string{`line 13: spec.pipelines[0].stages[0].module: module "web" has role main; a pipeline stage needs a module with role stage`}},
		{"merge first", []string{"    - name: p", "      stages:", "        - {module: sum, merge: true}"}, []string{"line 13: spec.pipelines[0].stages[0].merge: the first stage cannot merge: a merge stage runs over the outputs of the stage before it"}},
		{"merge quoted", []string{"    - name: p", "      stages:", "        - module: wc", "        - {module: sum, merge: \"true\"}"}, []string{`line 14: spec.pipelines[0].stages[1].merge: expected true or false, got string "true" (remove the quotes)`}},
		{"maxAttempts negative", []string{"    - name: p", "      maxAttempts: -1", "      stages: [{module: wc}]"}, []string{"line 12: spec.pipelines[0].maxAttempts: must not be negative, got -1 (leave it out for the cluster's default)"}},
		{"maxAttempts too large", []string{"    - name: p", "      maxAttempts: 1001", "      stages: [{module: wc}]"}, []string{"line 12: spec.pipelines[0].maxAttempts: maxAttempts 1001 is over the limit of 1000"}},
		{"maxAttempts quoted", []string{"    - name: p", "      maxAttempts: \"3\"", "      stages: [{module: wc}]"}, []string{`line 12: spec.pipelines[0].maxAttempts: expected an integer, got string "3" (remove the quotes)`}},
		{"backoff without unit", []string{"    - name: p", "      backoff: 2", "      stages: [{module: wc}]"}, []string{`line 12: spec.pipelines[0].backoff: invalid duration 2: a duration needs a unit (e.g. "2s")`}},
		{"backoff negative", []string{"    - name: p", "      backoff: -1s", "      stages: [{module: wc}]"}, []string{`line 12: spec.pipelines[0].backoff: invalid duration "-1s": must not be negative`}},
		{"field typo", []string{"    - name: p", "      maxAttempt: 3", "      stages: [{module: wc}]"}, []string{`line 12: spec.pipelines[0].maxAttempt: unknown field "maxAttempt"; did you mean "maxAttempts"?`}},
		{"stage field typo", []string{"    - name: p", "      stages:", "        - modul: wc"}, []string{`line 13: spec.pipelines[0].stages[0].modul: unknown field "modul"; did you mean "module"?`, "line 13: spec.pipelines[0].stages[0].module: required field is missing"}},
		{"stage as a string", []string{"    - name: p", "      stages: [wc]"}, []string{`line 12: spec.pipelines[0].stages[0]: expected a mapping, got string "wc"`}},
		{"pipelines not a list", []string{"    name: p"}, []string{"line 11: spec.pipelines: expected a list, got a mapping"}},
		{"every problem at once", []string{"    - name: P", "      maxAttempts: -2", "      stages:", "        - {module: sum, merge: true}", "        - module: web", "    - {name: q, stages: [{module: wc}]}", "    - {name: q, stages: [{module: nope}]}"},
			[]string{
				`line 11: spec.pipelines[0].name: invalid pipeline name "P"`,
				"line 12: spec.pipelines[0].maxAttempts: must not be negative, got -2",
				"line 14: spec.pipelines[0].stages[0].merge: the first stage cannot merge",
				`line 15: spec.pipelines[0].stages[1].module: module "web" has role main`,
				`line 17: spec.pipelines[2].name: duplicate pipeline name "q" (also spec.pipelines[1], line 16)`,
				`line 17: spec.pipelines[2].stages[0].module: no module named "nope"`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := pipelinePod(tt.lines...)
			_, err := Parse([]byte(src), "")
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", src)
			}
			var se *SpecError
			if !errors.As(err, &se) || !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("error %T is not a *SpecError wrapping ErrInvalidSpec: %v", err, err)
			}
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

func TestPipelineWithoutStageModules(t *testing.T) {
	src := withModule + "  pipelines: [{name: p, stages: [{module: web2}]}]\n"
	_, err := Parse([]byte(src), "")
	if err == nil || !strings.Contains(err.Error(), `line 9: spec.pipelines[0].stages[0].module: no module named "web2" in spec.modules (and the pod has no module with role stage)`) {
		t.Fatalf("err = %v", err)
	}
}

// TestPipelineValidationMatchesQueue checks the spec's rules against the queue's own: a pipeline
// the spec accepts is one the queue accepts, at every bound.
func TestPipelineValidationMatchesQueue(t *testing.T) {
	stages := func(n int) string {
		return "[" + strings.Repeat("{module: wc}, ", n) + "]"
	}
	tests := []struct {
		name, attempts, stages string
		ok                     bool
	}{
		{"a", "0", stages(1), true},
		{"a", "1000", stages(64), true},
		{"a", "1001", stages(1), false},
		{"a", "1", stages(65), false},
		{strings.Repeat("x", 64), "1", stages(1), true},
		{strings.Repeat("x", 65), "1", stages(1), false},
		{"0.a_b-9", "1", stages(1), true},
		{"-a", "1", stages(1), false},
		{"a_", "1", stages(1), false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.10s/%s", tt.name, tt.attempts), func(t *testing.T) {
			src := pipelinePod(fmt.Sprintf("    - {name: %q, maxAttempts: %s, stages: %s}", tt.name, tt.attempts, tt.stages))
			p, err := Parse([]byte(src), "")
			if (err == nil) != tt.ok {
				t.Fatalf("Parse: %v, want ok=%v", err, tt.ok)
			}
			if err != nil {
				return
			}
			q := p.Spec.Pipelines[0].Queue()
			if err := q.Validate(); err != nil {
				t.Fatalf("the spec accepts what the queue refuses: %v", err)
			}
		})
	}
}

func TestPipelineValidateGoBuilt(t *testing.T) {
	p := &Pod{
		APIVersion: APIVersion, Kind: KindPod, Metadata: ObjectMeta{Name: "go-built"},
		Spec: PodSpec{
			Modules:   []Module{{Name: "s", Role: RoleStage, Wasm: "s.wasm"}},
			Pipelines: []Pipeline{{Name: "p", Backoff: Duration(-time.Second), Stages: []PipelineStage{{Module: "s"}}}},
		},
	}
	p.ApplyDefaults()
	err := p.Validate(ValidateOptions{})
	if err == nil || err.Error() != "spec.pipelines[0].backoff: must not be negative, got -1s" {
		t.Fatalf("Validate = %v", err)
	}
	p.Spec.Pipelines[0].Backoff = 0
	if err := p.Validate(ValidateOptions{}); err != nil {
		t.Fatalf("Validate = %v", err)
	}
}
