package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

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
