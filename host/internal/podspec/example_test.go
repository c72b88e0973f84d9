package podspec_test

import (
	"errors"
	"fmt"

	"github.com/wasmpod/wasmpod/host/internal/podspec"
)

func Example() {
	spec := []byte(`apiVersion: wasmpod.dev/v1
kind: Pod
metadata:
  name: shop
spec:
  modules:
    - name: web
      wasm: web.wasm
      resources: {memory: 32Mi}
    - name: egress
      role: ambassador
      wasm: egress.wasm
      network: {allow: ["api.example.com:443"]}
    - name: logs
      role: sidecar
      wasm: logs.wasm
`)
	pod, err := podspec.Parse(spec, "/srv/shop")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range pod.StartOrder() {
		fmt.Printf("start %s (%s) from %s, %d pages, deadline %s\n",
			m.Name, m.Role, pod.ResolvePath(m.Wasm), m.Resources.MemoryPages(), m.Resources.Timeout)
	}
	// Output:
	// start egress (ambassador) from /srv/shop/egress.wasm, 1024 pages, deadline 5s
	// start logs (sidecar) from /srv/shop/logs.wasm, 1024 pages, deadline 5s
	// start web (main) from /srv/shop/web.wasm, 512 pages, deadline 5s
}

func ExampleParse_errors() {
	spec := []byte(`apiVersion: wasmpod.dev/v1
kind: Pod
metadata:
  name: shop
spec:
  modules:
    - name: web
      imag: web.wasm
      resources:
        memory: 64MB
`)
	_, err := podspec.Parse(spec, ".")
	fmt.Println(errors.Is(err, podspec.ErrInvalidSpec))
	fmt.Println(err)
	// Output:
	// true
	// line 7: spec.modules[0].wasm: required field is missing (the path of the module's .wasm file)
	// line 8: spec.modules[0].imag: unknown field "imag"; did you mean "wasm"? (a module runs a .wasm file instead of a container image)
	// line 10: spec.modules[0].resources.memory: invalid quantity "64MB" (use Ki, Mi or Gi: "64Mi")
}
