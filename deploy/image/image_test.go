package image_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/wasmpod/wasmpod/deploy/image"
	"github.com/wasmpod/wasmpod/deploy/internal/deploytest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	deploytest.Cleanup()
	os.Exit(code)
}

// TestImage builds the image from a release with the hello module, reads it back with
// go-containerregistry as a registry client would, checks its configuration and file system
// (minimal: exactly the expected files, no shell), and runs the binary from the layers inside
// the image's file system, as the image's user, with the image's own entrypoint and command:
// `version`, then the hello pod serving a real HTTP request.
func TestImage(t *testing.T) {
	tarFile, res, err := deploytest.Image()
	if err != nil {
		t.Fatal(err)
	}
	relDir, _ := deploytest.Release()
	rel, err := image.ReadRelease(relDir)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	img, desc, err := deploytest.ReadImage(tarFile, filepath.Join(dir, "layout"), deploytest.Platform)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != res.Digest || desc.Annotations[image.RefName] != strings.ReplaceAll(rel.Version, "+", "_") {
		t.Errorf("index.json names %s %v, built %s", desc.Digest, desc.Annotations, res.Digest)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("image does not validate (digests, sizes, diff IDs): %v", err)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if !slices.Equal(c.Entrypoint, []string{image.Binary}) || !slices.Equal(c.Cmd, image.Cmd) {
		t.Errorf("entrypoint %q cmd %q", c.Entrypoint, c.Cmd)
	}
	if c.User != "65532:65532" {
		t.Errorf("user %q, want a non-root uid:gid", c.User)
	}
	if ports := slices.Sorted(maps.Keys(c.ExposedPorts)); !slices.Equal(ports, slices.Sorted(slices.Values(image.Ports))) {
		t.Errorf("exposed ports %v", ports)
	}
	for k, want := range map[string]string{
		image.LabelVersion: rel.Version, image.LabelRevision: rel.Commit, image.LabelSource: rel.Source, image.LabelCreated: rel.Date,
	} {
		if got := c.Labels[k]; got != want || want == "" {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if cf.Created.UTC().Format("2006-01-02T15:04:05Z") != rel.Date || cf.OS+"/"+cf.Architecture != deploytest.Platform {
		t.Errorf("created %s, platform %s/%s", cf.Created, cf.OS, cf.Architecture)
	}

	// The file system: exactly these entries, with these owners and modes.
	files := map[string]string{}
	var wasmpodBin []byte
	rc := mutate.Extract(img)
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := "/" + strings.TrimSuffix(path.Clean(h.Name), "/")
		files[name] = fmt.Sprintf("%c %o %d:%d", h.Typeflag, h.Mode, h.Uid, h.Gid)
		if name == image.Binary {
			wasmpodBin, _ = io.ReadAll(tr)
		}
	}
	rc.Close()
	want := map[string]string{
		"/etc": "5 755 0:0", "/etc/group": "0 644 0:0", "/etc/passwd": "0 644 0:0", "/etc/wasmpod": "5 755 0:0",
		"/tmp": "5 1777 0:0", "/var": "5 755 0:0", "/var/lib": "5 755 0:0", "/var/lib/wasmpod": "5 700 65532:65532",
		"/usr": "5 755 0:0", "/usr/local": "5 755 0:0", "/usr/local/bin": "5 755 0:0", "/usr/local/bin/wasmpod": "0 755 0:0",
		"/opt": "5 755 0:0", "/opt/wasmpod": "5 755 0:0", "/opt/wasmpod/modules": "5 755 0:0", "/opt/wasmpod/modules/hello.wasm": "0 644 0:0",
	}
	for name, got := range files {
		if want[name] != got {
			t.Errorf("%s: %s, want %q (a minimal image has nothing else: no shell, no libc)", name, got, want[name])
		}
	}
	for name := range want {
		if _, ok := files[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
	a := slices.IndexFunc(rel.Artifacts, func(a image.Artifact) bool { return a.Target == deploytest.Platform })
	if sum := fmt.Sprintf("%x", sha256.Sum256(wasmpodBin)); a < 0 || sum != rel.Artifacts[a].SHA256 {
		t.Errorf("the binary in the layer is not the release's: %s", sum)
	}

	rootfs := filepath.Join(dir, "rootfs")
	if err := deploytest.Rootfs(img, rootfs); err != nil {
		t.Fatal(err)
	}
	passwd, _ := os.ReadFile(filepath.Join(rootfs, "etc/passwd"))
	if !strings.Contains(string(passwd), "\nwasmpod:x:65532:65532:") {
		t.Errorf("/etc/passwd:\n%s", passwd)
	}

	// `wasmpod version`, run from the extracted layer.
	out, err := exec.Command(filepath.Join(rootfs, image.Binary), "version", "-o", "json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Version, Commit, Date string }
	if err := json.Unmarshal(out, &v); err != nil || v.Version != c.Labels[image.LabelVersion] || v.Commit != c.Labels[image.LabelRevision] || v.Date != rel.Date {
		t.Errorf("wasmpod version: %v %s", err, out)
	}

	// The hello pod, mounted where the default command reads it, referring to the module the
	// image carries: the image's entrypoint and command, with the listeners moved to free
	// loopback ports (later flags win), as the image's user in the image's file system.
	spec, err := os.ReadFile(filepath.Join(mustRoot(t), "examples/hello/pod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	spec = bytes.Replace(spec, []byte("wasm: hello.wasm"), []byte("wasm: "+image.ModulesDir+"/hello.wasm"), 1)
	if err := os.WriteFile(filepath.Join(rootfs, image.PodSpec), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	argv := append(append(slices.Clone(c.Entrypoint), c.Cmd...), "--listen=127.0.0.1:0", "--admin=127.0.0.1:0")
	h := deploytest.StartInRoot(t, rootfs, argv, c.Env)
	if code, body := h.Get("http://" + h.Ingress + "/world"); code != 200 || body != "hello, world\n" {
		t.Errorf("GET /world: %d %q", code, body)
	}
	if code, body := h.Get("http://" + h.Admin + "/v1/version"); code != 200 || !strings.Contains(body, `"version": "`+rel.Version+`"`) && !strings.Contains(body, `"version":"`+rel.Version+`"`) {
		t.Errorf("GET /v1/version: %d %s", code, body)
	}
	if code := h.Stop(); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	if _, err := os.Stat(filepath.Join(rootfs, image.StateDir, "cluster")); err != nil {
		t.Errorf("state not written to %s: %v", image.StateDir, err)
	}
}

func mustRoot(t *testing.T) string {
	root, err := deploytest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// The same release and modules give the same image, byte for byte.
func TestImageReproducible(t *testing.T) {
	first, res, err := deploytest.Image()
	if err != nil {
		t.Fatal(err)
	}
	relDir, _ := deploytest.Release()
	hello, _ := deploytest.HelloWasm()
	again := filepath.Join(t.TempDir(), "again.tar")
	res2, err := image.Build(image.Config{Release: relDir, Out: again, Modules: []image.Module{{Src: hello}}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(first)
	b, _ := os.ReadFile(again)
	if res.Digest != res2.Digest || !bytes.Equal(a, b) {
		t.Errorf("two builds differ: %s %s, tar files equal: %v", res.Digest, res2.Digest, bytes.Equal(a, b))
	}
}

// Bad input is refused with an error naming it, and nothing is written.
func TestImageRefuses(t *testing.T) {
	relDir, err := deploytest.Release()
	if err != nil {
		t.Fatal(err)
	}
	hello, _ := deploytest.HelloWasm()
	tmp := t.TempDir()
	notWasm := filepath.Join(tmp, "notwasm.wasm")
	os.WriteFile(notWasm, []byte("#!/bin/sh\n"), 0o644)
	// A release whose binary was swapped after release.json was written.
	tampered := filepath.Join(tmp, "tampered")
	os.MkdirAll(tampered, 0o755)
	rj, _ := os.ReadFile(filepath.Join(relDir, "release.json"))
	os.WriteFile(filepath.Join(tampered, "release.json"), rj, 0o644)
	rel, _ := image.ReadRelease(relDir)
	for _, a := range rel.Artifacts {
		os.WriteFile(filepath.Join(tampered, a.File), []byte("\x7fELF tampered"), 0o755)
	}
	for _, tt := range []struct {
		name string
		cfg  image.Config
		want string
	}{
		{"no release", image.Config{Release: tmp}, "run make release first"},
		{"tampered binary", image.Config{Release: tampered}, "does not match its checksum"},
		{"platform not built", image.Config{Release: relDir, Platforms: []string{"linux/riscv64"}}, "has no linux/riscv64 binary"},
		{"darwin image", image.Config{Release: relDir, Platforms: []string{"darwin/arm64"}}, "images are linux/ARCH"},
		{"module not wasm", image.Config{Release: relDir, Modules: []image.Module{{Src: notWasm}}}, "is not a WebAssembly binary"},
		{"module name twice", image.Config{Release: relDir, Modules: []image.Module{{Src: hello}, {Src: hello}}}, `module name "hello.wasm"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(tmp, tt.name+".tar")
			tt.cfg.Out = out
			_, err := image.Build(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want %q", err, tt.want)
			}
			if _, serr := os.Stat(out); serr == nil {
				t.Errorf("%s written despite the error", out)
			}
		})
	}
}
