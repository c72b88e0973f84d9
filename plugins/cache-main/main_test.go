//go:build !wasip1

package main

import (
	"errors"
	"testing"

	"github.com/wasmpod/wasmpod/guest-sdk/go/pod"
	"github.com/wasmpod/wasmpod/guest-sdk/go/wphttp"
)

// TestServe runs main against a fake "cache" module through the SDK's fake pod.
func TestServe(t *testing.T) {
	pod.Host = pod.NewFakeHost()
	store := map[string]string{}
	pod.Host.Modules["cache"] = func(in []byte) ([]byte, error) {
		switch {
		case string(in[:4]) == "get ":
			if v, ok := store[string(in[4:])]; ok {
				return []byte("V" + v), nil
			}
			return []byte("M"), nil
		case string(in[:4]) == "set ":
			k, v, _ := cut(string(in[4:]))
			if k == "down" {
				return nil, errors.New("memcached backend unavailable: 127.0.0.1:1")
			}
			store[k] = v
			return []byte("S"), nil
		}
		return []byte("Bfake:1"), nil
	}
	for _, tc := range []struct {
		method, uri, body string
		status            int
		want              string
	}{
		{"GET", "/k/a", "", 404, "not found\n"},
		{"PUT", "/k/a", "one", 204, ""},
		{"GET", "/k/a", "", 200, "one"},
		{"GET", "/where/a", "", 200, "fake:1\n"},
		{"PUT", "/k/down", "x", 502, `pod call cache: call "cache": memcached backend unavailable: 127.0.0.1:1` + "\n"},
		{"DELETE", "/k/a", "", 404, ""},
	} {
		r := serve(&wphttp.Request{Method: tc.method, URI: tc.uri, Body: []byte(tc.body)})
		if r.Status != tc.status || (tc.want != "" && string(r.Body) != tc.want) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.uri, r.Status, r.Body, tc.status, tc.want)
		}
	}
}

func cut(s string) (string, string, bool) {
	for i := range len(s) {
		if s[i] == '\n' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
