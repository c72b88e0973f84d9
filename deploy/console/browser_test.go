package console

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/launcher"
	"github.com/go-rod/rod/lib/proto"

	"github.com/wasmpod/wasmpod/deploy/internal/deploytest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	deploytest.Cleanup()
	os.Exit(code)
}

// token is the hosts' admin token (WASMPOD_TOKEN) in these tests.
const token = "console-test-token"

// wait bounds every wait for the page to show a change: generous, as a loaded 2-core machine
// may take seconds to run a stage or notice a dead node; the page itself polls every second.
const wait = 90 * time.Second

// chromium is the Debian package's binary (.ci/run installs it).
const chromium = "/usr/bin/chromium"

// browser is one headless Chromium with one page, recording what the page logs as errors.
type browser struct {
	t    *testing.T
	page *rod.Page
	dir  string // screenshots
	step int

	mu         sync.Mutex
	errs       []string // console.error calls, uncaught exceptions, error log entries
	exceptions int      // uncaught exceptions and console.error calls only
}

func newBrowser(t *testing.T, name string) *browser {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		deploytest.Skip(t, "no "+chromium+" (Debian package chromium)")
	}
	l := launcher.New().Bin(chromium).Headless(true).NoSandbox(true).Leakless(false).
		Set("disable-gpu").Set("disable-dev-shm-usage")
	u, err := l.Launch()
	if err != nil {
		t.Fatalf("launch chromium: %v", err)
	}
	t.Cleanup(func() { l.Kill(); l.Cleanup() })
	r := rod.New().ControlURL(u)
	if err := r.Connect(); err != nil {
		t.Fatalf("connect to chromium: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	page, err := r.Page(proto.TargetCreateTarget{URL: "about:blank"})
	if err != nil {
		t.Fatal(err)
	}
	if err := (proto.EmulationSetDeviceMetricsOverride{Width: 1400, Height: 1000, DeviceScaleFactor: 1}).Call(page); err != nil {
		t.Fatal(err)
	}
	root, err := deploytest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, page: page, dir: filepath.Join(root, "build", "console", name)}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := (proto.LogEnable{}).Call(page); err != nil {
		t.Fatal(err)
	}
	go page.EachEvent(func(e *proto.RuntimeConsoleAPICalled) {
		if e.Type == proto.RuntimeConsoleAPICalledTypeError || e.Type == proto.RuntimeConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range e.Args {
				parts = append(parts, a.Value.String()+a.Description)
			}
			b.record(true, "console."+string(e.Type)+": "+strings.Join(parts, " "))
		}
	}, func(e *proto.RuntimeExceptionThrown) {
		b.record(true, "uncaught: "+e.ExceptionDetails.Text+" "+exceptionText(e.ExceptionDetails))
	}, func(e *proto.LogEntryAdded) {
		if e.Entry.Level == proto.LogLogEntryLevelError {
			b.record(false, fmt.Sprintf("%s: %s (%s)", e.Entry.Source, e.Entry.Text, e.Entry.URL))
		}
	})()
	return b
}

func exceptionText(d *proto.RuntimeExceptionDetails) string {
	if d.Exception != nil {
		return d.Exception.Description
	}
	return ""
}

func (b *browser) record(exception bool, s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errs = append(b.errs, s)
	if exception {
		b.exceptions++
	}
}

// errors returns what the page logged as errors so far.
func (b *browser) errors() ([]string, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errs...), b.exceptions
}

// open navigates to url and waits for the page's first snapshot.
func (b *browser) open(url string) {
	b.t.Helper()
	if err := b.page.Timeout(wait).Navigate(url); err != nil {
		b.t.Fatalf("open %s: %v", url, err)
	}
	if err := b.page.Timeout(wait).WaitLoad(); err != nil {
		b.t.Fatalf("load %s: %v", url, err)
	}
	b.waitJS("the page's first update", `() => !!document.body.dataset.updated`)
}

// shot saves a screenshot of the whole page as NN-name.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	b.step++
	png, err := b.page.Screenshot(true, &proto.PageCaptureScreenshot{Format: proto.PageCaptureScreenshotFormatPng})
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	file := filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.step, name))
	if err := os.WriteFile(file, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", file)
}

// text is the trimmed text of the first element matching selector ("" if none).
func (b *browser) text(selector string) string {
	b.t.Helper()
	return b.evalString(`(s) => { const e = document.querySelector(s); return e ? e.textContent.trim() : ""; }`, selector)
}

func (b *browser) evalString(js string, args ...any) string {
	b.t.Helper()
	r, err := b.page.Timeout(wait).Eval(js, args...)
	if err != nil {
		b.t.Fatalf("eval %s: %v", js, err)
	}
	return r.Value.Str()
}

// waitText waits until the first element matching selector has text matching re, and returns it.
func (b *browser) waitText(what, selector, re string) string {
	b.t.Helper()
	rx := regexp.MustCompile(re)
	var last string
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if last = b.text(selector); rx.MatchString(last) {
			return last
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
	b.t.Fatalf("%s: %s still shows %q after %s, want /%s/", what, selector, last, wait, re)
	return ""
}

// waitJS waits until the JavaScript function js returns true.
func (b *browser) waitJS(what, js string, args ...any) {
	b.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		r, err := b.page.Timeout(wait).Eval(js, args...)
		if err == nil && r.Value.Bool() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
	b.t.Fatalf("%s: not seen in the page within %s", what, wait)
}

func (b *browser) click(selector string) {
	b.t.Helper()
	el, err := b.page.Timeout(wait).Element(selector)
	if err != nil {
		b.t.Fatalf("find %s: %v", selector, err)
	}
	if err := el.Click(proto.InputMouseButtonLeft, 1); err != nil {
		b.t.Fatalf("click %s: %v", selector, err)
	}
}

// cli runs the wasmpod CLI against a host's admin API with the admin token.
func cli(t *testing.T, bin, admin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append(args, "--admin", admin)...)
	cmd.Env = append(os.Environ(), "WASMPOD_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("wasmpod %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func getJSON(t *testing.T, admin, path string, v any) {
	t.Helper()
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

func build(t *testing.T) (bin string) {
	t.Helper()
	bin, err := deploytest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func guest(t *testing.T, dir string, command bool) string {
	t.Helper()
	p, err := deploytest.Guest(dir, command)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConsolePod drives the console of one host: the page loads without errors and shows the
// pod's modules; a module stopped with the CLI turns "stopped" without a reload; a job
// submitted with the CLI shows 100 %; a retry without the token is refused in the page (and
// the task is left alone), and with the token re-runs the dead task.
func TestConsolePod(t *testing.T) {
	if testing.Short() {
		t.Skip("browser and real hosts")
	}
	bin := build(t)
	hello := guest(t, "examples/hello/guest", false)
	stage := guest(t, "host/testdata/stagecmd", true)
	sum := guest(t, "plugins/benchleaf", false)
	dir := t.TempDir()
	// stagecmd upper-cases its input, and fails on an input named fail.txt: one attempt, so a
	// failing task is dead-lettered at once.
	spec := writeFile(t, dir, "pod.yaml", fmt.Sprintf(`apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: consoletest}
spec:
  terminationGracePeriodSeconds: 2
  modules:
    - {name: hello, wasm: %[1]s, config: {greeting: hi}, resources: {timeout: 5s, concurrency: 2}}
    - {name: upper, role: stage, wasm: %[2]s, resources: {timeout: 20s, concurrency: 2}}
    - {name: leaf-a, role: leaf, wasm: %[3]s, resources: {timeout: 5s}}
    - {name: leaf-b, role: leaf, wasm: %[3]s, resources: {timeout: 5s}}
    - {name: merge, role: merge, wasm: %[3]s, resources: {timeout: 5s}}
  pipelines:
    - {name: shout, maxAttempts: 1, stages: [{module: upper}]}
  scatter:
    path: /sum
    merge: merge
    deadline: 10s
    shards:
      - {name: a, leaf: leaf-a}
      - {name: b, leaf: leaf-b}
`, hello, stage, sum))
	h := deploytest.RunLocal(t, bin, []string{"WASMPOD_TOKEN=" + token}, "run", spec,
		"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--state-dir", filepath.Join(dir, "state"), "--node-name", "solo")
	b := newBrowser(t, "pod")
	b.open("http://" + h.Admin + "/ui/")

	// 1. Loads with no console errors, shows both modules running.
	b.waitText("hello running", `tr[data-module="hello"] td.state`, `^running$`)
	b.waitText("upper shown", `tr[data-module="upper"] td.state`, `^(running|idle|ready)`)
	b.waitText("member shown", `tr[data-member="solo"] td.role`, `leader`)
	b.shot("loaded")
	if errs, _ := b.errors(); len(errs) > 0 {
		t.Fatalf("the console logged errors while loading:\n%s", strings.Join(errs, "\n"))
	}
	// A marker that a reload would lose: every later change must arrive by polling.
	b.evalString(`() => { window.__noReload = "yes"; return ""; }`)

	// 2. Stopped through the CLI: "stopped" without a reload.
	cli(t, bin, h.Admin, "stop", "hello")
	b.waitText("hello stopped", `tr[data-module="hello"] td.state`, `^stopped$`)
	b.shot("module-stopped")

	// 3. A job from the CLI: its progress reaches 100 %.
	in := t.TempDir()
	files := []string{writeFile(t, in, "a.txt", "alpha\n"), writeFile(t, in, "b.txt", "beta\n"), writeFile(t, in, "c.txt", "gamma\n")}
	job := lastField(cli(t, bin, h.Admin, append([]string{"queue", "submit", "--pipeline", "shout"}, files...)...))
	b.waitText("job "+job+" at 100%", fmt.Sprintf(`[data-job="%s"] .progress`, job), `^100%$`)
	b.waitText("job "+job+" done", fmt.Sprintf(`[data-job="%s"] .job-state`, job), `^done$`)
	b.shot("job-done")

	// 4. A failing job: its task is dead-lettered and listed; without the admin token its input
	// names and error messages are left out (docs/admin-api.md). Its input's name, chosen by
	// whoever submits, is markup that would run script if the page rendered it as HTML: once the
	// token is given (step 6) it must show as text.
	failDir := t.TempDir()
	const hostile = `<img src=x onerror="window.__xss=1">`
	if err := os.Mkdir(filepath.Join(failDir, hostile), 0o755); err != nil {
		t.Fatal(err)
	}
	cli(t, bin, h.Admin, "queue", "submit", "--pipeline", "shout", "--name-root", failDir, writeFile(t, filepath.Join(failDir, hostile), "fail.txt", "x\n"))
	b.waitJS("a dead letter", `() => document.querySelector("#dead [data-task] ol.errors li") !== null`)
	task := b.evalString(`() => document.querySelector("#dead [data-task]").dataset.task`)
	if got := b.text(`#dead [data-task]`); strings.Contains(got, "fail.txt") || strings.Contains(got, "failing on purpose") {
		t.Errorf("without the token, dead letter %q shows its input name or error message", got)
	}
	errorsNow := func() int {
		var ti struct {
			State  string            `json:"state"`
			Errors []json.RawMessage `json:"errors"`
		}
		getJSON(t, h.Admin, "/v1/queue/tasks/"+task, &ti)
		return len(ti.Errors)
	}
	before := errorsNow()
	b.shot("dead-letter")

	// 5. Retry without a token: the host refuses, the page says so in words, the task stays.
	b.click(fmt.Sprintf(`[data-task="%s"] button.retry`, task))
	msg := b.waitText("retry refused", `#message`, `Refused`)
	if !strings.Contains(msg, "401") || !strings.Contains(msg, "admin token") {
		t.Errorf("refusal message %q does not say why (401, admin token)", msg)
	}
	b.waitJS("token form shown", `() => !document.getElementById("token-form").hidden`)
	b.shot("refused-without-token")
	if n := errorsNow(); n != before {
		t.Fatalf("task %s has %d errors after a refused retry, want %d (left alone)", task, n, before)
	}

	// 6. With the token (asked once, kept in the session): the retry re-runs the dead task.
	input, err := b.page.Timeout(wait).Element("#token-input")
	if err != nil {
		t.Fatal(err)
	}
	if err := input.Input(token); err != nil {
		t.Fatal(err)
	}
	b.click(`#token-form button[type=submit]`)
	b.waitText("token accepted", `#auth`, `^admin token accepted$`)
	b.waitText("the dead letter's error, with the token", `#dead [data-task] ol.errors li`, `failing on purpose|exit`)
	if got := b.text(`#dead [data-task]`); !strings.Contains(got, hostile+"/fail.txt") {
		t.Errorf("dead letter %q does not show its input name %q as text", got, hostile+"/fail.txt")
	}
	if b.evalString(`() => String(window.__xss || document.querySelectorAll("#dead img").length || "")`) != "" {
		t.Fatal("an input name was rendered as HTML: script from a job submitter ran in the operator's page")
	}

	// The stage module's logs, followed: the failure so far, then the re-run's as it happens.
	sel, err := b.page.Timeout(wait).Element("#log-module")
	if err != nil {
		t.Fatal(err)
	}
	if err := sel.Select([]string{"upper"}, true, rod.SelectorTypeText); err != nil {
		t.Fatal(err)
	}
	b.click("#log-follow")
	countFailures := `() => (document.getElementById("logs").textContent.match(/failing on purpose/g) || []).length`
	b.waitJS("the stage's failure in its logs", countFailures+` > 0`)
	failures := b.evalString(`() => String((` + countFailures + `)())`)

	b.click(fmt.Sprintf(`[data-task="%s"] button.retry`, task))
	b.waitText("retry done", `#message`, `retry task `+task+`: done`)
	b.waitJS("task re-run: a new error in its history", fmt.Sprintf(
		`() => document.querySelectorAll('[data-task="%s"] ol.errors li').length > %d`, task, before))
	if n := errorsNow(); n <= before {
		t.Fatalf("task %s has %d errors after the retry, want more than %d (re-run)", task, n, before)
	}
	if got := b.evalString(`() => sessionStorage.getItem("wasmpod.adminToken") || ""`); got != token {
		t.Errorf("token in sessionStorage %q, want the one typed", got)
	}
	b.waitJS("the re-run's failure followed in the logs", `() => (`+countFailures+`)() > `+failures)
	b.shot("retried-with-token")

	// 7. Scatter: complete answers, then partial ones once leaf-b is stopped, with b missing.
	for range 3 {
		if code, body := post(t, "http://"+h.Ingress+"/sum", "abc"); code != 200 {
			t.Fatalf("POST /sum: %d %s", code, body)
		}
	}
	b.waitText("complete answers counted", "#scatter-counts", `3 requests, 0 partial`)
	cli(t, bin, h.Admin, "stop", "leaf-b")
	b.waitText("leaf-b stopped", `tr[data-module="leaf-b"] td.state`, `^stopped$`)
	deadline := time.Now().Add(wait)
	for b.text("#answers tr:first-child td:nth-child(3)") != "partial" {
		if time.Now().After(deadline) {
			b.shot("failed-no-partial-answer")
			t.Fatalf("no partial answer shown after leaf-b stopped")
		}
		post(t, "http://"+h.Ingress+"/sum", "abc")
		time.Sleep(300 * time.Millisecond)
	}
	if missing := b.text("#answers tr:first-child td:nth-child(4)"); missing != "b" {
		t.Errorf("newest partial answer lists missing shards %q, want b", missing)
	}
	b.waitText("shard b's missing count", `tr[data-shard="b"] td:last-child`, `^[1-9]`)
	b.waitText("shard a's local leaf latency", `tr[data-shard="a"] td:nth-child(3)`, `[µm]?s$`)
	b.shot("scatter-partial")
	if b.evalString(`() => window.__noReload || ""`) != "yes" {
		t.Error("the page was reloaded: changes must show without one")
	}
	// Only the refused retry may have logged an error (Chromium logs the 401 response); no
	// script error at any step.
	if errs, exceptions := b.errors(); exceptions > 0 || len(errs) > 1 {
		t.Errorf("the console logged errors (want at most the refused request's 401):\n%s", strings.Join(errs, "\n"))
	}

	// 8. The host goes away: the page says so in words, and keeps the last state it saw.
	h.Kill()
	b.waitText("host gone", "#message", `Cannot read the host's state`)
	if got := b.text(`tr[data-module="leaf-a"] td.state`); got != "running" {
		t.Errorf("leaf-a shows %q after the host went away, want the last state seen (running)", got)
	}
	b.shot("host-gone")
	if _, exceptions := b.errors(); exceptions > 0 {
		t.Errorf("script errors once the host went away")
	}
}

// post sends body to url and returns the status and body.
func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Post(url, "application/octet-stream", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func lastField(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}
