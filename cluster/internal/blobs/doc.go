// Package blobs is a node's content-addressed file store and the node-to-node transfer of its
// files. The distributed work queue keeps its jobs' input and output files here.
//
// A blob is addressed by the lowercase hex sha256 of its content and stored, read-only by
// convention, at <dir>/<first two hex digits>/<sha> with mode 0o644; readers may open or
// hard-link that path but must never write to it. Content is streamed in, hashed on the way
// and never held whole in memory; its size is bounded by the store's maximum (DefaultMaxSize
// unless configured).
//
// Durability: Put, PutExpect and Import write to a temporary file in <dir>/tmp, fsync it,
// rename it to its address (or drop it when the blob is already present) and fsync the
// address's directory before they return. A peer acknowledges a Push only after that same
// sequence, so an acknowledged blob survives a crash of either node. Temporary files left by
// a crash are removed by Open. Commits that run at the same time share their fsyncs (group
// commit: the files' content concurrently, then each directory once); StageFile and Commit
// let a caller write a blob first and make it durable later, just before it hands its address
// to anyone (the work queue commits a task's output before proposing the completion that
// refers to it).
//
// Transfer runs over a stream connection (on a node's shared TCP port, after the connection
// kind byte). Serve answers requests on one connection; Fetch and Push are the client side.
// Each request is a 45-byte header (magic "WPB", version, op 'G' or 'P', raw sha256, content
// length); each reply is a 15-byte header (magic, version, status, length, message length)
// plus a short error text of at most 512 bytes. A get is answered by its content; a put is
// first told to continue (or that the blob is already there, or that it is too large), then
// sends its content and is answered once the blob is verified and stored durably. Every
// length is bounded. The details are in wire.go.
package blobs
