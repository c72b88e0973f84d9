package scatter

import "context"

// CallBatch exposes a FastHTTP peer's batched call to the external tests.
func CallBatch(ctx context.Context, p Peer, id RequestID, shards [][]byte, in []byte, answer func(k int, part []byte, err error)) error {
	return p.(*fastPeer).callBatch(ctx, id, shards, in, answer)
}

// SetCancelBatchHook sets the hook a batch cancellation's goroutine runs first, until the test
// ends.
func SetCancelBatchHook(t interface{ Cleanup(func()) }, f func()) {
	testHookCancelBatch = f
	t.Cleanup(func() { testHookCancelBatch = nil })
}
