package httpframe

import (
	"encoding/binary"
	"errors"
	"testing"
)

func resp(status uint32, hdrs [][2]string, body string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, status)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(hdrs)))
	for _, h := range hdrs {
		b = AppendString(b, []byte(h[0]))
		b = AppendString(b, []byte(h[1]))
	}
	return AppendString(b, []byte(body))
}

func TestDecodeResponse(t *testing.T) {
	var r Response
	if err := DecodeResponse(resp(201, [][2]string{{"Content-Type", "text/plain"}, {"X-A", "1"}}, "hi"), &r); err != nil {
		t.Fatal(err)
	}
	if r.Status != 201 || len(r.Headers) != 2 || string(r.Headers[1].Value) != "1" || string(r.Body) != "hi" {
		t.Fatalf("got %+v", r)
	}
	for name, b := range map[string][]byte{
		"short":     {1, 2, 3},
		"status":    resp(42, nil, ""),
		"trailing":  append(resp(200, nil, "x"), 0),
		"truncated": resp(200, nil, "abc")[:10],
		"crlf":      resp(200, [][2]string{{"X", "a\r\nSet-Cookie: x"}}, ""),
		"badname":   resp(200, [][2]string{{"X Y", "a"}}, ""),
	} {
		if err := DecodeResponse(b, &r); !errors.Is(err, ErrFraming) {
			t.Errorf("%s: got %v, want ErrFraming", name, err)
		}
	}
}

func TestAppendRequest(t *testing.T) {
	b := AppendRequestStart(nil, []byte("GET"), []byte("/x?y=1"), 1)
	b = AppendString(b, []byte("Host"))
	b = AppendString(b, []byte("h"))
	b = AppendString(b, []byte("body"))
	want := 4 + 3 + 4 + 6 + 4 + 4 + 4 + 4 + 1 + 4 + 4
	if len(b) != want {
		t.Fatalf("len %d want %d", len(b), want)
	}
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add(resp(200, [][2]string{{"A", "b"}}, "body"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Response
		if err := DecodeResponse(b, &r); err != nil {
			if !errors.Is(err, ErrFraming) {
				t.Fatalf("error does not wrap ErrFraming: %v", err)
			}
			return
		}
		var hs [][2]string
		for _, h := range r.Headers {
			hs = append(hs, [2]string{string(h.Name), string(h.Value)})
		}
		if string(resp(uint32(r.Status), hs, string(r.Body))) != string(b) {
			t.Fatal("decoded response does not re-encode to the input")
		}
	})
}
