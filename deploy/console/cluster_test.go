package console

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/deploy/internal/deploytest"
)

// TestConsoleCluster runs examples/leader on three real nodes and watches one node's console:
// three alive members with their Raft roles, the leader-demo election's holder (its fencing
// token hidden from a reader without the admin token), and, after the holder is killed
// (SIGKILL), the dead member and the new holder, without a reload.
func TestConsoleCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("browser and three real hosts")
	}
	bin := build(t)
	leader := guest(t, "plugins/leader", false)
	storeBin, err := deploytest.Command("./examples/leader/store")
	if err != nil {
		t.Fatal(err)
	}
	root, err := deploytest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	storeAddr := startStore(t, storeBin)
	pod, err := os.ReadFile(filepath.Join(root, "examples", "leader", "pod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spec := strings.Replace(string(pod), "leader.wasm", leader, 1)
	spec = strings.Replace(spec, "http://127.0.0.1:7070", "http://"+storeAddr, 1)
	specPath := writeFile(t, dir, "pod.yaml", spec)

	const n = 3
	hosts := deploytest.StartCluster(t, bin, deploytest.ClusterConfig{
		Specs: []string{specPath, specPath, specPath}, Dir: dir, Label: "console-test", Env: []string{"WASMPOD_TOKEN=" + token}})
	names := []string{"n1", "n2", "n3"}

	b := newBrowser(t, "cluster")
	watch := 0
	b.open("http://" + hosts[watch].Admin + "/ui/")
	threeAlive := `() => { const rows = [...document.querySelectorAll("#members tr[data-member]")];
		return rows.length === 3 && rows.every(r => r.querySelector(".state").textContent === "alive"); }`
	b.waitJS("three alive members", threeAlive)
	b.waitJS("one Raft leader among them", `() => [...document.querySelectorAll("#members td.role")].filter(td => td.textContent === "leader").length === 1`)
	holder := b.waitText("the leader-demo holder", `tr[data-election="leader-demo"] td.holder`, `^n[1-3]$`)
	if tok := b.text(`tr[data-election="leader-demo"] td.token`); !strings.Contains(tok, "hidden") {
		t.Errorf("token cell %q for a reader without the admin token, want it hidden", tok)
	}
	var st struct {
		Elections []map[string]any `json:"elections"`
	}
	getJSON(t, hosts[watch].Admin, "/v1/console/state", &st)
	for _, e := range st.Elections {
		if _, ok := e["token"]; ok {
			t.Errorf("/v1/console/state without the token carries election %v's token", e["name"])
		}
	}
	killed := int(holder[1] - '1')
	if killed == watch {
		// Watch from a node that survives.
		watch = (killed + 1) % n
		b.open("http://" + hosts[watch].Admin + "/ui/")
		b.waitJS("three alive members", threeAlive)
		b.waitText("the leader-demo holder", `tr[data-election="leader-demo"] td.holder`, `^`+holder+`$`)
	}
	b.evalString(`() => { window.__noReload = "yes"; return ""; }`)
	b.shot("three-members-" + holder + "-holds")

	hosts[killed].Kill()
	t.Logf("killed the holder %s; watching %s", holder, names[watch])
	others := strings.Join(append(append([]string{}, names[:killed]...), names[killed+1:]...), "|")
	newHolder := b.waitText("a new holder", `tr[data-election="leader-demo"] td.holder`, `^(`+others+`)$`)
	b.waitText("the killed node dead", fmt.Sprintf(`tr[data-member="%s"] td.state`, holder), `^(dead|left)$`)
	b.waitJS("one Raft leader, alive", `() => { const ls = [...document.querySelectorAll("#members tr[data-member]")].filter(r => r.querySelector(".role").textContent === "leader");
		return ls.length === 1 && ls[0].querySelector(".state").textContent === "alive"; }`)
	b.shot("new-holder-" + newHolder)
	if n := b.evalString(`() => String(document.querySelectorAll("#members tr[data-member]").length)`); n != "3" {
		t.Errorf("%s member rows after the kill, want 3 (the dead one listed)", n)
	}
	if b.evalString(`() => window.__noReload || ""`) != "yes" {
		t.Error("the page was reloaded: changes must show without one")
	}
	if errs, exceptions := b.errors(); exceptions > 0 || len(errs) > 0 {
		t.Errorf("the console logged errors:\n%s", strings.Join(errs, "\n"))
	}
}

// startStore runs the leader example's fenced store and returns its address.
func startStore(t *testing.T, bin string) string {
	t.Helper()
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`store listening on (\S+)`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		return a
	case <-time.After(wait):
		t.Fatal("the store did not start")
	}
	return ""
}
