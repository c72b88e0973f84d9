package runtime

import (
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

// FuzzCacheEntryValid: the cache entry check never panics, whatever the file holds.
func FuzzCacheEntryValid(f *testing.F) {
	code := []byte{0xC3, 0x90, 0x90, 0x90}
	b := append([]byte("WAZEVO"), 7)
	b = append(b, "v1.12.0"...)
	b = binary.LittleEndian.AppendUint32(b, 1)
	b = binary.LittleEndian.AppendUint64(b, 0)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(code)))
	b = append(b, code...)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(code, crc32.MakeTable(crc32.Castagnoli)))
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 0)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) { cacheEntryValid(b) })
}

// TestCacheEntryValidCuts: the check accepts a well-formed entry and refuses it cut anywhere
// before its catch clause table, or with any byte of its code changed.
func TestCacheEntryValidCuts(t *testing.T) {
	code := make([]byte, 64)
	for i := range code {
		code[i] = byte(rand.Uint32())
	}
	b := append([]byte("WAZEVO"), 7)
	b = append(b, "v1.12.0"...)
	b = binary.LittleEndian.AppendUint32(b, 2)
	b = binary.LittleEndian.AppendUint64(b, 0)
	b = binary.LittleEndian.AppendUint64(b, 32)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(code)))
	codeAt := len(b)
	b = append(b, code...)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(code, crc32.MakeTable(crc32.Castagnoli)))
	b = append(b, 0)
	full := len(b)
	b = binary.LittleEndian.AppendUint32(b, 0)
	if !cacheEntryValid(b) || !cacheEntryValid(b[:full]) {
		t.Fatal("a well-formed entry refused")
	}
	for n := 0; n < full; n++ {
		if cacheEntryValid(b[:n]) {
			t.Fatalf("cut at %d accepted", n)
		}
	}
	for i := codeAt; i < codeAt+len(code); i++ {
		c := append([]byte(nil), b...)
		c[i] ^= 1
		if cacheEntryValid(c) {
			t.Fatalf("code byte %d changed, accepted", i-codeAt)
		}
	}
	c := append([]byte(nil), b...)
	binary.LittleEndian.PutUint64(c[len("WAZEVO")+8+4+8:], 64) // second offset past the code
	if cacheEntryValid(c) {
		t.Fatal("offset past the code accepted")
	}
}

// CacheEntryValid exports cacheEntryValid to the external tests.
var CacheEntryValid = cacheEntryValid
