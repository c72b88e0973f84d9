package scatter

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these (or a runtime error of the
// leaf or merge call) where the condition is one a caller is expected to test with errors.Is.
var (
	// ErrClosed: the Gather, Endpoint or Peer has been closed.
	ErrClosed = errors.New("scatter: closed")
	// ErrOverloaded: Config.MaxInFlight requests are already running.
	ErrOverloaded = errors.New("scatter: too many requests in flight")
	// ErrInvalid: a malformed Gather or Endpoint setup (no shards, a shard without replicas,
	// duplicate names, a nil module).
	ErrInvalid = errors.New("scatter: invalid configuration")
	// ErrUnknownShard: a peer does not serve the shard it was asked for.
	ErrUnknownShard = errors.New("scatter: unknown shard")
	// ErrDuplicate: a peer already received this request id for this shard and dropped the copy.
	ErrDuplicate = errors.New("scatter: duplicate request")
	// ErrDeadline: the request's deadline passed before the call could answer.
	ErrDeadline = errors.New("scatter: deadline exceeded")
	// ErrMalformed: an internal-endpoint request or response breaks the wire framing.
	ErrMalformed = errors.New("scatter: malformed message")
	// ErrRemote: a peer failed the call (its message is in the error text).
	ErrRemote = errors.New("scatter: remote leaf failed")
	// ErrNoReplica: every replica of a shard is on a dead node or has failed.
	ErrNoReplica = errors.New("scatter: no live replica")
)
