package scatter

import (
	"context"

	"github.com/wasmpod/wasmpod/runtime"
)

// Leaf is one replica of a shard: something that runs the shard's leaf on a query.
type Leaf interface {
	// Call runs the leaf on in and appends its part to dst. It must honour ctx's deadline and
	// must not keep in or dst after it returns. id identifies the request (remote leaves send it
	// to the peer, which drops duplicates).
	Call(ctx context.Context, id RequestID, in, dst []byte) ([]byte, error)
}

// LocalLeaf is implemented by leaves that run in this process, through a module's warm pool
// (ModuleLeaf, the host's module handles): a Gather runs their first attempts on its worker
// goroutines, synchronously, instead of on a goroutine per attempt. RunsLocally reports whether
// this leaf is one. A local leaf must honour ctx's deadline as ctx.Deadline reports it (a
// runtime.Module call does): its ctx's Done is the Gather caller's, which is nil when the
// caller's context cannot be cancelled (see Gather.Do).
type LocalLeaf interface {
	Leaf
	RunsLocally() bool
}

// ModuleLeaf is a local replica: a leaf module of this node, called through its warm pool.
// A Gather runs ModuleLeaf primaries on its worker goroutines, synchronously; every other Leaf
// runs asynchronously on a goroutine of its own per attempt.
type ModuleLeaf struct {
	m *runtime.Module
}

// NewModuleLeaf wraps a running module that exports the leaf role.
func NewModuleLeaf(m *runtime.Module) *ModuleLeaf { return &ModuleLeaf{m: m} }

// Module returns the wrapped module.
func (l *ModuleLeaf) Module() *runtime.Module { return l.m }

// RunsLocally is true: a ModuleLeaf is a LocalLeaf.
func (l *ModuleLeaf) RunsLocally() bool { return true }

// Call calls the module's leaf handler (runtime.RoleLeaf).
func (l *ModuleLeaf) Call(ctx context.Context, _ RequestID, in, dst []byte) ([]byte, error) {
	return l.m.Call(ctx, runtime.RoleLeaf, in, dst)
}

// Replica is one copy of a shard and the node that holds it.
type Replica struct {
	// Node is the cluster member holding the replica, as named in gossip; "" is this node,
	// which is never considered dead.
	Node string
	// Leaf runs the shard there.
	Leaf Leaf
}

// Shard is one slice of the data a leaf module serves, with its replicas in order of preference
// (local first is usually right: no network, and the local pool applies back-pressure).
type Shard struct {
	// Name identifies the shard in Result.Missing and on the wire (as in gossip Meta.Shards).
	Name     string
	Replicas []Replica
}
