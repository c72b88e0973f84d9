package supervisor

import (
	"fmt"

	"github.com/wasmpod/wasmpod/runtime"
)

// Module returns the version of a module that traffic goes to, for pod-local calls between
// modules (host/internal/capability). ErrNotFound for an unknown name, ErrNotReady when no
// version is ready.
func (s *Supervisor) Module(name string) (*runtime.Module, error) {
	u := s.byName[name]
	if u == nil {
		return nil, fmt.Errorf("module %q: %w", name, ErrNotFound)
	}
	g := u.active.Load()
	if g == nil || !g.ready.Load() {
		return nil, fmt.Errorf("module %q: %w", name, ErrNotReady)
	}
	if g.cmd != nil {
		return nil, fmt.Errorf("module %q is a WASI command stage: it runs on files (pipelines), it takes no calls: %w", name, ErrInvalid)
	}
	return g.mod, nil
}
