package ketama

import (
	"fmt"
	"testing"
)

func TestDistributionAndMovement(t *testing.T) {
	const keys = 20000
	for _, n := range []int{2, 3, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var servers []string
			for i := range n {
				servers = append(servers, fmt.Sprintf("127.0.0.1:%d", 11211+i))
			}
			before := New(servers)
			after := New(append(servers, "127.0.0.1:12000"))
			count := map[string]int{}
			moved := 0
			for i := range keys {
				k := fmt.Sprintf("key-%d", i)
				a, b := before.Get(k), after.Get(k)
				count[a]++
				if a != b {
					moved++
					if b != "127.0.0.1:12000" {
						t.Fatalf("key %s moved from %s to %s, not to the new server", k, a, b)
					}
				}
			}
			for _, s := range servers {
				if share := float64(count[s]) / keys; share < 0.5/float64(n) || share > 1.5/float64(n) {
					t.Errorf("server %s holds %.3f of the keys, want about %.3f", s, share, 1/float64(n))
				}
			}
			want := float64(keys) / float64(n+1)
			if f := float64(moved); f < 0.5*want || f > 1.5*want {
				t.Errorf("adding a server to %d moved %d keys, want about %.0f", n, moved, want)
			}
		})
	}
}

func TestStable(t *testing.T) {
	a := New([]string{"x:1", "y:2", "z:3"})
	b := New([]string{"z:3", "x:1", "y:2", "x:1"})
	for i := range 1000 {
		k := fmt.Sprint(i)
		if a.Get(k) != b.Get(k) {
			t.Fatalf("order of servers changed the placement of %s", k)
		}
	}
	if New(nil).Get("k") != "" {
		t.Fatal("empty ring should map to nothing")
	}
}
