package main

import (
	"bytes"
	"fmt"
)

// Op is what main asks of the ambassador.
type Op byte

// Ops.
const (
	OpGet   Op = 'g'
	OpSet   Op = 's'
	OpWhere Op = 'w'
)

// Request is one decoded request. The request format, main -> ambassador, is text:
//
//	get KEY
//	set KEY\nVALUE          (VALUE is every byte after the first newline)
//	where KEY               (which backend KEY hashes to)
//
// and the response is one status byte and a payload: 'V' + value (hit), 'M' (miss),
// 'S' (stored), 'B' + backend address. Failures are guest errors: code 2 for a bad request,
// 3 when the key's backend is unavailable (the message names it), 4 for any other backend
// failure.
type Request struct {
	Op    Op
	Key   string
	Value []byte
}

// ParseRequest decodes a request. Value aliases b.
func ParseRequest(b []byte) (Request, error) {
	head, value, hasValue := bytes.Cut(b, []byte("\n"))
	verb, key, ok := bytes.Cut(head, []byte(" "))
	if !ok || len(key) == 0 {
		return Request{}, fmt.Errorf("bad request %.40q: want \"get KEY\", \"set KEY\\nVALUE\" or \"where KEY\"", b)
	}
	r := Request{Key: string(key)}
	switch string(verb) {
	case "get":
		r.Op = OpGet
	case "where":
		r.Op = OpWhere
	case "set":
		if !hasValue {
			return Request{}, fmt.Errorf("bad request: set %q has no value line", key)
		}
		r.Op, r.Value = OpSet, value
		return r, nil
	default:
		return Request{}, fmt.Errorf("bad request: unknown verb %.20q", verb)
	}
	if hasValue {
		return Request{}, fmt.Errorf("bad request: %s takes no value", verb)
	}
	return r, nil
}
