package main

import (
	"strings"
	"testing"
)

// TestCacheMaxFlag: --cache-max takes a quantity; 0 turns the bound off; anything else is
// refused with an error naming the flag.
func TestCacheMaxFlag(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"1Gi", 1 << 30, false},
		{"512Mi", 512 << 20, false},
		{"0", -1, false},
		{"lots", 0, true},
		{"-1Gi", 0, true},
		{"", 0, true},
	} {
		got, err := cacheMaxBytes(tc.in)
		if (err != nil) != tc.wantErr || err == nil && got != tc.want {
			t.Errorf("cacheMaxBytes(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "--cache-max") {
			t.Errorf("cacheMaxBytes(%q): %v does not name the flag", tc.in, err)
		}
	}
}
