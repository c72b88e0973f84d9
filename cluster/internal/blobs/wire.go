package blobs

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"unicode/utf8"
)

// Wire format (all integers big-endian). A connection carries any number of requests, one
// at a time; each is answered before the next is sent.
//
// Request, 45 bytes:
//
//	[0:3]   magic "WPB"
//	[3]     protocol version (1)
//	[4]     op: 'G' (get) or 'P' (put)
//	[5:37]  sha256 of the blob, 32 raw bytes
//	[37:45] uint64 length: 0 for a get; the content length for a put
//
// Reply, 15 bytes plus a message:
//
//	[0:3]   magic "WPB"
//	[3]     protocol version (1)
//	[4]     status (statusOK ...)
//	[5:13]  uint64 length: for OK to a get, the number of content bytes that follow the
//	        reply; for OK to a put, the stored size; else 0
//	[13:15] uint16 message length, at most maxMsg
//	[15:]   message: short UTF-8 error text, empty on success
//
// Get: request; reply OK followed by exactly length content bytes, or NotFound or another
// error status.
//
// Put: request; reply Continue (the client then sends exactly length content bytes), OK (the
// server already has the blob durably; nothing is sent) or an error status (TooLarge,
// Invalid, Error; nothing is sent). After the content, a final reply: OK once the blob is
// verified and stored durably, Corrupt when it does not hash to the request's sha, or Error.
//
// A server that cannot parse a request replies Invalid and closes the connection.
const (
	protoVersion byte = 1

	opGet byte = 'G'
	opPut byte = 'P'

	reqLen   = 45
	replyLen = 15
	maxMsg   = 512
)

var magic = [3]byte{'W', 'P', 'B'}

// Reply statuses.
const (
	statusOK       byte = 0
	statusContinue byte = 1 // put: send the content
	statusNotFound byte = 2
	statusCorrupt  byte = 3
	statusTooLarge byte = 4
	statusInvalid  byte = 5
	statusError    byte = 6 // anything else, see the message
	statusMax           = statusError
)

type request struct {
	op     byte
	sha    string // lowercase hex
	length uint64
}

func (r request) encode() ([]byte, error) {
	if err := ValidSHA(r.sha); err != nil {
		return nil, err
	}
	b := make([]byte, reqLen)
	copy(b, magic[:])
	b[3] = protoVersion
	b[4] = r.op
	if _, err := hex.Decode(b[5:37], []byte(r.sha)); err != nil {
		return nil, fmt.Errorf("blobs: sha %q: %w", r.sha, ErrInvalid)
	}
	binary.BigEndian.PutUint64(b[37:45], r.length)
	return b, nil
}

// parseRequest decodes a request header; errors wrap ErrInvalid and are safe to send back.
func parseRequest(b []byte) (request, error) {
	if len(b) != reqLen {
		return request{}, fmt.Errorf("request header is %d bytes, want %d: %w", len(b), reqLen, ErrInvalid)
	}
	if [3]byte(b[0:3]) != magic {
		return request{}, fmt.Errorf("bad magic %q: %w", b[0:3], ErrInvalid)
	}
	if b[3] != protoVersion {
		return request{}, fmt.Errorf("unsupported protocol version %d (want %d): %w", b[3], protoVersion, ErrInvalid)
	}
	r := request{op: b[4], sha: hex.EncodeToString(b[5:37]), length: binary.BigEndian.Uint64(b[37:45])}
	switch r.op {
	case opGet:
		if r.length != 0 {
			return request{}, fmt.Errorf("get with length %d: %w", r.length, ErrInvalid)
		}
	case opPut:
		if r.length > math.MaxInt64 {
			return request{}, fmt.Errorf("put length %d out of range: %w", r.length, ErrInvalid)
		}
	default:
		return request{}, fmt.Errorf("unknown op %#x: %w", r.op, ErrInvalid)
	}
	return r, nil
}

type reply struct {
	status byte
	length uint64
	msg    string
}

func (r reply) encode() []byte {
	msg := r.msg
	if len(msg) > maxMsg {
		msg = msg[:maxMsg]
		for !utf8.ValidString(msg) && len(msg) > 0 { // don't cut a rune in half
			msg = msg[:len(msg)-1]
		}
	}
	b := make([]byte, replyLen+len(msg))
	copy(b, magic[:])
	b[3] = protoVersion
	b[4] = r.status
	binary.BigEndian.PutUint64(b[5:13], r.length)
	binary.BigEndian.PutUint16(b[13:15], uint16(len(msg)))
	copy(b[replyLen:], msg)
	return b
}

// readReply reads one reply. A malformed one yields an error wrapping ErrProtocol; I/O
// errors are returned as they are.
func readReply(rd io.Reader) (reply, error) {
	var h [replyLen]byte
	if _, err := io.ReadFull(rd, h[:]); err != nil {
		return reply{}, err
	}
	if [3]byte(h[0:3]) != magic || h[3] != protoVersion {
		return reply{}, fmt.Errorf("blobs: bad reply header %q: %w", h[0:4], ErrProtocol)
	}
	r := reply{status: h[4], length: binary.BigEndian.Uint64(h[5:13])}
	if r.status > statusMax {
		return reply{}, fmt.Errorf("blobs: unknown reply status %d: %w", r.status, ErrProtocol)
	}
	n := binary.BigEndian.Uint16(h[13:15])
	if n > maxMsg {
		return reply{}, fmt.Errorf("blobs: reply message of %d bytes: %w", n, ErrProtocol)
	}
	if n > 0 {
		msg := make([]byte, n)
		if _, err := io.ReadFull(rd, msg); err != nil {
			return reply{}, err
		}
		r.msg = string(msg)
	}
	return r, nil
}

// exactReader reads exactly n bytes from r: an early EOF is io.ErrUnexpectedEOF. It records
// the first error of r, which tells a transport failure apart from the consumer's own.
type exactReader struct {
	r   io.Reader
	n   int64
	err error
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.n {
		p = p[:e.n]
	}
	m, err := e.r.Read(p)
	e.n -= int64(m)
	if err == io.EOF && e.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return m, err
}
