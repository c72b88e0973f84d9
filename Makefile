# wasmpod build, test and benchmark entry points. `make help` lists them.
GO        ?= go
PLUGINS   := $(wildcard plugins/*/)
BUILD     := build
STATICCHECK_VERSION := v0.6.1

.PHONY: help run test test-go test-sdk test-deploy test-soak soak lint plugins bench fuzz clean release release-check image

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

run: ## run the hello example pod on this machine (ingress :8080, admin 127.0.0.1:9901)
	cd examples/hello/guest && GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -o ../hello.wasm .
	$(GO) run ./host/cmd/wasmpod run examples/hello/pod.yaml

test: lint test-go test-sdk test-deploy test-soak ## everything CI runs: lint, then all tests with -race, then a short soak

# Multi-process cluster tests measure failover against the issue's bounds: they run alone,
# after the rest, so a loaded machine does not distort them.
SERIAL_PKGS := ./cluster/internal/clustertest/

test-go: ## the root module's tests, with the race detector
	$(GO) test -race -timeout 40m $$($(GO) list ./... | grep -v -e '/cluster/internal/clustertest$$')
	$(GO) test -race -timeout 20m -p 1 $(SERIAL_PKGS)

test-sdk: ## the guest SDKs' own unit tests (Go SDK is its own module; Rust SDK natively)
	cd guest-sdk/go && $(GO) test -race ./...
	cd guest-sdk/rust/wasmpod && cargo test --offline --quiet

# deploy/tracing waits for tools/jaeger/build.sh (CI starts it in the background first; by
# hand, the first run builds Jaeger into ~/.cache/wasmpod/jaeger), hence the longer timeout.
test-deploy: ## the deploy module's tests: the image and manifests against the binary, the web console in headless Chromium (screenshots in build/console), dashboards and alerts against a real Prometheus, traces of a 3-node cluster in a real Jaeger
	cd deploy && $(GO) test -race -timeout 40m ./...

# The soak (host/cmd/wasmpod TestSoak): constant load on a host while its main module is
# upgraded and rolled back, restarted, scaled to 8 and 1, stopped and started, in a loop; it
# fails on any non-503 request failure and on RSS, goroutine, descriptor or heap-after-GC growth
# beyond the slopes the test states. CI runs 10 minutes (SOAK_CI); by hand, 60 minutes.
SOAK    ?= 10m
SOAK_CI ?= 10m
soak: ## the soak for SOAK (default 10m; 60m by hand before a release); figures in bench/SOAK.md
	WASMPOD_SOAK=$(SOAK) WASMPOD_SOAK_REPORT=$(CURDIR)/bench/SOAK.md $(GO) test -count=1 -run '^TestSoak$$' -v -timeout 3h ./host/cmd/wasmpod/

test-soak: ## the soak for SOAK_CI (10m), as CI runs it (figures in build/soak.md)
	mkdir -p $(BUILD)
	WASMPOD_SOAK=$(SOAK_CI) WASMPOD_SOAK_REPORT=$(CURDIR)/$(BUILD)/soak.md $(GO) test -count=1 -run '^TestSoak$$' -v -timeout 30m ./host/cmd/wasmpod/

lint: ## gofmt, go vet and staticcheck on every Go module
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	cd guest-sdk/go && $(GO) vet ./...
	cd deploy && $(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	cd deploy && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# Release binaries: static, reproducible, checksummed (internal/release). The version comes from
# git (HEAD's tag, else a pseudo-version); a tree with uncommitted changes is refused unless
# ALLOW_DIRTY=1. TARGETS narrows the platforms (default: linux/amd64, linux/arm64, darwin/arm64).
RELEASE_DIR := $(BUILD)/release
release: ## static reproducible binaries + SHA256SUMS + release.json under build/release
	$(GO) run ./internal/release/cmd/release -o $(RELEASE_DIR) $(if $(TARGETS),-targets $(TARGETS)) $(if $(filter 1,$(ALLOW_DIRTY)),-allow-dirty)

release-check: ## rebuild linux/amd64 from a fresh clone with an empty build cache; compare with build/release/SHA256SUMS
	$(GO) run ./internal/release/cmd/release -check -o $(RELEASE_DIR) $(if $(TARGETS),-targets $(TARGETS))

image: ## OCI image (linux/amd64 + linux/arm64) from build/release, no Docker daemon: build/image/wasmpod.oci.tar
	cd deploy && $(GO) run ./cmd/imagebuild -release ../$(RELEASE_DIR) -o ../$(BUILD)/image/wasmpod.oci.tar $(foreach m,$(MODULES),-module ../$(m))

plugins: ## build every plugin under plugins/ into build/plugins/*.wasm
	$(GO) run ./internal/wasmbuild/cmd/buildguests -o $(BUILD)/plugins $(PLUGINS)

bench: ## run all benchmarks with their baselines and write bench/RESULTS.md
	mkdir -p $(BUILD)
	$(GO) test -run '^$$' -bench . -benchmem -count 3 -timeout 60m ./bench/ ./cluster/internal/queuestate/ | tee $(BUILD)/bench.out
	$(GO) run ./bench/cmd/benchreport -in $(BUILD)/bench.out -out bench/RESULTS.md

fuzz: ## a short run of every fuzz target (FUZZTIME=30s each)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-30s} $$pkg || exit 1; \
	  done; done

clean: ## remove build outputs (the wasm and compilation caches live in the user cache dir)
	rm -rf $(BUILD)
