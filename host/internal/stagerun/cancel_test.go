package stagerun

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wasmpod/wasmpod/cluster"
)

// TestRunStageCancelled: a queue worker cancels a delivery's context when it loses the
// task's lease (cluster: Workers.deliver); the stage then stops at once, whether it is a
// native stage module or a WASI command, instead of running to its 5 s deadline for a result
// nobody can commit.
func TestRunStageCancelled(t *testing.T) {
	s := startPod(t)
	for _, tc := range []struct{ module, input string }{
		{"up", "spin"},
		{"cmd", "l"}, // loop.txt: the command loops forever
	} {
		t.Run(tc.module, func(t *testing.T) {
			r, err := New(s, tc.module, false)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), "in")
			if err := os.WriteFile(p, []byte(tc.input), 0o444); err != nil {
				t.Fatal(err)
			}
			name := "s"
			if tc.module == "cmd" {
				name = "loop.txt"
			}
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(300*time.Millisecond, cancel)
			start := time.Now()
			_, err = r.RunStage(ctx, []cluster.StageInput{{Name: name, Path: p}}, name, t.TempDir())
			took := time.Since(start)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			// 4 s: below the modules' 5 s timeout, far above a cut on a loaded machine.
			if took > 4*time.Second {
				t.Fatalf("the cancelled stage ran %s", took)
			}
		})
	}
}
