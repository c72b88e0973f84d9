package membership

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
)

func TestParseKey(t *testing.T) {
	k32 := bytes.Repeat([]byte{7}, 32)
	tests := []struct {
		name string
		in   []byte
		want []byte
		err  error
	}{
		{"base64 32 bytes with newline", []byte(base64.StdEncoding.EncodeToString(k32) + "\n"), k32, nil},
		{"base64 16 bytes", []byte(base64.StdEncoding.EncodeToString(k32[:16])), k32[:16], nil},
		{"raw 24 bytes", bytes.Repeat([]byte{0xff}, 24), bytes.Repeat([]byte{0xff}, 24), nil},
		{"too short", []byte("abc"), nil, ErrKeyLength},
		{"base64 of 20 bytes", []byte(base64.StdEncoding.EncodeToString(k32[:20])), nil, ErrKeyLength},
		{"empty", nil, nil, ErrKeyLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKey(tt.in)
			if !errors.Is(err, tt.err) || !bytes.Equal(got, tt.want) {
				t.Fatalf("ParseKey = %x, %v; want %x, %v", got, err, tt.want, tt.err)
			}
		})
	}
}
