// Package nodemeta is what a wasmpod host advertises about itself through the cluster's
// gossiped metadata, which the cluster carries without reading (cluster.Meta). Its keys are
// those of every earlier release, so that nodes of different releases keep routing to each
// other during a rolling upgrade.
package nodemeta

import (
	"slices"

	"github.com/wasmpod/wasmpod/cluster"
)

// Meta is a host's advertisement.
type Meta struct {
	// AdminAddr is the host's admin listener.
	AdminAddr string
	// Pods and Modules are what it runs; Shards the scatter shards it serves.
	Pods, Modules, Shards []string
	// ScatterAddr is the host:port of its internal scatter endpoint, where roots on other
	// nodes call the Shards it holds; empty when it serves none. Nodes that predate it omit
	// it, and their shards are not routed to.
	ScatterAddr string
}

// The keys of the gossiped map.
const (
	keyAdmin   = "admin"
	keyPods    = "pods"
	keyModules = "modules"
	keyShards  = "shards"
	keyScatter = "scatter"
)

// Cluster encodes m as the cluster's opaque metadata (empty values are left out, as every
// earlier release did).
func (m Meta) Cluster() cluster.Meta {
	out := cluster.Meta{}
	set := func(k string, v any, empty bool) {
		if !empty {
			_ = out.Set(k, v)
		}
	}
	set(keyAdmin, m.AdminAddr, m.AdminAddr == "")
	set(keyPods, m.Pods, len(m.Pods) == 0)
	set(keyModules, m.Modules, len(m.Modules) == 0)
	set(keyShards, m.Shards, len(m.Shards) == 0)
	set(keyScatter, m.ScatterAddr, m.ScatterAddr == "")
	return out
}

// Of decodes a member's metadata (unknown keys are ignored, missing ones empty).
func Of(c cluster.Meta) Meta {
	return Meta{AdminAddr: c.String(keyAdmin), Pods: c.Strings(keyPods), Modules: c.Strings(keyModules),
		Shards: c.Strings(keyShards), ScatterAddr: c.String(keyScatter)}
}

// Equal reports whether two advertisements are the same.
func (m Meta) Equal(o Meta) bool {
	return m.AdminAddr == o.AdminAddr && m.ScatterAddr == o.ScatterAddr && slices.Equal(m.Pods, o.Pods) &&
		slices.Equal(m.Modules, o.Modules) && slices.Equal(m.Shards, o.Shards)
}
