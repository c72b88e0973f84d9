package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmpod/wasmpod/deploy/internal/deploytest"
)

const unitFile = "systemd/wasmpod.service"

// analyzeRoot lays out a root directory for `systemd-analyze --root`: this machine's system
// units (the targets the unit depends on), the unit, and the release binary at the unit's
// ExecStart path (verify checks it is executable).
func analyzeRoot(t *testing.T, unit []byte) (string, string) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		deploytest.Skip(t, "systemd-analyze not found: install Debian's systemd package (.ci/run does)")
	}
	root := t.TempDir()
	units := "/usr/lib/systemd/system"
	if _, err := os.Stat(units); err != nil {
		units = "/lib/systemd/system"
	}
	must(t, os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755))
	if out, err := exec.Command("cp", "-a", units, filepath.Join(root, "usr/lib/systemd/system")).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v %s", units, err, out)
	}
	must(t, os.MkdirAll(filepath.Join(root, "etc/systemd/system"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "etc/systemd/system/wasmpod.service"), unit, 0o644))
	rel, err := deploytest.Release()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(releaseBinary(t, rel))
	must(t, err)
	must(t, os.MkdirAll(filepath.Join(root, "usr/local/bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "usr/local/bin/wasmpod"), bin, 0o755))
	return sa, root
}

// TestSystemdUnit checks the unit with systemd's own analyzer: `verify` finds nothing to say
// (an unknown key, a bad value or a missing binary would be reported), `security` rates its
// sandbox at most 2.0 of 10 ("OK"), and its command line, with the example environment file
// and the credentials directory filled in, parses with the binary's real flag set.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile(unitFile)
	must(t, err)
	sa, root := analyzeRoot(t, unit)
	verify := func(root string) string {
		cmd := exec.Command(sa, "--root="+root, "--man=no", "verify", "wasmpod.service")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out) + err.Error()
		}
		return string(out)
	}
	if out := verify(root); out != "" {
		t.Errorf("systemd-analyze verify %s:\n%s", unitFile, out)
	}
	// The check has teeth: a misspelt key is reported.
	_, bad := analyzeRoot(t, append(unit[:len(unit):len(unit)], "\n[Service]\nProtectSystm=strict\n"...))
	if out := verify(bad); !strings.Contains(out, "ProtectSystm") {
		t.Errorf("verify said nothing of a misspelt key: %q", out)
	}

	cmd := exec.Command(sa, "--root="+root, "security", "--offline=yes", "--no-pager", "wasmpod.service")
	out, err := cmd.CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for wasmpod.service: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.0 {
		t.Errorf("exposure %s > 2.0:\n%s", m[1], out)
	}
	t.Logf("systemd-analyze security: exposure %s", m[1])

	// The command line, as systemd would run it.
	env := map[string]string{}
	f, err := os.Open("systemd/wasmpod.env")
	must(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			k, v, _ := strings.Cut(l, "=")
			env[k] = v
		}
	}
	execStart := ""
	keys := map[string]string{}
	for _, l := range strings.Split(strings.ReplaceAll(string(unit), "\\\n", " "), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			keys[k] = v
			if k == "ExecStart" {
				execStart = v
			}
		}
	}
	args := strings.Fields(execStart)
	if len(args) < 3 || args[0] != "/usr/local/bin/wasmpod" || args[1] != "run" {
		t.Fatalf("ExecStart=%s", execStart)
	}
	for i, a := range args {
		a = strings.ReplaceAll(a, "%d", "/run/credentials/wasmpod.service")
		a = regexp.MustCompile(`\$\{(\w+)\}`).ReplaceAllStringFunc(a, func(ref string) string {
			v, ok := env[ref[2:len(ref)-1]]
			if !ok {
				t.Errorf("ExecStart uses %s, which wasmpod.env does not set", ref)
			}
			return v
		})
		args[i] = a
	}
	rel, _ := deploytest.Release()
	checkFlags(t, releaseBinary(t, rel), args[1:])
	// Stop: the default pod grace period (30 s) + 15 s, as in the StatefulSet.
	if keys["TimeoutStopSec"] != "45" || keys["KillSignal"] != "SIGTERM" {
		t.Errorf("TimeoutStopSec=%s KillSignal=%s", keys["TimeoutStopSec"], keys["KillSignal"])
	}
	for _, cred := range []string{"gossip.key", "admin.token"} {
		if !strings.Contains(string(unit), "LoadCredential="+cred+":") || !strings.Contains(execStart, "%d/"+cred) {
			t.Errorf("credential %s is not loaded and passed as %%d/%s", cred, cred)
		}
	}
}
