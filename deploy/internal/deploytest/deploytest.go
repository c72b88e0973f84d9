// Package deploytest builds what the deploy tests run: a release binary of the wasmpod in the
// parent directory (its uncommitted changes included), the hello example's module, the image
// made from them, and a process runner that starts the real binary inside the image's
// filesystem (a chroot, as the non-root user) and waits for its listeners.
package deploytest

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/wasmpod/wasmpod/deploy/image"
)

// RepoRoot is the wasmpod repository: the parent of the deploy module.
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("deploytest: no caller")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.HasPrefix(b, []byte("module github.com/wasmpod/wasmpod\n")) {
		return "", fmt.Errorf("deploytest: %s is not the wasmpod repository: %v", root, err)
	}
	return filepath.Abs(root)
}

// Workdir is a directory for the whole test process, removed by Cleanup.
var (
	workOnce sync.Once
	workDir  string
	workErr  error
)

func work() (string, error) {
	workOnce.Do(func() {
		workDir, workErr = os.MkdirTemp("", "wasmpod-deploytest-")
		if workErr == nil {
			// The chroot'd host runs as the image's user: it must reach its files.
			workErr = os.Chmod(workDir, 0o755)
		}
	})
	return workDir, workErr
}

// Cleanup removes what the package built; call it from TestMain after m.Run.
func Cleanup() {
	if workDir != "" {
		os.RemoveAll(workDir)
	}
}

// Platform is the image platform of this machine.
var Platform = "linux/" + runtime.GOARCH

var (
	releaseOnce sync.Once
	releaseDir  string
	releaseErr  error
)

// Release builds a release of this machine's linux target (make release, allowing
// uncommitted changes so the tests test the work tree) once per test process.
func Release() (string, error) {
	releaseOnce.Do(func() {
		releaseDir, releaseErr = build("release", func(root, out string) *exec.Cmd {
			cmd := exec.Command("go", "run", "./internal/release/cmd/release", "-o", out, "-targets", Platform, "-allow-dirty")
			cmd.Dir = root
			return cmd
		})
	})
	return releaseDir, releaseErr
}

var (
	helloOnce sync.Once
	helloDir  string
	helloErr  error
)

// HelloWasm builds examples/hello's module (as make run does) once per test process.
func HelloWasm() (string, error) {
	helloOnce.Do(func() {
		helloDir, helloErr = build("hello", func(root, out string) *exec.Cmd {
			cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", filepath.Join(out, "hello.wasm"), ".")
			cmd.Dir = filepath.Join(root, "examples", "hello", "guest")
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
			return cmd
		})
	})
	return filepath.Join(helloDir, "hello.wasm"), helloErr
}

func build(name string, cmd func(root, out string) *exec.Cmd) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	w, err := work()
	if err != nil {
		return "", err
	}
	out := filepath.Join(w, name)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	c := cmd(root, out)
	if b, err := c.CombinedOutput(); err != nil {
		return "", fmt.Errorf("deploytest: %s: %v\n%s", strings.Join(c.Args, " "), err, b)
	}
	return out, nil
}

// Image builds the image of Release with the hello module into a tar file.
func Image() (string, image.Result, error) {
	rel, err := Release()
	if err != nil {
		return "", image.Result{}, err
	}
	hello, err := HelloWasm()
	if err != nil {
		return "", image.Result{}, err
	}
	w, _ := work()
	out := filepath.Join(w, "image", "wasmpod.oci.tar")
	res, err := image.Build(image.Config{Release: rel, Out: out, Modules: []image.Module{{Src: hello}}})
	return out, res, err
}

// ReadImage opens an image layout tar: it is unpacked into dir, and the platform's image of
// the index index.json names is returned with that index's descriptor.
func ReadImage(tarFile, dir, platform string) (v1.Image, v1.Descriptor, error) {
	if err := Untar(tarFile, dir); err != nil {
		return nil, v1.Descriptor{}, err
	}
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	im, err := top.IndexManifest()
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	if len(im.Manifests) != 1 {
		return nil, v1.Descriptor{}, fmt.Errorf("index.json lists %d manifests, want 1 (the image index)", len(im.Manifests))
	}
	desc := im.Manifests[0]
	idx, err := top.ImageIndex(desc.Digest)
	if err != nil {
		return nil, desc, err
	}
	pm, err := idx.IndexManifest()
	if err != nil {
		return nil, desc, err
	}
	for _, m := range pm.Manifests {
		if m.Platform != nil && m.Platform.OS+"/"+m.Platform.Architecture == platform {
			img, err := idx.Image(m.Digest)
			return img, desc, err
		}
	}
	return nil, desc, fmt.Errorf("no %s image in the index", platform)
}

// Untar unpacks a tar file of regular files and directories into dir (nothing else is allowed).
func Untar(tarFile, dir string) error {
	f, err := os.Open(tarFile)
	if err != nil {
		return err
	}
	defer f.Close()
	return untar(f, dir, false)
}

// Rootfs flattens img's layers into dir, with the owners and modes of the layers (as root):
// the file system a container of the image starts with.
func Rootfs(img v1.Image, dir string) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	return untar(rc, dir, os.Getuid() == 0)
}

func untar(r io.Reader, dir string, owners bool) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if !filepath.IsLocal(name) {
			return fmt.Errorf("untar: unsafe path %q", h.Name)
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			w, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(w, tr)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("untar: %s: type %q is not a file or directory", h.Name, h.Typeflag)
		}
		if err := os.Chmod(p, os.FileMode(h.Mode).Perm()|modeBits(h.Mode)); err != nil {
			return err
		}
		if owners {
			if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
				return err
			}
		}
	}
}

func modeBits(m int64) os.FileMode {
	var fm os.FileMode
	if m&0o1000 != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

// Host is a wasmpod process.
type Host struct {
	t       *testing.T
	cmd     *exec.Cmd
	out     *SyncBuffer
	done    chan struct{}
	exitErr error
	// Admin and Ingress are the listeners' addresses, from the log.
	Admin, Ingress string
}

var (
	adminRE   = regexp.MustCompile(`admin API listening.*? addr=(\S+)`)
	ingressRE = regexp.MustCompile(`pod running.*? ingress=(\S+)`)
)

// Proc is a process to start in an image's file system.
type Proc struct {
	// Rootfs is the image's file system (Rootfs); Argv[0] is a path inside it.
	Rootfs string
	Argv   []string
	Env    []string
	// NetNS, when set, is the network namespace (a name under /var/run/netns) to run in.
	NetNS string
}

// Start runs p chrooted into its rootfs as the image's user. It needs root (chroot, setuid),
// and skips the test without.
func Start(t *testing.T, p Proc) *Host {
	t.Helper()
	if os.Getuid() != 0 {
		Skip(t, "running the image's file system needs root (chroot); CI runs as root")
	}
	// Path is resolved inside the chroot.
	cmd := &exec.Cmd{Path: p.Argv[0], Args: p.Argv, Env: p.Env, Dir: "/"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     p.Rootfs,
		Credential: &syscall.Credential{Uid: image.UID, Gid: image.GID},
		Setpgid:    true,
	}
	h := &Host{t: t, cmd: cmd, out: &SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = h.out, h.out
	if err := inNetNS(p.NetNS, cmd.Start); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	go func() { h.exitErr = cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		select {
		case <-h.done:
		default:
			cmd.Process.Kill()
			<-h.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", strings.Join(p.Argv, " "), h.out.String())
		}
	})
	return h
}

// StartInRoot starts argv in rootfs (Start) and waits until both listeners are up (their
// addresses from the log).
func StartInRoot(t *testing.T, rootfs string, argv, env []string) *Host {
	t.Helper()
	h := Start(t, Proc{Rootfs: rootfs, Argv: argv, Env: env})
	h.waitListening(t)
	return h
}

// waitListening waits until both listeners are up, reading their addresses from the log.
func (h *Host) waitListening(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for h.Admin == "" || h.Ingress == "" {
		s := h.out.String()
		if m := adminRE.FindStringSubmatch(s); m != nil {
			h.Admin = m[1]
		}
		if m := ingressRE.FindStringSubmatch(s); m != nil {
			h.Ingress = m[1]
		}
		if h.Exited() {
			t.Fatalf("host exited early: %v\n%s", h.exitErr, s)
		}
		if time.Now().After(deadline) {
			t.Fatalf("host not listening after 2 minutes:\n%s", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Exited reports whether the process has exited.
func (h *Host) Exited() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// Get is an HTTP GET of url; it returns the status and body.
func (h *Host) Get(url string) (int, string) {
	h.t.Helper()
	code, body, err := Get(&http.Client{Timeout: 30 * time.Second}, url)
	if err != nil {
		h.t.Fatal(err)
	}
	return code, body
}

// Get is an HTTP GET of url with c.
func Get(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Stop sends SIGTERM and returns the exit code.
func (h *Host) Stop() int {
	h.t.Helper()
	return h.StopWithin(time.Minute)
}

// StopWithin sends SIGTERM and returns the exit code; the test fails if the process takes
// longer than limit to exit.
func (h *Host) StopWithin(limit time.Duration) int {
	h.t.Helper()
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(limit):
		h.t.Fatalf("host did not exit within %s of SIGTERM", limit)
	}
	var ee *exec.ExitError
	if errors.As(h.exitErr, &ee) {
		return ee.ExitCode()
	}
	return 0
}

// Output is what the host wrote so far.
func (h *Host) Output() string { return h.out.String() }

// SyncBuffer is a bytes.Buffer that several goroutines may write and read (a process's
// stdout and stderr, and the test reading them).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Skip skips a test that cannot run on this machine, or fails it under
// WASMPOD_REQUIRE_TOOLS=1 (CI), where a missing tool must not pass as a skipped test.
func Skip(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("WASMPOD_REQUIRE_TOOLS") == "1" {
		t.Fatal(why + " (WASMPOD_REQUIRE_TOOLS=1: install it)")
	}
	t.Skip("skipping: " + why)
}
