package abicheck

import "testing"

// TestSourceLanguageMalformed: truncated or corrupt sections give "" and never panic.
func TestSourceLanguageMalformed(t *testing.T) {
	head := []byte("\x00asm\x01\x00\x00\x00")
	for _, tc := range []struct {
		name string
		wasm []byte
		want string
	}{
		{"empty", nil, ""},
		{"header only", head, ""},
		{"section past the end", append(head, 0, 9, 1), ""},
		{"name past the section", append(head, 0, 2, 5, 'x'), ""},
		{"unterminated LEB", append(head, 0, 0x80, 0x80, 0x80, 0x80, 0x80), ""},
		{"go:buildid", append(head, 0, 11, 10, 'g', 'o', ':', 'b', 'u', 'i', 'l', 'd', 'i', 'd'), "go"},
		{"producers cut short", append(head, 0, 13, 9, 'p', 'r', 'o', 'd', 'u', 'c', 'e', 'r', 's', 1, 8, 'l'), ""},
		{"producers huge counts", append(head, 0, 15, 9, 'p', 'r', 'o', 'd', 'u', 'c', 'e', 'r', 's', 0xff, 0xff, 0xff, 0xff, 0x0f), ""},
		{"Rust and C", custom(head, "\x09producers\x01\x08language\x02\x04Rust\x00\x03C99\x00"), "rust"},
		{"C11", custom(head, "\x09producers\x01\x08language\x01\x03C11\x00"), "c"},
	} {
		if got := sourceLanguage(tc.wasm); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// custom appends a custom section with body (its name included) to a module.
func custom(wasm []byte, body string) []byte {
	return append(append(append([]byte{}, wasm...), 0, byte(len(body))), body...)
}
