package scatter

import (
	"slices"
	"time"
)

// ShardLatency is a shard's recent remote-call latency, from the same window of successful
// remote attempts the hedge delay is computed from (local attempts are not timed).
type ShardLatency struct {
	Shard string `json:"shard"`
	// Samples is how many recent remote calls the percentiles come from (at most 128).
	Samples int           `json:"samples"`
	P50     time.Duration `json:"p50_ns"`
	P99     time.Duration `json:"p99_ns"`
}

// ShardLatencies reports every shard's recent remote-call latency, in shard order. It reads the
// window without locking the call path; a sample written meanwhile may be the new or the old one.
func (g *Gather) ShardLatencies() []ShardLatency {
	out := make([]ShardLatency, len(g.shards))
	for i := range g.shards {
		l := &g.shards[i].lat
		k := int(min(l.n.Load(), latWindow))
		s := make([]int64, k)
		for j := range k {
			s[j] = l.samples[j].Load()
		}
		slices.Sort(s)
		out[i] = ShardLatency{Shard: g.shards[i].name, Samples: k}
		if k > 0 {
			out[i].P50 = time.Duration(s[pctIndex(k, 0.50)])
			out[i].P99 = time.Duration(s[pctIndex(k, 0.99)])
		}
	}
	return out
}

// pctIndex is the nearest-rank index of percentile p in k sorted samples.
func pctIndex(k int, p float64) int {
	return max(0, min(int(float64(k)*p+0.5)-1, k-1))
}
