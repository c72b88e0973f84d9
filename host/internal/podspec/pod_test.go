package podspec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/invalid/*.golden")

// withoutSource returns a copy of p without its parse positions, for comparisons.
func withoutSource(p *Pod) Pod {
	c := *p
	c.src = nil
	return c
}

func mustParseFile(t *testing.T, name string) *Pod {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(data, filepath.Dir(name))
	if err != nil {
		t.Fatalf("Parse(%s): %v", name, err)
	}
	return p
}

func TestExamples(t *testing.T) {
	tests := []struct {
		file  string
		check func(t *testing.T, p *Pod)
	}{
		{"minimal.yaml", func(t *testing.T, p *Pod) {
			want := Pod{
				APIVersion: APIVersion,
				Kind:       KindPod,
				Metadata:   ObjectMeta{Name: "echo"},
				Spec: PodSpec{
					Modules: []Module{{
						Name: "echo", Role: RoleMain, Wasm: "echo.wasm", ABI: ABINative,
						Resources: Resources{Memory: 64 * Mi, Timeout: Duration(5 * time.Second), Concurrency: 4, MinInstances: 1},
					}},
					RestartPolicy:                 RestartAlways,
					TerminationGracePeriodSeconds: ptr(int64(30)),
					RestartBackoff:                Backoff{Initial: Duration(10 * time.Second), Max: Duration(5 * time.Minute), ResetAfter: Duration(10 * time.Minute)},
				},
				BaseDir: "testdata",
			}
			if got := withoutSource(p); !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		}},
		{"sidecar.yaml", func(t *testing.T, p *Pod) {
			web, ship := p.Module("web"), p.Module("log-shipper")
			if web == nil || ship == nil {
				t.Fatal("modules web and log-shipper not found")
			}
			if web.Priority != PriorityHigh || ship.Priority != PriorityLow {
				t.Errorf("priorities = %d, %d", web.Priority, ship.Priority)
			}
			if got := web.Resources; got != (Resources{Memory: 32 * Mi, Timeout: Duration(2 * time.Second), Concurrency: 8, MinInstances: 2}) {
				t.Errorf("web resources = %+v", got)
			}
			if got := *web.ReadinessProbe; got != (Probe{PeriodSeconds: 5, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3}) {
				t.Errorf("readiness probe = %+v", got)
			}
			if got := *web.LivenessProbe; got != DefaultProbe() {
				t.Errorf("liveness probe = %+v, want the defaults", got)
			}
			if web.StartupProbe != nil {
				t.Error("startup probe set, want nil")
			}
			if ship.TickInterval.Std() != 30*time.Second || ship.Config["batch"] != "500" {
				t.Errorf("shipper tick %v config %v", ship.TickInterval, ship.Config)
			}
			if got := ship.VolumeMounts; !reflect.DeepEqual(got, []VolumeMount{{Name: "logs", MountPath: "/logs", ReadOnly: true}}) {
				t.Errorf("shipper mounts = %+v", got)
			}
			if v := p.Volume("logs"); v == nil || v.EmptyDir == nil || v.EmptyDir.SizeLimit != 128*Mi {
				t.Errorf("volume logs = %+v", v)
			}
			if p.Spec.RestartPolicy != RestartOnFailure || p.Spec.GracePeriod() != 10*time.Second {
				t.Errorf("restart %s grace %v", p.Spec.RestartPolicy, p.Spec.GracePeriod())
			}
			if p.Metadata.Labels["app.kubernetes.io/part-of"] != "shop" || p.Metadata.Annotations["wasmpod.dev/owner"] != "team-web" {
				t.Errorf("metadata = %+v", p.Metadata)
			}
			if got := p.ResolvePath(web.Wasm); got != filepath.Join("testdata", "modules", "web.wasm") {
				t.Errorf("ResolvePath = %q", got)
			}
		}},
		{"ambassador.yaml", func(t *testing.T, p *Pod) {
			amb := p.Module("memcache-proxy")
			if amb == nil || !amb.Trusted || amb.Network == nil || len(amb.Network.Allow) != 5 {
				t.Fatalf("ambassador = %+v", amb)
			}
			if p.Main().Name != "app" {
				t.Errorf("Main() = %q", p.Main().Name)
			}
		}},
		{"scatter-gather.yaml", func(t *testing.T, p *Pod) {
			if p.Main() != nil {
				t.Error("Main() != nil for a pod without main")
			}
			if got := *p.Module("merge").AllowScale; got != (Scale{Min: 1, Max: 4}) {
				t.Errorf("allowScale = %+v", got)
			}
			if got := p.Module("shard-b").Resources.Timeout.Std(); got != 200*time.Millisecond {
				t.Errorf("shard-b timeout = %v", got)
			}
			want := &Scatter{
				Path: "/search", Merge: "merge", Replicas: DefaultScatterReplicas,
				Deadline: Duration(150 * time.Millisecond), MergeReserve: DefaultScatterMergeReserve,
				Hedge:  Hedge{Min: DefaultHedgeMin, Initial: DefaultHedgeInitial, Percentile: 99},
				Shards: []ScatterShard{{Name: "a", Leaf: "shard-a"}, {Name: "b", Leaf: "shard-b"}, {Name: "c", Remote: true}},
			}
			if !reflect.DeepEqual(p.Spec.Scatter, want) {
				t.Errorf("scatter = %+v, want %+v", p.Spec.Scatter, want)
			}
		}},
		{"work-queue.yaml", func(t *testing.T, p *Pod) {
			want := Backoff{Initial: Duration(100 * time.Millisecond), Max: Duration(2 * time.Second), ResetAfter: Duration(time.Minute)}
			if p.Spec.RestartBackoff != want {
				t.Errorf("backoff = %+v", p.Spec.RestartBackoff)
			}
			m := p.Module("resize")
			if m.ABI != ABIExtism || m.Resources.MemoryPages() != 4096 {
				t.Errorf("resize abi %s pages %d", m.ABI, m.Resources.MemoryPages())
			}
			if h := p.Volume("spool").HostPath; h.Type != HostPathDirectoryOrCreate || h.Path != "spool" {
				t.Errorf("hostPath = %+v", h)
			}
			wantPipelines := []Pipeline{
				{Name: "thumbnails", Stages: []PipelineStage{{Module: "resize"}}},
				{Name: "changelogs", MaxAttempts: 3, Backoff: Duration(time.Second), Stages: []PipelineStage{{Module: "gunzip"}, {Module: "wc"}, {Module: "sum", Merge: true}}},
				{Name: "unpack", Stages: []PipelineStage{{Module: "gunzip"}}},
			}
			if !reflect.DeepEqual(p.Spec.Pipelines, wantPipelines) {
				t.Errorf("pipelines = %+v", p.Spec.Pipelines)
			}
			if p.Pipeline("changelogs") != &p.Spec.Pipelines[1] || p.Pipeline("nope") != nil {
				t.Error("Pipeline() does not find pipelines by name in Spec.Pipelines")
			}
			if got := p.Module("wc").Resources; got != DefaultResources() {
				t.Errorf("wc resources = %+v, want the defaults", got)
			}
		}},
		{"anchors.yaml", func(t *testing.T, p *Pod) {
			first, second := p.Module("first"), p.Module("second")
			if first == nil || second == nil {
				t.Fatal("modules first and second not found")
			}
			if second.Role != RoleLeaf || second.Wasm != "leaf.wasm" {
				t.Errorf("merged fields missing: %+v", second)
			}
			if second.Resources.Memory != 16*Mi || second.Resources.Timeout.Std() != 3*time.Second {
				t.Errorf("second resources = %+v (want memory merged, timeout overridden)", second.Resources)
			}
			if *second.ReadinessProbe != *first.LivenessProbe || second.ReadinessProbe.FailureThreshold != 5 {
				t.Errorf("aliased probe = %+v", second.ReadinessProbe)
			}
			if second.ReadinessProbe == first.LivenessProbe {
				t.Error("aliased probes share one struct; an edit to one would change the other")
			}
		}},
	}
	files, _ := filepath.Glob("testdata/*.yaml")
	if len(files) != len(tests) {
		t.Errorf("testdata has %d examples, the test checks %d", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			tt.check(t, mustParseFile(t, filepath.Join("testdata", tt.file)))
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			p := mustParseFile(t, f)
			b, err := p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			p2, err := Parse(b, p.BaseDir)
			if err != nil {
				t.Fatalf("Parse(Marshal()): %v\n%s", err, b)
			}
			if a, b := withoutSource(p), withoutSource(p2); !reflect.DeepEqual(a, b) {
				t.Errorf("round trip changed the pod:\n%+v\n%+v", a, b)
			}
			b2, _ := p2.Marshal()
			if string(b) != string(b2) {
				t.Errorf("Marshal is not canonical:\n%s\n%s", b, b2)
			}
			// The admin API's clients decode with encoding/json.
			var p3 Pod
			if err := json.Unmarshal(b, &p3); err != nil {
				t.Fatal(err)
			}
			p3.BaseDir = p.BaseDir
			if a, b := withoutSource(p), withoutSource(&p3); !reflect.DeepEqual(a, b) {
				t.Errorf("encoding/json round trip changed the pod:\n%+v\n%+v", a, b)
			}
		})
	}
}

func TestMarshalShape(t *testing.T) {
	p := mustParseFile(t, "testdata/minimal.yaml")
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"apiVersion":"wasmpod.dev/v1"`, `"memory":"64Mi"`, `"timeout":"5s"`, `"priority":0`, `"terminationGracePeriodSeconds":30`, `"restartPolicy":"Always"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("Marshal() lacks %s:\n%s", want, b)
		}
	}
	for _, absent := range []string{"BaseDir", "baseDir", "src"} {
		if strings.Contains(string(b), absent) {
			t.Errorf("Marshal() shows %s:\n%s", absent, b)
		}
	}
}

func TestStartOrder(t *testing.T) {
	mods := func(roles ...Role) *Pod {
		p := &Pod{}
		for i, r := range roles {
			p.Spec.Modules = append(p.Spec.Modules, Module{Name: fmt.Sprintf("%s%d", r, i), Role: r})
		}
		return p
	}
	names := func(ms []*Module) string {
		var s []string
		for _, m := range ms {
			s = append(s, m.Name)
		}
		return strings.Join(s, " ")
	}
	tests := []struct {
		pod  *Pod
		want string
	}{
		{mods(RoleMain), "main0"},
		{mods(RoleMain, RoleSidecar), "sidecar1 main0"},
		{mods(RoleAdapter, RoleMain, RoleAmbassador, RoleSidecar), "adapter0 ambassador2 sidecar3 main1"},
		{mods(RoleLeaf, RoleMerge, RoleLeaf), "leaf0 merge1 leaf2"},
		{mods(RoleStage, RoleMain, RoleSidecar, RoleLeaf), "sidecar2 main1 stage0 leaf3"},
		{mods(), ""},
	}
	for _, tt := range tests {
		start := tt.pod.StartOrder()
		if got := names(start); got != tt.want {
			t.Errorf("StartOrder() = %q, want %q", got, tt.want)
		}
		stop := tt.pod.StopOrder()
		for i := range stop {
			if stop[i] != start[len(start)-1-i] {
				t.Errorf("StopOrder() = %q is not the reverse of %q", names(stop), names(start))
				break
			}
		}
		for _, m := range start {
			if tt.pod.Module(m.Name) != m {
				t.Errorf("StartOrder() pointer for %s does not point into Spec.Modules", m.Name)
			}
		}
	}
}

func TestLookups(t *testing.T) {
	p := mustParseFile(t, "testdata/sidecar.yaml")
	if p.Module("nope") != nil || p.Volume("nope") != nil {
		t.Error("lookup of an unknown name is not nil")
	}
	p.Module("web").Config = map[string]string{"k": "v"}
	if p.Spec.Modules[0].Config["k"] != "v" {
		t.Error("Module() does not point into Spec.Modules")
	}
	abs := filepath.Join(string(filepath.Separator), "srv", "a.wasm")
	if got := p.ResolvePath(abs); got != abs {
		t.Errorf("ResolvePath(%q) = %q", abs, got)
	}
	if got := (&Pod{}).ResolvePath("a.wasm"); got != "a.wasm" {
		t.Errorf("ResolvePath without BaseDir = %q", got)
	}
	if got := (&PodSpec{}).GracePeriod(); got != 30*time.Second {
		t.Errorf("default GracePeriod = %v", got)
	}
	if got := (&PodSpec{TerminationGracePeriodSeconds: ptr(int64(0))}).GracePeriod(); got != 0 {
		t.Errorf("GracePeriod(0) = %v", got)
	}
	pr := Probe{InitialDelaySeconds: 2, PeriodSeconds: 3, TimeoutSeconds: 4}
	if pr.InitialDelay() != 2*time.Second || pr.Period() != 3*time.Second || pr.Timeout() != 4*time.Second {
		t.Errorf("probe durations = %v %v %v", pr.InitialDelay(), pr.Period(), pr.Timeout())
	}
	for _, r := range Roles() {
		if !r.Valid() {
			t.Errorf("%s not valid", r)
		}
	}
	if Role("Main").Valid() || Role("").Valid() {
		t.Error("invalid role reported valid")
	}
}

func TestExplicitZeroGracePeriod(t *testing.T) {
	p, err := Parse([]byte(withModule+"  terminationGracePeriodSeconds: 0\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.GracePeriod() != 0 {
		t.Errorf("GracePeriod = %v, want 0 (explicit zero kills at once)", p.Spec.GracePeriod())
	}
}

func TestNullValues(t *testing.T) {
	// An empty value leaves a field unset, except that an empty object is present.
	p, err := Parse([]byte(withModule+"      config:\n      livenessProbe:\n      tickInterval: ~\n  volumes:\n    - name: scratch\n      emptyDir:\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	m := p.Module("web")
	if m.Config != nil || m.TickInterval != 0 {
		t.Errorf("null config/tickInterval decoded as %v/%v", m.Config, m.TickInterval)
	}
	if m.LivenessProbe == nil || *m.LivenessProbe != DefaultProbe() {
		t.Errorf("empty livenessProbe = %+v, want the defaults", m.LivenessProbe)
	}
	if p.Volume("scratch").EmptyDir == nil {
		t.Error("empty emptyDir decoded as nil")
	}
}

func TestDefaultsAreIdempotentAndValid(t *testing.T) {
	p := &Pod{
		APIVersion: APIVersion, Kind: KindPod, Metadata: ObjectMeta{Name: "go-built"},
		Spec: PodSpec{Modules: []Module{{Name: "m", Wasm: "m.wasm", LivenessProbe: &Probe{}, AllowScale: &Scale{}}}},
	}
	if err := p.Validate(ValidateOptions{}); err == nil {
		t.Fatal("Validate accepted a Pod without defaults")
	} else {
		var se *SpecError
		if !errors.As(err, &se) {
			t.Fatalf("got %T", err)
		}
		for _, fe := range se.Problems {
			if fe.Line != 0 || fe.File != "" || strings.HasPrefix(fe.Error(), "line") {
				t.Errorf("a Pod built in Go has no lines, got %q", fe.Error())
			}
		}
		if !strings.Contains(err.Error(), "spec.modules[0].resources.timeout: must be positive") {
			t.Errorf("missing timeout problem in:\n%v", err)
		}
	}
	p.ApplyDefaults()
	once := withoutSource(p)
	p.ApplyDefaults()
	if !reflect.DeepEqual(once, withoutSource(p)) {
		t.Error("ApplyDefaults is not idempotent")
	}
	if err := p.Validate(ValidateOptions{}); err != nil {
		t.Errorf("Validate after ApplyDefaults: %v", err)
	}
	if got := *p.Spec.Modules[0].AllowScale; got != (Scale{Min: 1, Max: 4}) {
		t.Errorf("allowScale defaults = %+v, want {1 4}", got)
	}
}

func TestValidateAfterEdit(t *testing.T) {
	p := mustParseFile(t, "testdata/sidecar.yaml")
	p.Module("web").Resources.Concurrency = -3
	err := p.Validate(ValidateOptions{})
	if err == nil || !strings.Contains(err.Error(), "line 26: spec.modules[0].resources.concurrency: must not be negative, got -3") {
		t.Errorf("Validate after edit = %v", err)
	}
}

// writeFiles creates files (name -> contents) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, contents := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(contents), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoad(t *testing.T) {
	wasm := nativeWasm
	sum := sha256.Sum256([]byte(wasm))
	digest := hex.EncodeToString(sum[:])
	other := strings.Repeat("ab", 32)

	tests := []struct {
		name  string
		files map[string]string
		spec  string
		want  []string // problems; nil means Load succeeds
	}{
		{"ok", map[string]string{"web.wasm": wasm, "assets/x": ""},
			withModule + "      sha256: " + digest + "\n  volumes:\n    - {name: a, hostPath: {path: assets}}\n", nil},
		{"digest is case-insensitive", map[string]string{"web.wasm": wasm},
			withModule + "      sha256: " + strings.ToUpper(digest) + "\n", nil},
		{"absolute wasm path", map[string]string{"web.wasm": wasm},
			header + "  modules:\n    - name: web\n      wasm: $DIR/web.wasm\n", nil},
		{"missing wasm", nil, withModule,
			[]string{"pod.yaml:7: spec.modules[0].wasm: wasm file not found: $DIR/web.wasm"}},
		{"wasm is a directory", map[string]string{"web.wasm/x": ""}, withModule,
			[]string{"pod.yaml:7: spec.modules[0].wasm: $DIR/web.wasm is a directory; set watch: true to run the newest .wasm file in it"}},
		{"digest mismatch", map[string]string{"web.wasm": wasm}, withModule + "      sha256: " + other + "\n",
			[]string{"pod.yaml:9: spec.modules[0].sha256: sha256 mismatch for $DIR/web.wasm: spec says " + other + ", file has " + digest}},
		{"hostPath missing", map[string]string{"web.wasm": wasm}, withModule + "  volumes:\n    - name: a\n      hostPath:\n        path: nowhere\n",
			[]string{"pod.yaml:12: spec.volumes[0].hostPath.path: directory not found: $DIR/nowhere (use type: DirectoryOrCreate to have it created)"}},
		{"hostPath DirectoryOrCreate missing", map[string]string{"web.wasm": wasm},
			withModule + "  volumes:\n    - {name: a, hostPath: {path: nowhere, type: DirectoryOrCreate}}\n", nil},
		{"hostPath is a file", map[string]string{"web.wasm": wasm, "f": ""},
			withModule + "  volumes:\n    - {name: a, hostPath: {path: f, type: DirectoryOrCreate}}\n",
			[]string{"pod.yaml:10: spec.volumes[0].hostPath.path: $DIR/f is not a directory"}},
		{"every problem at once", nil, withModule + "      resources: {memory: 1MB}\n  volumes:\n    - {name: a, hostPath: {path: nowhere}}\n",
			[]string{
				"pod.yaml:7: spec.modules[0].wasm: wasm file not found",
				`pod.yaml:9: spec.modules[0].resources.memory: invalid quantity "1MB"`,
				"pod.yaml:11: spec.volumes[0].hostPath.path: directory not found",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tt.files)
			writeFiles(t, dir, map[string]string{"pod.yaml": strings.ReplaceAll(tt.spec, "$DIR", dir)})
			// Load by a relative path, as a user would, so the messages must resolve it.
			t.Chdir(dir)
			p, err := Load("pod.yaml")
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if p.BaseDir != "." {
					t.Errorf("BaseDir = %q, want \".\"", p.BaseDir)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load succeeded, want %q", tt.want)
			}
			var se *SpecError
			if !errors.As(err, &se) || !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("Load error %T %v is not a *SpecError wrapping ErrInvalidSpec", err, err)
			}
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = strings.ReplaceAll(w, "$DIR", dir)
			}
			assertProblems(t, se, want)
		})
	}
}

func TestLoadMissingSpec(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file = %v, want fs.ErrNotExist", err)
	}
	if errors.Is(err, ErrInvalidSpec) {
		t.Error("an I/O error wraps ErrInvalidSpec")
	}
}

func TestParseDoesNotTouchFiles(t *testing.T) {
	if _, err := Parse([]byte(withModule), t.TempDir()); err != nil {
		t.Errorf("Parse checked the filesystem: %v", err)
	}
	p, _ := Parse([]byte(withModule), t.TempDir())
	if err := p.Validate(ValidateOptions{CheckFiles: true}); err == nil || !strings.Contains(err.Error(), "line 7: spec.modules[0].wasm: wasm file not found") {
		t.Errorf("Validate(CheckFiles) = %v", err)
	}
}

func TestCheckDigest(t *testing.T) {
	wasm := []byte("\x00asm\x01\x00\x00\x00")
	sum := sha256.Sum256(wasm)
	digest := hex.EncodeToString(sum[:])
	tests := []struct {
		sha  string
		want string
	}{
		{"", ""},
		{digest, ""},
		{strings.ToUpper(digest), ""},
		{strings.Repeat("a", 64), `module "m": sha256 mismatch: spec says ` + strings.Repeat("a", 64) + ", file has " + digest},
	}
	for _, tt := range tests {
		err := (&Module{Name: "m", SHA256: tt.sha}).CheckDigest(wasm)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("CheckDigest(%q) = %v", tt.sha, err)
		case tt.want != "" && (err == nil || err.Error() != tt.want || !errors.Is(err, ErrInvalidSpec)):
			t.Errorf("CheckDigest(%q) = %v, want %q", tt.sha, err, tt.want)
		}
	}
}

func TestAliasBomb(t *testing.T) {
	// 100 config entries shared by 2000 aliased modules: a 10 KB file that would expand to
	// over 200,000 nodes.
	var b strings.Builder
	b.WriteString("apiVersion: wasmpod.dev/v1\nkind: Pod\nmetadata:\n  name: p\n  labels: &c {")
	for i := range 100 {
		fmt.Fprintf(&b, "k%d: v, ", i)
	}
	b.WriteString("}\nspec:\n  modules: [&m {name: x, wasm: x.wasm, config: *c}, ")
	b.WriteString(strings.Repeat("*m, ", 2000))
	b.WriteString("]\n")
	_, err := Parse([]byte(b.String()), "")
	if err == nil || !strings.Contains(err.Error(), "spec too large: more than 100000 YAML nodes once aliases are expanded") {
		t.Fatalf("Parse = %v", err)
	}
	var se *SpecError
	if errors.As(err, &se) && len(se.Problems) != 1 {
		t.Errorf("%d problems reported; the budget should cut decoding short", len(se.Problems))
	}
}

// TestGolden compares the complete output for whole bad specs with testdata/invalid/*.golden,
// so a reviewer can read every message as a user sees it. Run with -update to rewrite.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata/invalid/*.yaml")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := Load(f)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			cwd, _ := os.Getwd()
			got := strings.ReplaceAll(err.Error(), cwd, "$PWD") + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("Load(%s) errors changed:\n--- got\n%s--- want\n%s", f, got, want)
			}
		})
	}
}

// TestDocumentedDefaults pins every default to the value its documentation promises (the
// Kubernetes ones where Kubernetes has one).
func TestDocumentedDefaults(t *testing.T) {
	if got, want := DefaultProbe(), (Probe{InitialDelaySeconds: 0, PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3}); got != want {
		t.Errorf("DefaultProbe() = %+v, want %+v", got, want)
	}
	if got, want := DefaultResources(), (Resources{Memory: 64 * Mi, Timeout: Duration(5 * time.Second), Concurrency: 4, MinInstances: 1}); got != want {
		t.Errorf("DefaultResources() = %+v, want %+v", got, want)
	}
	if got, want := DefaultRestartBackoff(), (Backoff{Initial: Duration(10 * time.Second), Max: Duration(5 * time.Minute), ResetAfter: Duration(10 * time.Minute)}); got != want {
		t.Errorf("DefaultRestartBackoff() = %+v, want %+v", got, want)
	}
	p, err := Parse([]byte(header+"  modules:\n    - name: a\n      wasm: a.wasm\n      allowScale: {}\n      startupProbe: {}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	m := p.Module("a")
	if m.Role != RoleMain || m.ABI != ABINative || m.Priority != PriorityNormal || m.Trusted || m.TickInterval != 0 {
		t.Errorf("module defaults: role %q abi %q priority %d trusted %v tick %v", m.Role, m.ABI, m.Priority, m.Trusted, m.TickInterval)
	}
	if *m.AllowScale != (Scale{Min: 1, Max: 4}) || *m.StartupProbe != DefaultProbe() {
		t.Errorf("allowScale %+v startupProbe %+v", *m.AllowScale, *m.StartupProbe)
	}
	if p.Spec.RestartPolicy != RestartAlways || *p.Spec.TerminationGracePeriodSeconds != 30 {
		t.Errorf("pod defaults: restart %q grace %d", p.Spec.RestartPolicy, *p.Spec.TerminationGracePeriodSeconds)
	}
}

// TestPackageDocExample keeps the specs shown in the package documentation valid.
func TestPackageDocExample(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var specs []string
	var spec strings.Builder
	in := false
	for _, line := range strings.Split(string(src), "\n") {
		switch {
		case strings.HasPrefix(line, "//\tapiVersion:"):
			in = true
		case in && !strings.HasPrefix(line, "//\t"):
			in = false
			specs = append(specs, spec.String())
			spec.Reset()
		}
		if in {
			spec.WriteString(strings.TrimPrefix(line, "//\t") + "\n")
		}
	}
	if len(specs) != 2 {
		t.Fatalf("found %d specs in doc.go, want 2", len(specs))
	}
	p, err := Parse([]byte(specs[0]), "")
	if err != nil {
		t.Fatalf("the package doc's spec is invalid: %v\n%s", err, specs[0])
	}
	if len(p.Spec.Modules) != 2 || len(p.Spec.Volumes) != 2 {
		t.Errorf("parsed %d modules and %d volumes, want 2 and 2", len(p.Spec.Modules), len(p.Spec.Volumes))
	}
	p, err = Parse([]byte(specs[1]), "")
	if err != nil {
		t.Fatalf("the package doc's pipeline spec is invalid: %v\n%s", err, specs[1])
	}
	if len(p.Spec.Pipelines) != 1 || len(p.Spec.Pipelines[0].Stages) != 3 || !p.Spec.Pipelines[0].Stages[2].Merge {
		t.Errorf("parsed pipelines %+v, want changelogs with 3 stages, the last a merge", p.Spec.Pipelines)
	}
}
