package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/wasmpod/wasmpod/cluster/scatter"
	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/runtime"
)

// TestHandle drives the search example's leaf and merge through handles, as the host's scatter
// service does.
func TestHandle(t *testing.T) {
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "doc"), []byte("gnu gnu general"), 0o644); err != nil {
		t.Fatal(err)
	}
	leafWasm, mergeWasm := guest(t, "plugins/search-leaf"), guest(t, "plugins/search-merge")
	s, _ := pod(t, module("leaf", "leaf", leafWasm, "      volumeMounts: [{name: d, mountPath: /data, readOnly: true}]\n")+
		module("merge", "merge", mergeWasm, ""),
		"  volumes: [{name: d, hostPath: {path: "+data+"}}]\n")
	ctx := context.Background()

	leaf, err := s.Handle("leaf", podspec.RoleLeaf)
	if err != nil {
		t.Fatal(err)
	}
	merge, err := s.Handle("merge", podspec.RoleMerge)
	if err != nil {
		t.Fatal(err)
	}
	if !leaf.Ready() || !leaf.RunsLocally() || leaf.Name() != "leaf" {
		t.Fatalf("leaf handle: ready %v local %v name %q", leaf.Ready(), leaf.RunsLocally(), leaf.Name())
	}
	part, err := leaf.Call(ctx, scatter.RequestID{}, []byte("3 gnu"), nil)
	if err != nil || string(part) != "k 3\n2\tdoc\n" {
		t.Fatalf("leaf: %q, %v", part, err)
	}
	out, err := merge.Merge(ctx, []runtime.Part{{Data: part}, {Missing: true}}, nil)
	if err != nil || string(out) != "2\tdoc\n" {
		t.Fatalf("merge: %q, %v", out, err)
	}

	for _, tc := range []struct {
		name string
		role podspec.Role
		want error
	}{
		{"nope", podspec.RoleLeaf, ErrNotFound},
		{"leaf", podspec.RoleMerge, ErrInvalid},
		{"merge", podspec.RoleLeaf, ErrInvalid},
	} {
		if _, err := s.Handle(tc.name, tc.role); !errors.Is(err, tc.want) {
			t.Errorf("Handle(%s, %s): %v, want %v", tc.name, tc.role, err, tc.want)
		}
	}

	// A paused module is not ready (a scatter skips it instead of calling it), and is again
	// once resumed.
	if err := s.Pause("leaf"); err != nil {
		t.Fatal(err)
	}
	if leaf.Ready() {
		t.Fatal("a paused leaf's handle says it is ready")
	}
	if err := s.Resume("leaf"); err != nil {
		t.Fatal(err)
	}
	if !leaf.Ready() {
		t.Fatal("a resumed leaf's handle says it is not ready")
	}

	// A stopped module: the handle follows it and fails fast; started again, it serves again.
	if err := s.StopModule(ctx, "leaf"); err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Call(ctx, scatter.RequestID{}, []byte("3 gnu"), nil); !errors.Is(err, ErrNotReady) {
		t.Fatalf("stopped leaf: %v, want ErrNotReady", err)
	}
	if err := s.StartModule(ctx, "leaf"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, s, "leaf", "ready", func(st ModuleStatus) bool { return st.Ready })
	if _, err := leaf.Call(ctx, scatter.RequestID{}, []byte("3 gnu"), nil); err != nil {
		t.Fatalf("restarted leaf: %v", err)
	}

	// Ingress admission: counted until released, refused once draining.
	release, err := s.AdmitIngress()
	if err != nil {
		t.Fatal(err)
	}
	release()
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AdmitIngress(); !errors.Is(err, ErrDraining) {
		t.Fatalf("AdmitIngress while draining: %v, want ErrDraining", err)
	}
}
