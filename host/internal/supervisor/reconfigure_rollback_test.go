package supervisor

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestReconfigureRollback checks that a Reconfigure is applied whole or not at all: a refused
// one leaves the module's version, bytes and spec as they were, and whatever runs afterwards
// runs the old version under the old spec (asked of the guest itself, not only of Status); a
// successful one applies both the new spec and the new version.
func TestReconfigureRollback(t *testing.T) {
	hogPath := guest(t, "host/testdata/hog")
	kitPath := guest(t, "runtime/testdata/kit")
	read := func(t *testing.T, p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hog, kit, pk := read(t, hogPath), read(t, kitPath), read(t, podkit(t))

	// The guests report their config key "snapshot" differently: hog answers it as its
	// snapshot (taken through the runtime from the running instance), kit to "config:snapshot".
	hogSees := func(t *testing.T, s *Supervisor) string {
		t.Helper()
		g := s.byName["web"].active.Load()
		if g == nil {
			st, _ := s.Status("web")
			t.Fatalf("web is not running: %s %s: %s", st.State, st.Reason, st.LastError)
		}
		b, err := g.mod.Snapshot(context.Background())
		if err != nil {
			t.Fatalf("snapshot of the running guest: %v", err)
		}
		return string(b)
	}
	kitSees := func(t *testing.T, s *Supervisor) string {
		t.Helper()
		return call(t, s, "web", "config:snapshot")
	}

	for _, tc := range []struct {
		name string
		from string // the pod's wasm file
		// config of the pod's spec and of the spec Reconfigure is given (YAML / Go map)
		fromConfig string
		toConfig   map[string]string
		modExtra   string // more lines of the module's spec
		podExtra   string
		// down, when set, takes the module down before the Reconfigure (it stays wanted
		// running, as after a crash under restartPolicy Never).
		down func(t *testing.T, s *Supervisor)
		to   []byte
		// wantErr is a part of the error's text, "" when the Reconfigure must succeed.
		wantErr string
		// after the Reconfigure the module must run this version under this config
		wantWasm []byte
		wantSpec string
		sees     func(t *testing.T, s *Supervisor) string
	}{
		{
			name:       "running module whose new version refuses the state",
			from:       hogPath,
			fromConfig: "{snapshot: OLD-SPEC}", // hog hands over "OLD-SPEC", which kit cannot parse
			toConfig:   map[string]string{"snapshot": "NEW-SPEC"},
			to:         kit,
			wantErr:    "refused",
			wantWasm:   hog,
			wantSpec:   "OLD-SPEC",
			sees:       hogSees,
		},
		{
			name:       "module not running whose new version fails to start",
			from:       kitPath,
			fromConfig: "{snapshot: OLD-SPEC}",
			toConfig:   map[string]string{"snapshot": "NEW-SPEC", "failstart": "true"},
			modExtra:   "      livenessProbe: {periodSeconds: 1, failureThreshold: 1}\n",
			podExtra:   "  restartPolicy: Never\n",
			down: func(t *testing.T, s *Supervisor) {
				// A liveness failure crashes it; restartPolicy Never leaves it down.
				call(t, s, "web", "sethealth:2")
				waitStatus(t, s, "web", "failed", func(st ModuleStatus) bool { return st.Reason == "Failed" })
			},
			to:       pk,
			wantErr:  "failstart is set",
			wantWasm: kit,
			wantSpec: "OLD-SPEC",
			sees: func(t *testing.T, s *Supervisor) string {
				t.Helper()
				// What the next start runs: the old version under the old spec.
				if err := s.StartModule(context.Background(), "web"); err != nil {
					t.Fatalf("start after the refused reconfigure: %v", err)
				}
				return kitSees(t, s)
			},
		},
		{
			name:       "success applies spec and version",
			from:       kitPath,
			fromConfig: "{snapshot: OLD-SPEC}", // kit hands over its counter, which hog accepts
			toConfig:   map[string]string{"snapshot": "NEW-SPEC"},
			to:         hog,
			wantWasm:   hog,
			wantSpec:   "NEW-SPEC",
			sees:       hogSees,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra := "      resources: {concurrency: 1}\n      config: " + tc.fromConfig + "\n" + tc.modExtra
			s, _ := pod(t, module("web", "main", tc.from, extra), tc.podExtra)
			before, err := s.Status("web")
			if err != nil {
				t.Fatal(err)
			}
			if tc.down != nil {
				tc.down(t, s)
			}
			m := *s.ModuleSpec("web")
			m.Config = tc.toConfig
			err = s.Reconfigure(context.Background(), &m, tc.to)

			st, _ := s.Status("web")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("reconfigure: %v", err)
				}
				if st.Version != before.Version+1 || st.SHA256 != digest(tc.wantWasm) || st.PreviousSHA256 != before.SHA256 {
					t.Fatalf("after the reconfigure: version %d sha %.12s previous %.12s, want %d %.12s %.12s",
						st.Version, st.SHA256, st.PreviousSHA256, before.Version+1, digest(tc.wantWasm), before.SHA256)
				}
			} else {
				if err == nil {
					t.Fatal("reconfigure succeeded")
				}
				if st.Version != before.Version || st.SHA256 != before.SHA256 || st.PreviousSHA256 != before.PreviousSHA256 {
					t.Fatalf("after a refused reconfigure: version %d sha %.12s previous %.12s, want them as they were: %d %.12s %.12s",
						st.Version, st.SHA256, st.PreviousSHA256, before.Version, before.SHA256, before.PreviousSHA256)
				}
				u := s.byName["web"]
				u.opMu.Lock()
				same := bytes.Equal(u.wasm, tc.wantWasm) && u.prevWasm == nil
				u.opMu.Unlock()
				if !same {
					t.Fatal("after a refused reconfigure the module's bytes changed")
				}
				if !errors.Is(err, ErrUpgradeFailed) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("reconfigure: %v, want %v naming %q", err, ErrUpgradeFailed, tc.wantErr)
				}
			}
			if got := st.Config["snapshot"]; got != tc.wantSpec {
				t.Fatalf("status config %v, want snapshot %s", st.Config, tc.wantSpec)
			}
			if got := tc.sees(t, s); got != tc.wantSpec {
				t.Fatalf("the running guest sees config snapshot=%q, want %q", got, tc.wantSpec)
			}
			// and it is that version that answered
			if g := s.byName["web"].active.Load(); g == nil || g.sha != digest(tc.wantWasm) {
				t.Fatalf("running %v, want version %.12s", g, digest(tc.wantWasm))
			}
		})
	}
}
