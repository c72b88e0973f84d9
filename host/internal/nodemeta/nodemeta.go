package nodemeta

// This file keeps the node's advertisement (Meta) in step with what its pod runs.

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/host/internal/podspec"
	"github.com/wasmpod/wasmpod/host/internal/supervisor"
)

// Shards is the node's scatter service as the keeper sees it: the shards it serves and its
// internal endpoint's address. Its methods are called from the keeper's goroutine.
type Shards interface {
	LocalShards() []string
	Addr() string
}

// PodMeta is what this node advertises by gossip: the admin address, the pod, its running
// modules, and the shards it serves: with a scatter service, the spec's shards whose leaf
// module is ready here and the internal endpoint's address; else its running leaf modules.
func PodMeta(adminAddr string, sup *supervisor.Supervisor, sc Shards) Meta {
	m := Meta{AdminAddr: adminAddr, Pods: []string{sup.Pod().Metadata.Name}}
	for _, st := range sup.Statuses() {
		if st.Reason != "" || st.StartedAt == nil {
			continue // stopped, failed or in back-off: not running here
		}
		m.Modules = append(m.Modules, st.Name)
		if sc == nil && st.Role == podspec.RoleLeaf {
			m.Shards = append(m.Shards, st.Name)
		}
	}
	if sc != nil {
		m.Shards, m.ScatterAddr = sc.LocalShards(), sc.Addr()
	}
	return m
}

// Keeper keeps the node's metadata current with what the pod runs. Stop it before the
// node shuts down.
type Keeper struct {
	cancel context.CancelFunc
	done   chan struct{}
	kick   chan struct{}
}

// Kick makes the keeper compare the metadata now rather than at its next tick (e.g. once the
// pod has started, so other nodes route to its shards without waiting an interval).
func (k *Keeper) Kick() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// Keep gossips PodMeta now and whenever it changes (checked every interval).
func Keep(node *cluster.Node, adminAddr string, sup *supervisor.Supervisor, sc Shards, interval time.Duration, log *slog.Logger) *Keeper {
	ctx, cancel := context.WithCancel(context.Background())
	k := &Keeper{cancel: cancel, done: make(chan struct{}), kick: make(chan struct{}, 1)}
	go func() {
		defer close(k.done)
		var last Meta
		first := true
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			m := PodMeta(adminAddr, sup, sc)
			if first || !m.Equal(last) {
				err := node.SetMeta(m.Cluster())
				if errors.Is(err, cluster.ErrMetaTooLarge) && sc != nil {
					m.Modules = nil // the shards route requests: they go last
					err = node.SetMeta(m.Cluster())
				}
				for errors.Is(err, cluster.ErrMetaTooLarge) && len(m.Modules) > 0 {
					m.Modules, m.Shards = m.Modules[:len(m.Modules)-1], nil // keep what fits
					err = node.SetMeta(m.Cluster())
				}
				if err != nil {
					log.Warn("cluster: node metadata not updated", "err", err)
				} else {
					last, first = m, false
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-k.kick:
			}
		}
	}()
	return k
}

// Stop ends the keeper and waits for it. Idempotent.
func (k *Keeper) Stop() {
	k.cancel()
	<-k.done
}
