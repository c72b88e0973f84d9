// Package image builds wasmpod's container image without a Docker daemon, with
// go-containerregistry: from a release directory (`make release`: release.json, SHA256SUMS and
// the static binaries) to an OCI image layout in one tar file (an "oci-archive", which skopeo,
// crane, podman, containerd and `docker load` read).
//
// The image is minimal: the static binary, /etc/passwd and /etc/group naming a non-root user
// (uid and gid 65532), a state directory it owns, and nothing else: no shell, no libc, no
// package manager. It runs as that user by number (Kubernetes' runAsNonRoot can verify it),
// exposes the default ports (ingress, admin, gossip, Raft, scatter), and carries the OCI labels
// version, revision, source and created. One image per linux target of the release, under one
// multi-platform index.
//
// The build is reproducible: every file time and the image's creation time are the release's
// commit time, layers are gzip'd without timestamps, and the layout tar is written in a fixed
// order, so the same release gives the same image digest and the same tar bytes.
//
// Optional pod modules (.wasm files) go in a layer of their own under ModulesDir, so an image
// can carry the pod it runs while sharing the base layers with every other.
package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Paths and identity inside the image.
const (
	// Binary is the entrypoint.
	Binary = "/usr/local/bin/wasmpod"
	// StateDir is the state directory (--state-dir), owned by the user; mount a volume here.
	StateDir = "/var/lib/wasmpod"
	// PodSpec is where the default command reads the pod spec; mount it (a ConfigMap).
	PodSpec = "/etc/wasmpod/pod.yaml"
	// ModulesDir holds the modules added with Config.Modules.
	ModulesDir = "/opt/wasmpod/modules"
	// UID and GID of the wasmpod user: 65532, the "nonroot" id of distroless images, above
	// every system range and unlikely to own anything on a host a volume comes from.
	UID, GID = 65532, 65532
	// User is the user the image runs as, by number.
	User = "65532:65532"
)

// Ports are the default ports the image exposes: the ingress (--listen), the admin API
// (--admin), gossip (--bind, TCP and UDP), Raft (gossip + 1) and the internal scatter endpoint
// (gossip + 2, pods with spec.scatter).
var Ports = []string{"8080/tcp", "9901/tcp", "7946/tcp", "7946/udp", "7947/tcp", "7948/tcp"}

// Cmd is the default command after the entrypoint: run the mounted pod spec with the admin API
// reachable from outside the container (mutating routes still need the token) and state in the
// volume.
var Cmd = []string{"run", PodSpec, "--listen=:8080", "--admin=0.0.0.0:9901", "--state-dir=" + StateDir}

// Label keys (https://github.com/opencontainers/image-spec/blob/main/annotations.md).
const (
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelSource   = "org.opencontainers.image.source"
	LabelCreated  = "org.opencontainers.image.created"
	LabelTitle    = "org.opencontainers.image.title"
	LabelDesc     = "org.opencontainers.image.description"
	// RefName names the image in the layout's index.json (the tag tools load it as).
	RefName = "org.opencontainers.image.ref.name"
)

// Release is what the image builder reads of release.json (internal/release.Manifest in the
// host module; this module does not import the host).
type Release struct {
	Version   string     `json:"version"`
	Commit    string     `json:"commit"`
	Date      string     `json:"date"`
	Source    string     `json:"source"`
	GoVersion string     `json:"goVersion"`
	Artifacts []Artifact `json:"artifacts"`
}

// Artifact is one binary of a release.
type Artifact struct {
	Target string `json:"target"`
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
}

// ReadRelease reads dir/release.json.
func ReadRelease(dir string) (Release, error) {
	var r Release
	b, err := os.ReadFile(filepath.Join(dir, "release.json"))
	if err != nil {
		return r, fmt.Errorf("image: %w (run make release first)", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("image: %s: %w", filepath.Join(dir, "release.json"), err)
	}
	if r.Version == "" || r.Commit == "" || r.Date == "" || r.Source == "" {
		return r, fmt.Errorf("image: %s lacks version, commit, date or source", filepath.Join(dir, "release.json"))
	}
	return r, nil
}

// Module is a file added under ModulesDir.
type Module struct {
	// Src is the file on this machine.
	Src string
	// Name is the file name in ModulesDir; "" uses Src's base name.
	Name string
}

// Config configures Build.
type Config struct {
	// Release is the directory of `make release`.
	Release string
	// Out is the OCI layout tar file to write.
	Out string
	// Platforms to include (linux/amd64, ...); nil takes every linux target of the release.
	Platforms []string
	// Modules are added under ModulesDir, in one layer on top of the base.
	Modules []Module
	// Tag names the image in the layout (RefName); "" uses the release version.
	Tag string
}

// Result says what Build wrote.
type Result struct {
	// Digest is the image index's digest: the same for the same release and modules.
	Digest string
	// Platforms are the images in the index, with their manifest digests.
	Platforms map[string]string
	// Tag is the RefName.
	Tag string
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

// Build writes the image of cfg.Release to cfg.Out.
func Build(cfg Config) (Result, error) {
	rel, err := ReadRelease(cfg.Release)
	if err != nil {
		return Result{}, err
	}
	created, err := time.Parse(time.RFC3339, rel.Date)
	if err != nil {
		return Result{}, fmt.Errorf("image: release date %q: %w", rel.Date, err)
	}
	tag := cfg.Tag
	if tag == "" {
		tag = strings.ReplaceAll(rel.Version, "+", "_") // "+" is not allowed in a tag
	}
	plats := cfg.Platforms
	if plats == nil {
		for _, a := range rel.Artifacts {
			if strings.HasPrefix(a.Target, "linux/") {
				plats = append(plats, a.Target)
			}
		}
	}
	if len(plats) == 0 {
		return Result{}, fmt.Errorf("image: release %s has no linux binary", cfg.Release)
	}
	var modLayer v1.Layer
	if len(cfg.Modules) > 0 {
		if modLayer, err = modulesLayer(cfg.Modules, created); err != nil {
			return Result{}, err
		}
	}
	base, err := baseLayer(created)
	if err != nil {
		return Result{}, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	res := Result{Platforms: map[string]string{}, Tag: tag}
	for _, p := range plats {
		img, err := platformImage(rel, cfg.Release, p, created, base, modLayer)
		if err != nil {
			return Result{}, err
		}
		d, err := img.Digest()
		if err != nil {
			return Result{}, err
		}
		res.Platforms[p] = d.String()
		osName, arch, _ := strings.Cut(p, "/")
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: osName, Architecture: arch},
		}})
	}
	d, err := idx.Digest()
	if err != nil {
		return Result{}, err
	}
	res.Digest = d.String()
	return res, writeLayoutTar(cfg.Out, idx, tag, created)
}

// platformImage is the image for one target: base layer, binary layer, optional modules layer,
// and the config.
func platformImage(rel Release, dir, platform string, created time.Time, base, modules v1.Layer) (v1.Image, error) {
	osName, arch, ok := strings.Cut(platform, "/")
	if !ok || osName != "linux" {
		return nil, fmt.Errorf("image: platform %q: images are linux/ARCH", platform)
	}
	i := slices.IndexFunc(rel.Artifacts, func(a Artifact) bool { return a.Target == platform })
	if i < 0 {
		return nil, fmt.Errorf("image: release has no %s binary (make release TARGETS=%s)", platform, platform)
	}
	a := rel.Artifacts[i]
	if !nameRE.MatchString(a.File) {
		return nil, fmt.Errorf("image: release.json names a bad file %q", a.File)
	}
	bin, err := os.ReadFile(filepath.Join(dir, a.File))
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	if sum := sha256.Sum256(bin); hex.EncodeToString(sum[:]) != a.SHA256 {
		return nil, fmt.Errorf("image: %s does not match its checksum in release.json", a.File)
	}
	if err := checkELF(bin, arch); err != nil {
		return nil, fmt.Errorf("image: %s: %w", a.File, err)
	}
	binLayer, err := layer([]entry{
		{path: "usr/", dir: true, mode: 0o755},
		{path: "usr/local/", dir: true, mode: 0o755},
		{path: "usr/local/bin/", dir: true, mode: 0o755},
		{path: strings.TrimPrefix(Binary, "/"), mode: 0o755, data: bin},
	}, created)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1),
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: history(created, "users, groups and the state directory")},
		mutate.Addendum{Layer: binLayer, MediaType: types.OCILayer, History: history(created, "wasmpod "+rel.Version+" "+platform)})
	if err != nil {
		return nil, err
	}
	if modules != nil {
		if img, err = mutate.Append(img, mutate.Addendum{Layer: modules, MediaType: types.OCILayer, History: history(created, "pod modules in "+ModulesDir)}); err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = osName, arch
	cf.Created = v1.Time{Time: created}
	cf.Author = ""
	ports := map[string]struct{}{}
	for _, p := range Ports {
		ports[p] = struct{}{}
	}
	cf.Config = v1.Config{
		Entrypoint:   []string{Binary},
		Cmd:          slices.Clone(Cmd),
		User:         User,
		WorkingDir:   StateDir,
		Env:          []string{"PATH=/usr/local/bin"},
		ExposedPorts: ports,
		Volumes:      map[string]struct{}{StateDir: {}},
		StopSignal:   "SIGTERM",
		Labels: map[string]string{
			LabelVersion:  rel.Version,
			LabelRevision: rel.Commit,
			LabelSource:   rel.Source,
			LabelCreated:  rel.Date,
			LabelTitle:    "wasmpod",
			LabelDesc:     "Runs WebAssembly modules the way Kubernetes runs containers",
		},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.ConfigMediaType(img, types.OCIConfigJSON), nil
}

func history(created time.Time, what string) v1.History {
	return v1.History{Created: v1.Time{Time: created}, CreatedBy: "wasmpod imagebuild: " + what}
}

// checkELF refuses a binary that is not a static ELF executable for arch: packing the arm64
// binary into the amd64 image would give an image that cannot start.
func checkELF(b []byte, arch string) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not an ELF binary: %w", err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if want == 0 {
		return fmt.Errorf("architecture %q: images are built for amd64 and arm64", arch)
	}
	if f.Machine != want {
		return fmt.Errorf("built for %v, not %s", f.Machine, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (it needs a libc the image does not have): build with CGO_ENABLED=0")
		}
	}
	return nil
}

// baseLayer holds the user database and the state directory.
func baseLayer(created time.Time) (v1.Layer, error) {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nwasmpod:x:%d:%d:wasmpod:%s:/sbin/nologin\n", UID, GID, StateDir)
	group := fmt.Sprintf("root:x:0:\nwasmpod:x:%d:\n", GID)
	return layer([]entry{
		{path: "etc/", dir: true, mode: 0o755},
		{path: "etc/group", mode: 0o644, data: []byte(group)},
		{path: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{path: "etc/wasmpod/", dir: true, mode: 0o755},
		{path: "tmp/", dir: true, mode: 0o1777},
		{path: "var/", dir: true, mode: 0o755},
		{path: "var/lib/", dir: true, mode: 0o755},
		{path: strings.TrimPrefix(StateDir, "/") + "/", dir: true, mode: 0o700, uid: UID, gid: GID},
	}, created)
}

func modulesLayer(mods []Module, created time.Time) (v1.Layer, error) {
	es := []entry{
		{path: "opt/", dir: true, mode: 0o755},
		{path: "opt/wasmpod/", dir: true, mode: 0o755},
		{path: strings.TrimPrefix(ModulesDir, "/") + "/", dir: true, mode: 0o755},
	}
	seen := map[string]bool{}
	for _, m := range mods {
		name := m.Name
		if name == "" {
			name = filepath.Base(m.Src)
		}
		if !nameRE.MatchString(name) || seen[name] {
			return nil, fmt.Errorf("image: module name %q: want a unique file name", name)
		}
		seen[name] = true
		b, err := os.ReadFile(m.Src)
		if err != nil {
			return nil, fmt.Errorf("image: module: %w", err)
		}
		if !bytes.HasPrefix(b, []byte("\x00asm")) {
			return nil, fmt.Errorf("image: module %s is not a WebAssembly binary", m.Src)
		}
		es = append(es, entry{path: path.Join(strings.TrimPrefix(ModulesDir, "/"), name), mode: 0o644, data: b})
	}
	return layer(es, created)
}

// entry is one file or directory of a layer.
type entry struct {
	path     string
	dir      bool
	mode     int64
	uid, gid int
	data     []byte
}

// layer is a gzip'd tar layer of es, every time set to mtime.
func layer(es []entry, mtime time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.path, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: mtime, Format: tar.FormatUSTAR}
		h.Uname, h.Gname = "", ""
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// writeLayoutTar writes idx as an OCI image layout (index.json naming it tag) into one tar
// file, entries in lexical order with fixed times and owners.
func writeLayoutTar(out string, idx v1.ImageIndex, tag string, mtime time.Time) error {
	tmp, err := os.MkdirTemp("", "wasmpod-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	lp, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return err
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{RefName: tag})); err != nil {
		return err
	}
	var files []string
	err = filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == tmp {
			return err
		}
		files = append(files, p)
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(files)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(out), ".wasmpod-image-*")
	if err != nil {
		return err
	}
	defer func() {
		f.Close()
		os.Remove(f.Name()) // after the rename: nothing left to remove
	}()
	tw := tar.NewWriter(f)
	for _, p := range files {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tmp, p)
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime, Mode: 0o644, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if fi.IsDir() {
			h.Name += "/"
			h.Mode, h.Typeflag = 0o755, tar.TypeDir
		} else {
			h.Size = fi.Size()
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !fi.IsDir() {
			if err := copyFile(tw, p); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), out)
}

func copyFile(w io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}
