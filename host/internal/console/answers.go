package console

import (
	"sync"
	"time"

	"github.com/wasmpod/wasmpod/cluster/scatter"
)

// answerKeep is how many recent scatter answers an AnswerLog keeps.
const answerKeep = 50

// Answer is one scatter request as the root answered it.
type Answer struct {
	At       time.Time `json:"at"`
	ID       string    `json:"id,omitempty"`
	Millis   float64   `json:"ms"`
	Partial  bool      `json:"partial"`
	Missing  []string  `json:"missing,omitempty"`
	Hedges   int       `json:"hedges,omitempty"`
	Error    string    `json:"error,omitempty"`
	Complete bool      `json:"complete"`

	id scatter.RequestID // hex-encoded into ID by Recent, off the request path
}

// AnswerCounts are an AnswerLog's totals since the host started.
type AnswerCounts struct {
	Requests uint64            `json:"requests"`
	Partial  uint64            `json:"partial"`
	Failed   uint64            `json:"failed"`
	Missing  map[string]uint64 `json:"missing"` // per shard: answers it was missing from
}

// AnswerLog keeps the recent scatter answers of a root and its totals. Safe for concurrent
// use; Record is a mutex and a copy of the missing list.
type AnswerLog struct {
	mu     sync.Mutex
	ring   [answerKeep]Answer
	n      int
	counts AnswerCounts
}

// Record adds the answer of a request that started at start.
func (l *AnswerLog) Record(start time.Time, res scatter.Result, err error) {
	now := time.Now()
	a := Answer{At: now, Millis: float64(now.Sub(start).Microseconds()) / 1000,
		Partial: res.Partial, Hedges: res.Hedges}
	if len(res.Missing) > 0 {
		a.Missing = append([]string(nil), res.Missing...)
	}
	if err != nil {
		a.Error = err.Error()
	} else {
		a.id, a.Complete = res.ID, !res.Partial
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ring[l.n%answerKeep] = a
	l.n++
	l.counts.Requests++
	if err != nil {
		l.counts.Failed++
	}
	if res.Partial {
		l.counts.Partial++
	}
	if len(res.Missing) > 0 && l.counts.Missing == nil {
		l.counts.Missing = map[string]uint64{}
	}
	for _, m := range res.Missing {
		l.counts.Missing[m]++
	}
}

// Recent returns the kept answers, newest first.
func (l *AnswerLog) Recent() []Answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := min(l.n, answerKeep)
	out := make([]Answer, 0, k)
	for i := 1; i <= k; i++ {
		a := l.ring[(l.n-i)%answerKeep]
		if a.Error == "" {
			a.ID = a.id.String()
		}
		out = append(out, a)
	}
	return out
}

// Counts returns the totals.
func (l *AnswerLog) Counts() AnswerCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.counts
	c.Missing = make(map[string]uint64, len(l.counts.Missing))
	for k, v := range l.counts.Missing {
		c.Missing[k] = v
	}
	return c
}
