package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestExtismContractInAPod: plugins nobody wrote for wasmpod serve through ingress unchanged: a
// count-vowels plugin whose function is not named after a role (extism.function), with its
// running total in a var (resources.vars) and its vowels from config; and an Extism main module
// granted one outbound host (network.allow on a role other than ambassador), refused others.
func TestExtismContractInAPod(t *testing.T) {
	h := startHost(t, writePod(t, `apiVersion: wasmpod.dev/v1
kind: Pod
metadata: {name: vowels}
spec:
  modules:
    - name: web
      wasm: `+guests["vowels"]+`
      abi: extism
      extism: {function: count_vowels}
      config: {vowels: aeiouyAEIOUY}
      resources: {concurrency: 1, vars: 64Ki}
`), "")
	waitFor(t, time.Minute, "ready", func() bool { return h.status("web").Ready })
	if code, body := h.call("Yellow sky"); code != 200 || body != `{"count":4,"total":4,"vowels":"aeiouyAEIOUY"}` {
		t.Fatalf("count_vowels through ingress: %d %q", code, body)
	}
	if code, body := h.call("a"); code != 200 || body != `{"count":1,"total":5,"vowels":"aeiouyAEIOUY"}` {
		t.Fatalf("the total kept in a var: %d %q", code, body)
	}

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("from upstream")) }))
	defer upstream.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("a host off the list was reached") }))
	defer other.Close()
	h2 := startHost(t, writePod(t, podYAML("extism-go", "      abi: extism\n      network:\n        allow: [\""+strings.TrimPrefix(upstream.URL, "http://")+"\"]", "")), "")
	waitFor(t, time.Minute, "ready", func() bool { return h2.status("web").Ready })
	if code, body := h2.call("fetch:" + upstream.URL + "/"); code != 200 || body != "200 from upstream" {
		t.Fatalf("allowed host: %d %q", code, body)
	}
	if code, body := h2.call("fetch:" + other.URL + "/"); code == 200 {
		t.Fatalf("a host off the list: %d %q", code, body)
	}
}
