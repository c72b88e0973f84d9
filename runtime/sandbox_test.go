package runtime_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

func TestSandboxByDefault(t *testing.T) {
	e := newEngine(t, runtime.DefaultConfig())
	wasm := readFile(t, wasmbuild.WAT(t, "testdata/sandbox.wat"))
	cases := []struct {
		name      string
		grant     func(*runtime.ModuleConfig)
		env       uint32
		prestatOK bool
	}{
		{"default", func(*runtime.ModuleConfig) {}, 0, false},
		{"env granted", func(c *runtime.ModuleConfig) { c.Env = map[string]string{"A": "1", "B": "2"} }, 2, false},
		{"mount granted", func(c *runtime.ModuleConfig) {
			c.Mounts = []runtime.Mount{{HostPath: t.TempDir(), GuestPath: "/data", ReadOnly: true}}
		}, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := runtime.DefaultModuleConfig("sandbox")
			tc.grant(&cfg)
			m := started(t, e, wasm, cfg)
			out, err := m.Call(context.Background(), runtime.RoleHandle, nil, nil)
			if err != nil || len(out) != 40 {
				t.Fatalf("%x %v", out, err)
			}
			u32 := func(off int) uint32 { return binary.LittleEndian.Uint32(out[off:]) }
			if u32(0) != tc.env {
				t.Errorf("guest sees %d environment variables, want %d", u32(0), tc.env)
			}
			if prestatOK := u32(4) == 0; prestatOK != tc.prestatOK {
				t.Errorf("fd_prestat_get(3) errno %d; a directory is visible: %v, want %v", u32(4), prestatOK, tc.prestatOK)
			}
			if u32(8) != 0 || bytes.Equal(out[24:40], make([]byte, 16)) {
				t.Errorf("random_get: errno %d, bytes %x", u32(8), out[24:40])
			}
			now := binary.LittleEndian.Uint64(out[16:])
			if u32(12) != 0 || time.Since(time.Unix(0, int64(now))).Abs() > time.Hour {
				t.Errorf("clock_time_get: errno %d, value %d", u32(12), now)
			}
		})
	}
}
