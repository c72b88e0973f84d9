//go:build !wasip1

package core

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestFailCutsAtRuneBoundary: a message longer than the host keeps is cut to at most
// MaxErrorMessage bytes without splitting a UTF-8 sequence (a split one reached `wasmpod call`
// and the ingress as U+FFFD).
func TestFailCutsAtRuneBoundary(t *testing.T) {
	for _, tc := range []struct {
		name, msg string
		want      int // bytes kept
	}{
		{"ASCII", strings.Repeat("m", MaxErrorMessage+100), MaxErrorMessage},
		{"2-byte runes", strings.Repeat("é", MaxErrorMessage), MaxErrorMessage},
		{"3-byte runes, offset", "xy" + strings.Repeat("€", MaxErrorMessage), MaxErrorMessage - 2},
		{"4-byte rune across the limit", strings.Repeat("a", MaxErrorMessage-2) + "😀", MaxErrorMessage - 2},
		{"exactly the limit", strings.Repeat("a", MaxErrorMessage-4) + "😀", MaxErrorMessage},
		{"invalid bytes are cut where they are", strings.Repeat("\xff", MaxErrorMessage+1), MaxErrorMessage},
	} {
		h := reset()
		n := WriteInput([]byte("x"))
		Call("handler", n, func([]byte) ([]byte, error) { return nil, errors.New(tc.msg) })
		got := h.LastError()
		if len(got) != tc.want || !strings.HasPrefix(tc.msg, got) || (utf8.ValidString(tc.msg) && !utf8.ValidString(got)) {
			t.Errorf("%s: kept %d bytes (valid UTF-8 %t, prefix %t), want %d", tc.name, len(got), utf8.ValidString(got), strings.HasPrefix(tc.msg, got), tc.want)
		}
	}
}
