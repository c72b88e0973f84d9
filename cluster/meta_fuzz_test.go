package cluster

import (
	"testing"
)

// FuzzSplitMeta: a member's gossiped metadata comes from another process (any member holding
// the gossip key, or any certificate of the cluster's CA): whatever its bytes, reading it never
// panics, the node's own keys never reach the host's part, and the host's part reads back as
// strings and string lists without panicking.
func FuzzSplitMeta(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"raft":"10.0.0.1:7947","rv":3,"qo":2,"admin":"x:1"}`,
		`{"raft":5,"rv":"x","qo":[1]}`, `{"shards":["a","b"],"pods":"notalist"}`, `{"admin":{"x":1}}`,
		"{\"raft\":\"\xff\xfe\"}", `{"rv":1e400}`, `{"rv":-9223372036854775809}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		host, _, _ := splitMeta(b)
		for _, k := range []string{metaRaftAddr, metaLogVersion, metaQueueOps} {
			if _, ok := host[k]; ok {
				t.Fatalf("the node's key %q reached the host's metadata", k)
			}
		}
		if host == nil {
			t.Fatal("nil metadata")
		}
		_ = queueOpsOf(b)
		for k := range host {
			_ = host.String(k)
			_ = host.Strings(k)
		}
	})
}
