// Package scatter is wasmpod's scatter/gather routing: a root request fanned out to every shard
// of a leaf module, the parts gathered under one deadline and combined by a merge module.
//
// A [Gather] holds the shards, each with its replicas (a [Leaf]: a local one — a [ModuleLeaf]
// wrapping a *runtime.Module, or any [LocalLeaf] such as the host's handle on a pod's module —
// or a remote leaf on a peer reached through a [Peer]), the merge module (a [Merger]) and a
// [Config]. [Gather.Do] runs one request:
//
//   - one deadline per request (the caller's, or Config.Deadline if earlier), shared by every
//     leaf call, remote call and the merge;
//   - local shards run on at most GOMAXPROCS workers that take shard indexes from an atomic
//     counter (no goroutine per shard): the Gather's long-lived workers that are idle, and the
//     caller itself when no shard is remote; remote shards run asynchronously, one goroutine
//     per attempt, owned by the request and bounded by its deadline;
//   - a remote shard still pending after its hedge delay (the shard's recent p95 latency, never
//     below Config.HedgeMin) gets a second request to another live replica; the first answer
//     wins, and a failed attempt fails over to the next live replica at once;
//   - shards that miss the gather deadline or fail on every replica are passed to the merge as
//     missing parts (guest-sdk/ABI.md section 2.1) and listed in [Result.Missing];
//   - a replica whose node is marked dead ([Gather.SetNodeAlive], wired to gossip membership by
//     the host, e.g. with [FollowMembership]) is skipped from the next request on.
//
// Every request carries a 16-byte [RequestID]; remote attempts send it to the peer, whose
// [Endpoint] drops a second attempt of the same request for the same shard (a hedge or retry
// that lands on a node already working on it).
//
// A request's remote first attempts on one peer go as one batched request carrying all of them
// and the input once, answered with a stream of per-shard frames that settle each shard as it
// arrives (batch.go), once the peer's answers advertise the feature; peers of earlier releases
// get one request per shard.
//
// The internal peer endpoint speaks plain HTTP/1.1 (see wire.go for the framing): the
// [Endpoint] is an http.Handler and a transport-neutral [Endpoint.Handle] that a fasthttp server
// adapts in a few lines (internal/peerhttp). Remote leaves use a pooled
// keep-alive fasthttp client ([NewFastHTTPPeer]) or net/http ([NewNetHTTPPeer]) for comparison.
// No fasthttp type appears in this package's API.
package scatter
