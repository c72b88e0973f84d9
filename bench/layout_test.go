package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/wasmpod/wasmpod/internal/wasmbuild"
	"github.com/wasmpod/wasmpod/runtime"
)

// callLayouts is how many code layouts BenchmarkCallLayouts builds the leaf guest in.
const callLayouts = 8

// layoutFile is a source file for the leaf guest's main package that moves the machine code of
// the package's other functions (the leaf's loop among them) by n steps: a function of 3n
// statements, compiled before them (its file name sorts first), which a call no run makes keeps
// in the module.
func layoutFile(n int) string {
	var s strings.Builder
	s.WriteString("package main\n\nimport \"os\"\n\nvar layoutSink int\n\n")
	s.WriteString("func init() {\n\tif len(os.Args) > 1<<20 {\n\t\taaLayout()\n\t}\n}\n\n")
	s.WriteString("//go:noinline\nfunc aaLayout() {\n")
	for i := 1; i <= 3*n; i++ {
		fmt.Fprintf(&s, "\tlayoutSink += len(os.Args) * %d\n", i)
	}
	s.WriteString("}\n")
	return s.String()
}

// BenchmarkCallLayouts is Call/{noop,leaf256}/alternating over callLayouts builds of the
// leaf guest that differ only in where the compiled code of its main package lands (layoutFile).
//
// Why: on some CPUs a hot loop's speed depends on where its machine code falls relative to
// cache-line and fetch boundaries, and wazero places each function at the next 16-byte
// boundary after the one before. Measured 2026-12-06 on an Intel VM (Xeon, family 6 model 207):
// the same leaf256 ran bare wazero at 511-757 ns a call across eight such builds, and its
// guarded/bare ratio was 0.99-1.69x; adding a few instructions to an unrelated function of the
// instrumented module alone moved it 1.36x -> 1.73x. A ratio from one build is one draw of
// that lottery: this benchmark reports the median over the layouts, and their range.
//
// Each op is one round: every layout's three sides (guarded, trusted, bare wazero) take turns
// of altBlock calls, starting with a different layout and side each round.
func BenchmarkCallLayouts(b *testing.B) {
	ctx := context.Background()
	e := newEngine(b)
	type layout struct {
		guarded, trusted *runtime.Module
		bare             *rawGuest
	}
	layouts := make([]layout, callLayouts)
	want := nativeLeaf(input256, nil)
	for n := range layouts {
		wasm, err := os.ReadFile(wasmbuild.GoWith(b, "../plugins/benchleaf", map[string]string{"aa_layout.go": layoutFile(n)}))
		if err != nil {
			b.Fatal(err)
		}
		l := layout{loadWasmpod(b, e, wasm, false), loadWasmpod(b, e, wasm, true), newRawGuest(b, wasm, false)}
		got, err := l.guarded.Call(ctx, runtime.RoleLeaf, input256, nil)
		if err != nil || string(got) != string(want) {
			b.Fatalf("layout %d: wasmpod leaf %x %v, want %x", n, got, err, want)
		}
		layouts[n] = l
	}
	for _, c := range []struct {
		name string
		role runtime.Role
		in   []byte
		fn   func(*rawGuest) api.Function
	}{
		{"noop", runtime.RoleHandle, nil, func(g *rawGuest) api.Function { return g.noop }},
		{"leaf256", runtime.RoleLeaf, input256, func(g *rawGuest) api.Function { return g.leaf }},
	} {
		b.Run(c.name, func(b *testing.B) {
			dst := make([]byte, 0, 64)
			side := func(l layout, s int) {
				if s == 2 {
					f := c.fn(l.bare)
					for range altBlock {
						l.bare.call(b, f, c.in)
					}
					return
				}
				m := l.guarded
				if s == 1 {
					m = l.trusted
				}
				for range altBlock {
					out, err := m.Call(ctx, c.role, c.in, dst[:0])
					if err != nil {
						b.Fatal(err)
					}
					dst = out
				}
			}
			took := make([][3]time.Duration, len(layouts))
			round := 0
			for b.Loop() {
				for i := range layouts {
					n := (round + i) % len(layouts)
					for k := range 3 {
						s := (round + k) % 3
						t0 := time.Now()
						side(layouts[n], s)
						took[n][s] += time.Since(t0)
					}
				}
				round++
			}
			calls := float64(round * altBlock)
			var guarded, trusted, bare, gRatio, tRatio []float64
			for _, t := range took {
				g, tr, w := float64(t[0].Nanoseconds())/calls, float64(t[1].Nanoseconds())/calls, float64(t[2].Nanoseconds())/calls
				guarded, trusted, bare = append(guarded, g), append(trusted, tr), append(bare, w)
				gRatio, tRatio = append(gRatio, g/w), append(tRatio, tr/w)
			}
			b.ReportMetric(median(guarded), "guarded-ns/call")
			b.ReportMetric(median(trusted), "trusted-ns/call")
			b.ReportMetric(median(bare), "wazero-ns/call")
			b.ReportMetric(median(gRatio), "guarded/wazero")
			b.ReportMetric(slices.Min(gRatio), "guarded/wazero-min")
			b.ReportMetric(slices.Max(gRatio), "guarded/wazero-max")
			b.ReportMetric(median(tRatio), "trusted/wazero")
			b.ReportMetric(slices.Min(tRatio), "trusted/wazero-min")
			b.ReportMetric(slices.Max(tRatio), "trusted/wazero-max")
			b.ReportMetric(slices.Min(bare), "wazero-ns/call-min")
			b.ReportMetric(slices.Max(bare), "wazero-ns/call-max")
		})
	}
}

// median is the median of xs (the mean of the middle two for an even count); xs is not changed.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
