package scatter

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// latWindow is how many recent latencies a shard keeps for its hedge delay.
const latWindow = 128

// recomputeEvery: the percentile is recomputed after this many new samples, not per call.
const recomputeEvery = 16

// latencies is a shard's recent remote-call latencies and the hedge delay derived from them.
// Recording is two atomic operations; every recomputeEvery samples one recorder sorts a copy.
type latencies struct {
	n       atomic.Uint64
	samples [latWindow]atomic.Int64
	hedge   atomic.Int64 // ns; 0 until enough samples

	mu      sync.Mutex // guards scratch
	scratch [latWindow]int64
}

func (l *latencies) record(d time.Duration, cfg *Config) {
	n := l.n.Add(1)
	l.samples[(n-1)%latWindow].Store(int64(d))
	if n%recomputeEvery != 0 || n < uint64(cfg.HedgeMinSamples) || !l.mu.TryLock() {
		return
	}
	k := int(min(n, latWindow))
	for i := 0; i < k; i++ {
		l.scratch[i] = l.samples[i].Load()
	}
	s := l.scratch[:k]
	slices.Sort(s)
	idx := int(float64(k)*cfg.HedgePercentile+0.5) - 1
	idx = max(0, min(idx, k-1))
	l.hedge.Store(s[idx])
	l.mu.Unlock()
}

// delay is the hedge delay: the recent percentile, at least cfg.HedgeMin; cfg.HedgeInitial until
// there are enough samples.
func (l *latencies) delay(cfg *Config) time.Duration {
	h := time.Duration(l.hedge.Load())
	if h == 0 {
		return max(cfg.HedgeInitial, cfg.HedgeMin)
	}
	return max(h, cfg.HedgeMin)
}
