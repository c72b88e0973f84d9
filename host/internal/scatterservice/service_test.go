package scatterservice

import (
	"net"
	"testing"

	"github.com/wasmpod/wasmpod/cluster"
	"github.com/wasmpod/wasmpod/host/internal/nodemeta"
	"github.com/wasmpod/wasmpod/host/internal/podspec"
)

func TestRouteTable(t *testing.T) {
	member := func(name string, state cluster.MemberState, addr string, shards ...string) cluster.Member {
		return cluster.Member{Name: name, State: state, Meta: nodemeta.Meta{ScatterAddr: addr, Shards: shards}.Cluster()}
	}
	spec := func(replicas int32, shards ...podspec.ScatterShard) *podspec.Scatter {
		return &podspec.Scatter{Replicas: replicas, Shards: shards}
	}
	local := func(n string) podspec.ScatterShard { return podspec.ScatterShard{Name: n, Leaf: "leaf-" + n} }
	remote := func(n string) podspec.ScatterShard { return podspec.ScatterShard{Name: n, Remote: true} }
	alive, dead, left := cluster.MemberAlive, cluster.MemberDead, cluster.MemberLeft
	self := cluster.Member{Name: "me", State: alive, IsLocal: true, Meta: nodemeta.Meta{ScatterAddr: "me:1", Shards: []string{"a"}}.Cluster()}
	for _, tc := range []struct {
		name    string
		spec    *podspec.Scatter
		members []cluster.Member
		want    string
	}{
		{"local only, self ignored", spec(2, local("a")), []cluster.Member{self}, "atrue;"},
		{"remote without holders", spec(2, remote("a")), nil, "afalse;"},
		{"local plus one remote replica", spec(2, local("a")),
			[]cluster.Member{self, member("n1", alive, "n1:1", "a"), member("n2", alive, "n2:1", "a")}, "atrue|n1@n1:1;"},
		{"replicas 1: local only", spec(1, local("a")), []cluster.Member{member("n1", alive, "n1:1", "a")}, "atrue;"},
		{"rotation spreads first replicas", spec(2, remote("a"), remote("b")),
			[]cluster.Member{member("n2", alive, "n2:1", "a", "b"), member("n1", alive, "n1:1", "a", "b")},
			"afalse|n1@n1:1|n2@n2:1;bfalse|n2@n2:1|n1@n1:1;"},
		{"alive before dead", spec(2, remote("a")),
			[]cluster.Member{member("n1", dead, "n1:1", "a"), member("n2", alive, "n2:1", "a")}, "afalse|n2@n2:1|n1@n1:1;"},
		{"dead kept when it is all there is", spec(1, remote("a")), []cluster.Member{member("n1", dead, "n1:1", "a")}, "afalse|n1@n1:1;"},
		{"left, no endpoint and other shards ignored", spec(3, remote("a")),
			[]cluster.Member{member("n1", left, "n1:1", "a"), member("n2", alive, "", "a"), member("n3", alive, "n3:1", "b")}, "afalse;"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fingerprint(routeTable(tc.spec, tc.members)); got != tc.want {
				t.Errorf("routing %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAdvertiseAddr(t *testing.T) {
	for _, tc := range []struct{ bound, gossip, want string }{
		{"127.0.0.1:9000", "10.0.0.1:7946", "127.0.0.1:9000"},
		{"0.0.0.0:9000", "10.0.0.1:7946", "10.0.0.1:9000"},
		{"[::]:9000", "10.0.0.1:7946", "10.0.0.1:9000"},
	} {
		a, _ := net.ResolveTCPAddr("tcp", tc.bound)
		if got := AdvertiseAddr(a, tc.gossip); got != tc.want {
			t.Errorf("AdvertiseAddr(%s, %s) = %s, want %s", tc.bound, tc.gossip, got, tc.want)
		}
	}
}

func TestScatterConfig(t *testing.T) {
	p, err := podspec.Parse([]byte("apiVersion: wasmpod.dev/v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  modules: [{name: m, role: merge, wasm: m.wasm}]\n  scatter:\n    shards: [{name: a, remote: true}]\n    hedge: {disabled: true, percentile: 90}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := SpecConfig(p.Spec.Scatter)
	if cfg.Deadline != p.Spec.Scatter.Deadline.Std() || !cfg.NoHedge || cfg.HedgePercentile != 0.9 || cfg.MergeReserve != p.Spec.Scatter.MergeReserve.Std() {
		t.Errorf("config %+v", cfg)
	}
}
