package scatter

import (
	"fmt"
	"time"
)

// Config tunes a Gather. Start from DefaultConfig.
type Config struct {
	// Deadline bounds every request: the request's deadline is the earlier of the caller's
	// context deadline and now + Deadline. Every leaf call, remote call and the merge share it.
	Deadline time.Duration

	// MergeReserve is the part of the deadline kept for the merge: the gather stops waiting for
	// shards at deadline - MergeReserve, so that a partial answer is still merged in time.
	MergeReserve time.Duration

	// HedgeMin is the floor of the hedge delay: a remote shard still pending this long (or its
	// recent p95 latency, whichever is larger) gets a second request to another replica.
	HedgeMin time.Duration

	// HedgeInitial is the hedge delay of a shard that has fewer than HedgeMinSamples latency
	// samples yet (a cold start has no p95 to go by).
	HedgeInitial time.Duration

	// HedgePercentile is the latency percentile of a shard's recent calls used as its hedge
	// delay, in (0, 1].
	HedgePercentile float64

	// HedgeMinSamples is how many samples a shard needs before its percentile is trusted.
	HedgeMinSamples int

	// NoHedge disables hedged requests (failover to the next replica after an error stays).
	NoHedge bool

	// MaxInFlight is the most Do calls running at once; more fail at once with ErrOverloaded.
	MaxInFlight int

	// Workers is how many goroutines (the caller's included) run the local shards of one request;
	// 0 means GOMAXPROCS.
	Workers int
}

// DefaultConfig returns the configuration the wasmpod host uses.
func DefaultConfig() Config {
	return Config{
		// 200 ms: an interactive request; a person notices ~100-300 ms, and a shard that needs
		// more is better reported missing than waited for (The Tail at Scale).
		Deadline: 200 * time.Millisecond,
		// 10 ms: a merge is one warm wasm call over small parts (tens of microseconds); the rest
		// is slack for a loaded machine.
		MergeReserve: 10 * time.Millisecond,
		// 1 ms: a loopback or LAN round trip plus a small leaf is ~0.1-0.5 ms; hedging sooner
		// duplicates work that was about to finish.
		HedgeMin: time.Millisecond,
		// 5 ms: until a shard has a p95, hedge like a slow-but-healthy LAN call.
		HedgeInitial: 5 * time.Millisecond,
		// p95: Dean & Barroso's choice; it hedges about 5% of calls, a bounded extra load.
		HedgePercentile: 0.95,
		// 32 samples: enough for a p95 that is not one outlier.
		HedgeMinSamples: 32,
		// 1024: bounds the pooled request states and the goroutines of remote attempts; beyond it
		// the machine is saturated and shedding beats queueing.
		MaxInFlight: 1024,
		// GOMAXPROCS: local leaves are CPU-bound wasm calls; more workers than cores only adds
		// switching.
		Workers: 0,
	}
}

func (c *Config) validate() error {
	switch {
	case c.Deadline <= 0:
		return fmt.Errorf("%w: Deadline must be positive", ErrInvalid)
	case c.MergeReserve < 0 || c.MergeReserve >= c.Deadline:
		return fmt.Errorf("%w: MergeReserve %v must be in [0, Deadline %v)", ErrInvalid, c.MergeReserve, c.Deadline)
	case c.HedgeMin < 0 || c.HedgeInitial < 0:
		return fmt.Errorf("%w: hedge delays must not be negative", ErrInvalid)
	case c.HedgePercentile <= 0 || c.HedgePercentile > 1:
		return fmt.Errorf("%w: HedgePercentile %v out of (0, 1]", ErrInvalid, c.HedgePercentile)
	case c.HedgeMinSamples < 1 || c.HedgeMinSamples > latWindow:
		return fmt.Errorf("%w: HedgeMinSamples %d out of [1, %d]", ErrInvalid, c.HedgeMinSamples, latWindow)
	case c.MaxInFlight <= 0:
		return fmt.Errorf("%w: MaxInFlight must be at least 1", ErrInvalid)
	case c.Workers < 0:
		return fmt.Errorf("%w: Workers must not be negative", ErrInvalid)
	}
	return nil
}
