package clustertest

import "testing"

func TestHistoryCheck(t *testing.T) {
	g := func(t int64, node string, tok uint64, exp int64) Event {
		return Event{T: t, Node: node, Ev: "grant", Lease: "l", Token: tok, Expiry: exp}
	}
	acc := func(tok uint64, w string) Event { return Event{Ev: "store_accept", Lease: "l", Token: tok, Writer: w} }
	tests := []struct {
		name string
		evs  []Event
		bad  int
	}{
		{"clean handover", []Event{g(0, "a", 5, 100), acc(5, "a"), g(150, "b", 9, 300), acc(9, "b")}, 0},
		{"overlapping holders", []Event{g(0, "a", 5, 100), g(50, "b", 9, 300)}, 1},
		{"overlap through a renew", []Event{g(0, "a", 5, 100), {T: 90, Node: "a", Ev: "renew", Lease: "l", Token: 5, Expiry: 190}, g(150, "b", 9, 300)}, 1},
		{"token reused by two nodes", []Event{g(0, "a", 5, 100), g(200, "b", 5, 300)}, 3},
		{"token went down", []Event{g(0, "a", 9, 100), g(200, "b", 5, 300)}, 1},
		{"holder re-campaigns for its own lease", []Event{g(0, "a", 5, 100), g(80, "a", 5, 200), g(250, "b", 9, 400)}, 0},
		{"same token re-granted to another node", []Event{g(0, "a", 5, 100), g(80, "b", 5, 200)}, 3},
		{"store admitted an older token", []Event{g(0, "a", 5, 100), g(150, "b", 9, 300), acc(9, "b"), acc(5, "a")}, 1},
		{"store admitted a token from a non-holder", []Event{g(0, "a", 5, 100), acc(5, "b")}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h History
			for _, e := range tt.evs {
				h.Add(e)
			}
			if got := h.Check("l"); len(got) != tt.bad {
				t.Fatalf("violations %q, want %d", got, tt.bad)
			}
		})
	}
}
