package nodemeta

import (
	"encoding/json"
	"testing"

	"github.com/wasmpod/wasmpod/cluster"
)

// The encoding is the JSON object of earlier releases' cluster.Meta struct (same keys, empty
// values left out), so that old and new nodes read each other's advertisements.
func TestWireCompatible(t *testing.T) {
	for _, tc := range []struct {
		m    Meta
		want string
	}{
		{Meta{}, `{}`},
		{Meta{AdminAddr: "10.0.0.1:9090", Pods: []string{"p"}, Modules: []string{"a", "b"}, Shards: []string{"s0"}, ScatterAddr: "10.0.0.1:7948"},
			`{"admin":"10.0.0.1:9090","modules":["a","b"],"pods":["p"],"scatter":"10.0.0.1:7948","shards":["s0"]}`},
	} {
		b, _ := json.Marshal(tc.m.Cluster())
		if string(b) != tc.want {
			t.Errorf("%+v encodes as %s, want %s", tc.m, b, tc.want)
		}
		var back cluster.Meta
		if err := json.Unmarshal([]byte(tc.want), &back); err != nil {
			t.Fatal(err)
		}
		if got := Of(back); !got.Equal(tc.m) {
			t.Errorf("decoded %+v, want %+v", got, tc.m)
		}
	}
	// An old node's advertisement, with the cluster's own key in it.
	var old cluster.Meta
	_ = json.Unmarshal([]byte(`{"raft":"10.0.0.2:7947","admin":"a:1","shards":["s1"],"scatter":"x:2"}`), &old)
	if m := Of(old); m.AdminAddr != "a:1" || m.ScatterAddr != "x:2" || len(m.Shards) != 1 {
		t.Errorf("old advertisement read as %+v", m)
	}
}
