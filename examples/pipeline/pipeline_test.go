// Package pipeline is the work-queue example's end-to-end test (see README.md): the real host
// runs the three WASI command stages over the machine's Debian changelogs, and the results are
// compared with `zcat FILE | LC_ALL=C wc -lw` for every file.
package pipeline

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/podtest"
)

var plugins = []string{"pipeline-gunzip", "pipeline-wc", "pipeline-sum"}

type counts struct{ lines, words, files int64 }

// reference runs zcat | wc -lw on every file, in one shell.
func reference(t *testing.T, files []string) map[string]counts {
	t.Helper()
	script := `for f in "$@"; do printf '%s ' "$f"; zcat "$f" | LC_ALL=C wc -lw; done`
	cmd := exec.Command("sh", append([]string{"-c", script, "sh"}, files...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("zcat | wc: %v", err)
	}
	ref := map[string]counts{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			t.Fatalf("zcat | wc line %q", sc.Text())
		}
		l, _ := strconv.ParseInt(f[1], 10, 64)
		w, _ := strconv.ParseInt(f[2], 10, 64)
		ref[f[0]] = counts{l, w, 1}
	}
	if len(ref) != len(files) {
		t.Fatalf("zcat | wc answered for %d of %d files", len(ref), len(files))
	}
	return ref
}

// cli runs the wasmpod CLI against the host and returns stdout; it fails the test on a
// non-zero exit unless wantCode says otherwise.
func cli(t *testing.T, h *podtest.Host, wantCode int, args ...string) string {
	t.Helper()
	cmd := exec.Command(podtest.Binary(t), append(args, "--admin", h.Admin)...)
	cmd.Env = append(os.Environ(), "WASMPOD_TOKEN="+podtest.Token)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("wasmpod %s: %v", strings.Join(args[:2], " "), err)
	}
	if code != wantCode {
		t.Fatalf("wasmpod %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args[:min(3, len(args))], " "), code, wantCode, out, stderr.String())
	}
	return string(out)
}

func jobID(t *testing.T, out string) string {
	t.Helper()
	f := strings.Fields(out)
	if len(f) == 0 {
		t.Fatalf("submit printed no job id")
	}
	id := f[len(f)-1]
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		t.Fatalf("submit printed %q, want a job id", out)
	}
	return id
}

func TestChangelogPipeline(t *testing.T) {
	files, _ := filepath.Glob("/usr/share/doc/*/changelog*.gz")
	if len(files) < 10 {
		t.Skip("fewer than 10 changelogs under /usr/share/doc")
	}
	spec := podtest.CopyExample(t, "pipeline", plugins)
	h := podtest.Start(t, spec)
	ref := reference(t, files)

	// Per file: the two-stage pipeline's outputs are each file's counts.
	t.Run("every file", func(t *testing.T) {
		start := time.Now()
		id := jobID(t, cli(t, h, 0, append([]string{"queue", "submit", "--pipeline", "counts", "--wait"}, files...)...))
		t.Logf("FIGURE %d files through gunzip and wc in %v", len(files), time.Since(start).Round(time.Millisecond))
		dir := t.TempDir()
		cli(t, h, 0, "queue", "get", id, "-o", dir)
		for _, f := range files {
			name := strings.TrimSuffix(strings.TrimPrefix(f, "/usr/share/doc/"), ".gz")
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatalf("output for %s: %v", f, err)
			}
			want := ref[f]
			if got := string(b); got != fmt.Sprintf("%d %d\n", want.lines, want.words) {
				t.Fatalf("%s: pipeline says %q, zcat | wc -lw says %d %d", f, got, want.lines, want.words)
			}
		}
	})

	// Per package: the merge stage sums the same counts.
	t.Run("per package", func(t *testing.T) {
		id := jobID(t, cli(t, h, 0, append([]string{"queue", "submit", "--pipeline", "changelogs", "--wait"}, files...)...))
		dir := t.TempDir()
		cli(t, h, 0, "queue", "get", id, "-o", dir)
		b, err := os.ReadFile(filepath.Join(dir, "sum"))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]counts{}
		var total counts
		for f, c := range ref {
			pkg := strings.SplitN(strings.TrimPrefix(f, "/usr/share/doc/"), "/", 2)[0]
			w := want[pkg]
			w.lines, w.words, w.files = w.lines+c.lines, w.words+c.words, w.files+1
			want[pkg] = w
			total.lines, total.words, total.files = total.lines+c.lines, total.words+c.words, total.files+1
		}
		var wantText strings.Builder
		pkgs := make([]string, 0, len(want))
		for p := range want {
			pkgs = append(pkgs, p)
		}
		sort.Strings(pkgs)
		for _, p := range pkgs {
			fmt.Fprintf(&wantText, "%s %d %d %d\n", p, want[p].lines, want[p].words, want[p].files)
		}
		fmt.Fprintf(&wantText, "TOTAL %d %d %d\n", total.lines, total.words, total.files)
		if string(b) != wantText.String() {
			t.Fatalf("sum differs from zcat | wc -lw summed per package:\ngot  %.400s\nwant %.400s", b, wantText.String())
		}
		t.Logf("FIGURE %s", strings.TrimSpace(string(b[strings.LastIndex(strings.TrimSpace(string(b)), "\n")+1:])))
	})

	// A poison file (not gzip) is dead-lettered after maxAttempts (3); the rest of the job
	// finishes and the merge runs over what exists.
	t.Run("poison", func(t *testing.T) {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "poison"), 0o755)
		bad := filepath.Join(dir, "poison", "changelog.gz")
		os.WriteFile(bad, []byte("this is not gzip\n"), 0o644)
		in := append([]string{bad}, files[:5]...)
		out := cli(t, h, 1, append([]string{"queue", "submit", "--pipeline", "changelogs", "--wait", "--name-root", "/"}, in...)...)
		id := jobID(t, strings.SplitN(out, "\n", 2)[0])
		var job struct {
			State  string `json:"state"`
			Stages []struct {
				Name     string `json:"name"`
				Done     int    `json:"done"`
				Dead     int    `json:"dead"`
				Expected int    `json:"expected"`
			} `json:"stages"`
		}
		if err := json.Unmarshal([]byte(cli(t, h, 0, "queue", "job", id, "-o", "json")), &job); err != nil {
			t.Fatal(err)
		}
		if job.State != "partial" || job.Stages[0].Dead != 1 || job.Stages[0].Done != 5 || job.Stages[1].Done != 5 || job.Stages[2].Done != 1 {
			t.Fatalf("job after a poison input: %+v", job)
		}
		var dead []struct {
			Job      uint64 `json:"job"`
			Attempts int    `json:"attempts"`
			Errors   []struct {
				Message string `json:"message"`
			} `json:"errors"`
		}
		if err := json.Unmarshal([]byte(cli(t, h, 0, "queue", "dead", "--pipeline", "changelogs", "-o", "json")), &dead); err != nil {
			t.Fatal(err)
		}
		if len(dead) != 1 || dead[0].Attempts != 3 || len(dead[0].Errors) != 3 || !strings.Contains(dead[0].Errors[2].Message, "gzip") {
			t.Fatalf("dead letters: %+v", dead)
		}
	})
}
