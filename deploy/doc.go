// Package deploy holds wasmpod's deployment files and their tests: the Kubernetes manifests
// (kubernetes/), the systemd unit (systemd/), and the container image builder (image/,
// cmd/imagebuild). It is a Go module of its own so that its dependencies (go-containerregistry,
// k8s.io/api) stay out of the host's go.mod; it imports nothing from the host, and tests the
// files against the real wasmpod binary, built from the parent directory.
package deploy
