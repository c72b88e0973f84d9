package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
)

func TestParseAppTokens(t *testing.T) {
	for _, c := range []struct {
		name, file string
		want       map[string]string
		errs       []string // each must be named in the error
	}{
		{"two apps, comments and blanks", "# apps on n1\n\nbilling  0123456789abcdef\nreports\tfedcba9876543210\n",
			map[string]string{"billing": "0123456789abcdef", "reports": "fedcba9876543210"}, nil},
		{"empty file", "", map[string]string{}, nil},
		{"missing token", "billing\n", nil, []string{"line 1: want NAME TOKEN"}},
		{"short token", "billing short\n", nil, []string{"line 1: app billing: token shorter than 16 bytes"}},
		{"bad name", "bil/ling 0123456789abcdef\n", nil, []string{`line 1: app name "bil/ling"`}},
		{"duplicate name and shared token, every line named", "a 0123456789abcdef\na 1123456789abcdef\nb 0123456789abcdef\nc x y\n", nil,
			[]string{"line 2: app a listed twice", "line 3: app b has app a's token", "line 4: want NAME TOKEN"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseAppTokens(strings.NewReader(c.file))
			if len(c.errs) > 0 {
				if !errors.Is(err, ErrAppTokens) {
					t.Fatalf("err = %v, want ErrAppTokens", err)
				}
				for _, e := range c.errs {
					if !strings.Contains(err.Error(), e) {
						t.Errorf("error %q does not name %q", err, e)
					}
				}
				return
			}
			if err != nil || fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("got %v, %v; want %v", got, err, c.want)
			}
		})
	}
}

// TestElectionAppTokens: each app has a credential of its own. An app campaigns, renews and
// resigns only with sessions in its namespace, sees the fencing token only of leases its own
// sessions hold; another app, a tokenless local client and a wrong token never see it and can
// neither resign nor take over the lease. The operator's token does all of it.
func TestElectionAppTokens(t *testing.T) {
	const billing, reports = "billing-token-0123456789", "reports-token-0123456789"
	held := cluster.Lease{Name: "job", Held: true, Holder: "n1", Session: "billing/w1", Token: 7, Index: 9}
	fc := &fakeCluster{lease: held}
	cfg := DefaultConfig()
	cfg.Token = "admin-token"
	cfg.AppTokens = map[string]string{"billing": billing, "reports": reports}
	cfg.Cluster = fc
	_, adminAddr, _, _ := hostileServer(t, cfg)
	base := "http://" + adminAddr
	for _, c := range []struct {
		name, token, method, path, body string
		status                          int
		token7                          bool // the answer shows fencing token 7
	}{
		{"holder campaigns", billing, "POST", "/v1/election/job/campaign", `{"session":"billing/w1"}`, 200, true},
		{"holder renews", billing, "POST", "/v1/election/job/renew", `{"session":"billing/w1","token":7}`, 200, true},
		{"holder reads its lease", billing, "GET", "/v1/election/job", "", 200, true},
		{"holder watches its lease", billing, "GET", "/v1/election/job/watch?index=1", "", 200, true},
		{"other app reads: no token", reports, "GET", "/v1/election/job", "", 200, false},
		{"other app resigns the holder's session", reports, "POST", "/v1/election/job/resign", `{"session":"billing/w1","token":7}`, 403, false},
		{"other app campaigns as the holder", reports, "POST", "/v1/election/job/campaign", `{"session":"billing/w1"}`, 403, false},
		{"other app campaigns in its namespace: an answer about another session hides the token", reports, "POST", "/v1/election/job/campaign", `{"session":"reports"}`, 200, false},
		{"no token reads: no token", "", "GET", "/v1/election/job", "", 200, false},
		{"wrong token campaigns", "nope-nope-nope-nope", "POST", "/v1/election/job/campaign", `{"session":"billing/w1"}`, 401, false},
		{"operator reads", "admin-token", "GET", "/v1/election/job", "", 200, true},
		{"operator resigns any session", "admin-token", "POST", "/v1/election/job/resign", `{"session":"billing/w1","token":7}`, 200, true},
		{"an app token is not the admin token", billing, "POST", "/v1/modules/main/stop", "", 401, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			fc.got = nil
			status, body := do(t, c.method, base+c.path, c.token, strings.NewReader(c.body))
			if status != c.status {
				t.Fatalf("got %d %s; want %d", status, body, c.status)
			}
			var l cluster.Lease
			json.Unmarshal([]byte(body), &l)
			if (l.Token == 7) != c.token7 {
				t.Fatalf("token shown = %v, want %v: %s", l.Token == 7, c.token7, body)
			}
			if status == 403 && fc.got != nil {
				t.Fatalf("refused operation reached the cluster: %+v", fc.got)
			}
		})
	}
	// The 409 of a lost campaign carries the lease: the token is hidden from the loser.
	fc.err = cluster.ErrNotLeader
	status, body := do(t, "POST", base+"/v1/election/job/campaign", reports, strings.NewReader(`{"session":"reports"}`))
	var e ElectionError
	if json.Unmarshal([]byte(body), &e); status != 409 || e.Lease == nil || e.Lease.Token != 0 || e.Lease.Session != "billing/w1" {
		t.Fatalf("lost campaign: %d %s; want 409 with the holder's lease, token hidden", status, body)
	}
}

func TestNewRefusesAnAppWithTheAdminToken(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Token = "same-token-0123456789"
	cfg.AppTokens = map[string]string{"a": "same-token-0123456789"}
	if _, err := New(cfg, nil); !errors.Is(err, ErrAppTokens) || !strings.Contains(err.Error(), "app a has the admin token") {
		t.Fatalf("New: %v; want ErrAppTokens naming app a", err)
	}
}

// TestAppTokensReload: the app token file is re-read on demand (SIGHUP) and on change. A new
// token works and the replaced one stops at once; a bad file (a short token, a line that is not
// NAME TOKEN, an app holding the admin token, a missing file) is refused with an error naming
// the problem, and the tokens in force keep working. Before, the file was read once at start:
// revoking a leaked app token needed a host restart.
func TestAppTokensReload(t *testing.T) {
	const old, fresh, newer = "billing-token-0123456789", "billing-token-rotated-0001", "billing-token-rotated-0002"
	fc := &fakeCluster{lease: cluster.Lease{Name: "job", Held: true, Holder: "n1", Session: "billing", Token: 7}}
	cfg := DefaultConfig()
	cfg.Token = "admin-token-0123456789"
	cfg.AppTokens = map[string]string{"billing": old}
	cfg.Cluster = fc
	var logs syncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s, adminAddr, _, _ := hostileServer(t, cfg)
	campaign := func(tok string) int {
		status, _ := do(t, "POST", "http://"+adminAddr+"/v1/election/job/campaign", tok, strings.NewReader(`{"session":"billing"}`))
		return status
	}
	file := filepath.Join(t.TempDir(), "apps")
	write := func(content string) {
		// As editors do: write a new file and rename it into place.
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	if got := campaign(old); got != 200 {
		t.Fatalf("the start-up token: %d", got)
	}

	// SIGHUP's reload.
	write("billing " + fresh + "\n")
	if err := s.ReloadAppTokens(file); err != nil {
		t.Fatal(err)
	}
	if a, b := campaign(old), campaign(fresh); a != 401 || b != 200 {
		t.Fatalf("after the reload: old token %d, new token %d; want 401, 200", a, b)
	}
	for _, c := range []struct{ name, content, want string }{
		{"a short token", "billing short\n", "line 1: app billing: token shorter than 16 bytes"},
		{"not NAME TOKEN", "# apps\nbilling\n", "line 2: want NAME TOKEN"},
		{"the admin token", "billing " + cfg.Token + "\n", "app billing has the admin token"},
	} {
		write(c.content)
		err := s.ReloadAppTokens(file)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: error %v; want one naming %s and %q", c.name, err, file, c.want)
		}
		if got := campaign(fresh); got != 200 {
			t.Fatalf("%s refused, the tokens in force must keep working: %d", c.name, got)
		}
	}
	if err := s.ReloadAppTokens(file + ".missing"); err == nil || campaign(fresh) != 200 {
		t.Fatalf("a missing file: %v; the tokens in force must keep working", err)
	}

	// The watch: a changed file is picked up without a signal; a bad one is not.
	if err := s.WatchAppTokens(file); err != nil {
		t.Fatal(err)
	}
	write("billing " + newer + "\n")
	waitCode(t, func() int { return campaign(newer) }, 200)
	if got := campaign(fresh); got != 401 {
		t.Fatalf("after the watched change the replaced token answers %d; want 401", got)
	}
	write("billing short\n")
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(logs.String(), "app token file refused") {
		if time.Now().After(deadline) {
			t.Fatalf("the watch never refused the bad file; log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := campaign(newer); got != 200 {
		t.Fatalf("after the watch refused a bad file the token in force answers %d; want 200", got)
	}
	write("reports " + fresh + "\n") // a good file after the bad one: the watch goes on
	waitCode(t, func() int { return campaign(newer) }, 401)
	if got := campaign(fresh); got != 403 { // reports may not use session billing
		t.Fatalf("the reports app: %d; want 403", got)
	}
}

// waitCode polls f until it returns want (a minute at most: the watch settles in 200 ms).
func waitCode(t *testing.T, f func() int, want int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for got := f(); got != want; got = f() {
		if time.Now().After(deadline) {
			t.Fatalf("got %d for a minute; want %d", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer for a logger written from other goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestAppTokensConfigMapSwap: an app token file mounted from a Kubernetes Secret or ConfigMap is
// followed. kubelet updates such a volume by writing the new files in a new directory and
// renaming a symbolic link (..data) over the old one, so no event names the file; the watch
// used to react only to events naming it, and a rotated token never took effect.
func TestAppTokensConfigMapSwap(t *testing.T) {
	const old, rotated = "billing-token-0123456789", "billing-token-rotated-0001"
	fc := &fakeCluster{lease: cluster.Lease{Name: "job", Held: true, Holder: "n1", Session: "billing", Token: 7}}
	cfg := DefaultConfig()
	cfg.Token = "admin-token-0123456789"
	cfg.AppTokens = map[string]string{"billing": old}
	cfg.Cluster = fc
	s, adminAddr, _, _ := hostileServer(t, cfg)
	campaign := func(tok string) int {
		status, _ := do(t, "POST", "http://"+adminAddr+"/v1/election/job/campaign", tok, strings.NewReader(`{"session":"billing"}`))
		return status
	}
	// The volume as kubelet lays it out: ..v1/apps, ..data -> ..v1, apps -> ..data/apps.
	vol := t.TempDir()
	version := func(name, content string) {
		if err := os.Mkdir(filepath.Join(vol, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(vol, name, "apps"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", "billing "+old+"\n")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("..v1", filepath.Join(vol, "..data")))
	must(os.Symlink(filepath.Join("..data", "apps"), filepath.Join(vol, "apps")))
	file := filepath.Join(vol, "apps")
	must(s.WatchAppTokens(file))
	if got := campaign(old); got != 200 {
		t.Fatalf("the start-up token: %d", got)
	}
	// kubelet's update: ..v2, a ..data_tmp link to it renamed over ..data, ..v1 removed.
	version("..v2", "billing "+rotated+"\n")
	must(os.Symlink("..v2", filepath.Join(vol, "..data_tmp")))
	must(os.Rename(filepath.Join(vol, "..data_tmp"), filepath.Join(vol, "..data")))
	must(os.RemoveAll(filepath.Join(vol, "..v1")))
	waitCode(t, func() int { return campaign(rotated) }, 200)
	if got := campaign(old); got != 401 {
		t.Fatalf("after the swap the replaced token answers %d; want 401", got)
	}
}
