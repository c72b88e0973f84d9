package abicheck

import "strings"

// sourceLanguage tells from a module's custom sections which language built it: "go" (the Go
// toolchain writes a go:buildid section), "rust" or "c" (from the language field of the
// producers section that rustc and clang write), or "" when it cannot tell. It reads only the
// section headers it needs; a malformed module gives "".
func sourceLanguage(wasm []byte) string {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return ""
	}
	var langs []string
	for p := wasm[8:]; len(p) > 0; {
		id := p[0]
		size, n := uleb(p[1:])
		if n == 0 || uint64(len(p)-1-n) < uint64(size) {
			return ""
		}
		body := p[1+n : 1+n+int(size)]
		p = p[1+n+int(size):]
		if id != 0 {
			continue
		}
		name, rest, ok := str(body)
		switch {
		case !ok:
			return ""
		case name == "go:buildid":
			return "go"
		case name == "producers":
			langs = append(langs, producerLanguages(rest)...)
		}
	}
	for _, l := range langs { // Rust modules name C too (the C parts of its std)
		switch {
		case l == "Go":
			return "go"
		case l == "Rust":
			return "rust"
		}
	}
	for _, l := range langs {
		if l == "C" || strings.HasPrefix(l, "C") && strings.Trim(l[1:], "0123456789") == "" {
			return "c"
		}
	}
	return ""
}

// producerLanguages returns the values of the language field of a producers section.
func producerLanguages(b []byte) []string {
	fields, n := uleb(b)
	if n == 0 {
		return nil
	}
	b = b[n:]
	var out []string
	for range fields {
		name, rest, ok := str(b)
		if !ok {
			return out
		}
		values, n := uleb(rest)
		if n == 0 {
			return out
		}
		b = rest[n:]
		for range values {
			v, rest, ok := str(b)
			if !ok {
				return out
			}
			_, rest, ok = str(rest) // its version
			if !ok {
				return out
			}
			b = rest
			if name == "language" {
				out = append(out, v)
			}
		}
	}
	return out
}

// str reads a length-prefixed string.
func str(b []byte) (s string, rest []byte, ok bool) {
	l, n := uleb(b)
	if n == 0 || uint64(len(b)-n) < uint64(l) {
		return "", nil, false
	}
	return string(b[n : n+int(l)]), b[n+int(l):], true
}

// uleb decodes an unsigned LEB128 u32; n is the number of bytes read, 0 if malformed.
func uleb(b []byte) (v uint32, n int) {
	for i := 0; i < 5 && i < len(b); i++ {
		v |= uint32(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}
