package deploy

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/wasmpod/wasmpod/deploy/image"
	"github.com/wasmpod/wasmpod/deploy/internal/deploytest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	deploytest.Cleanup()
	os.Exit(code)
}

// manifests are the decoded Kubernetes files.
type manifests struct {
	sa        *corev1.ServiceAccount
	config    *corev1.ConfigMap
	headless  *corev1.Service
	ingress   *corev1.Service
	sts       *appsv1.StatefulSet
	pdb       *policyv1.PodDisruptionBudget
	netpol    *networkingv1.NetworkPolicy
	secret    *corev1.Secret
	kustomize kustomization
}

// kustomization is the part of kustomize's Kustomization the files use (kustomize's own types
// would bring its whole module along); decoded as strictly as the rest.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// decodeFile decodes every document of a manifest file strictly (an unknown or duplicate
// field fails) into the k8s.io/api type its apiVersion and kind name.
func decodeFile(path string) ([]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []any
	for i, doc := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(b), -1) {
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("%s document %d: %v", path, i, err)
		}
		if tm.Kind == "" {
			if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) != "" {
				return nil, fmt.Errorf("%s document %d has no kind", path, i)
			}
			continue
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "v1 ConfigMap":
			obj = &corev1.ConfigMap{}
		case "v1 Service":
			obj = &corev1.Service{}
		case "v1 Secret":
			obj = &corev1.Secret{}
		case "apps/v1 StatefulSet":
			obj = &appsv1.StatefulSet{}
		case "policy/v1 PodDisruptionBudget":
			obj = &policyv1.PodDisruptionBudget{}
		case "networking.k8s.io/v1 NetworkPolicy":
			obj = &networkingv1.NetworkPolicy{}
		case "kustomize.config.k8s.io/v1beta1 Kustomization":
			obj = &kustomization{}
		default:
			return nil, fmt.Errorf("%s document %d: unexpected %s %s", path, i, tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			return nil, fmt.Errorf("%s document %d (%s): %v", path, i, tm.Kind, err)
		}
		out = append(out, obj)
	}
	return out, nil
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	var m manifests
	files, _ := filepath.Glob("kubernetes/*.yaml")
	if len(files) != 3 {
		t.Fatalf("kubernetes/: %v, want kustomization.yaml, secret.example.yaml, wasmpod.yaml", files)
	}
	for _, f := range files {
		objs, err := decodeFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range objs {
			switch o := obj.(type) {
			case *corev1.ServiceAccount:
				m.sa = o
			case *corev1.ConfigMap:
				m.config = o
			case *corev1.Service:
				if o.Spec.ClusterIP == corev1.ClusterIPNone {
					m.headless = o
				} else {
					m.ingress = o
				}
			case *appsv1.StatefulSet:
				m.sts = o
			case *policyv1.PodDisruptionBudget:
				m.pdb = o
			case *networkingv1.NetworkPolicy:
				m.netpol = o
			case *corev1.Secret:
				m.secret = o
			case *kustomization:
				m.kustomize = *o
			}
		}
	}
	if m.sa == nil || m.config == nil || m.headless == nil || m.ingress == nil || m.sts == nil || m.pdb == nil || m.netpol == nil || m.secret == nil || m.kustomize.Kind == "" {
		t.Fatalf("missing objects: %+v", m)
	}
	return m
}

// The strict decoder does refuse what it should: a misspelt field, a duplicate one, a wrong type.
func TestStrictDecodingRefuses(t *testing.T) {
	for _, tt := range []struct{ doc, want string }{
		{"apiVersion: apps/v1\nkind: StatefulSet\nspec: {replica: 3}\n", `unknown field "replica"`},
		{"apiVersion: apps/v1\nkind: StatefulSet\nspec: {replicas: 3, replicas: 4}\n", `key "replicas" already set`},
		{"apiVersion: v1\nkind: Service\nspec: {ports: [{port: gossip}]}\n", "cannot unmarshal string"},
		{"apiVersion: v1\nkind: Pod\n", "unexpected v1 Pod"},
	} {
		p := filepath.Join(t.TempDir(), "bad.yaml")
		os.WriteFile(p, []byte("# a comment\n---\n"+tt.doc), 0o644)
		if _, err := decodeFile(p); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.doc, err, tt.want)
		}
	}
}

// container is the StatefulSet's wasmpod container, with its flags.
func (m manifests) container(t *testing.T) (corev1.Container, map[string]string) {
	t.Helper()
	cs := m.sts.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%d containers", len(cs))
	}
	c := cs[0]
	if len(c.Command) != 0 || len(c.Args) < 2 || c.Args[0] != "run" {
		t.Fatalf("command %q args %q: want the image's entrypoint with args run POD.yaml ...", c.Command, c.Args)
	}
	flags := map[string]string{}
	for _, a := range c.Args[2:] {
		k, v, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok {
			t.Fatalf("arg %q: write flags as --name=value", a)
		}
		if _, dup := flags[k]; dup {
			t.Fatalf("flag --%s given twice", k)
		}
		flags[k] = v
	}
	return c, flags
}

func port(t *testing.T, c corev1.Container, name string, proto corev1.Protocol) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			if p.Protocol != proto {
				t.Errorf("port %s: protocol %s, want %s", name, p.Protocol, proto)
			}
			return p.ContainerPort
		}
	}
	t.Fatalf("container has no port named %q", name)
	return 0
}

func addrPort(t *testing.T, flag, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	n, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil {
		t.Fatalf("--%s=%s: not host:port", flag, addr)
	}
	return int32(n)
}

// mountedFile returns the volume a path in the container lies in and the path inside it.
func (m manifests) mountedFile(t *testing.T, c corev1.Container, path string) (corev1.Volume, string) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if rel, ok := strings.CutPrefix(path, vm.MountPath+"/"); ok {
			for _, v := range m.sts.Spec.Template.Spec.Volumes {
				if v.Name == vm.Name {
					return v, rel
				}
			}
			for _, pvc := range m.sts.Spec.VolumeClaimTemplates {
				if pvc.Name == vm.Name {
					return corev1.Volume{Name: pvc.Name, VolumeSource: corev1.VolumeSource{
						PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc.Name}}}, rel
				}
			}
			t.Fatalf("volume mount %s names no volume", vm.Name)
		}
	}
	t.Fatalf("%s is in no volume mount", path)
	return corev1.Volume{}, ""
}

// TestManifestWiring decodes the Kubernetes files strictly and checks that they fit each
// other and the binary: every flag parses with the real wasmpod's flag set, ports and probe
// paths are what it serves, files are where the flags say, the join list names the
// StatefulSet's DNS names, and the grace period covers the pod's.
func TestManifestWiring(t *testing.T) {
	m := loadManifests(t)
	c, flags := m.container(t)
	spec := m.sts.Spec.Template.Spec
	rel, err := deploytest.Release()
	if err != nil {
		t.Fatal(err)
	}
	bin := releaseBinary(t, rel)

	// Every flag is one `wasmpod run` has, and the command line parses (--help after it).
	checkFlags(t, bin, c.Args)

	// Labels and selectors.
	want := m.sts.Spec.Selector.MatchLabels
	for name, sel := range map[string]map[string]string{
		"template labels": m.sts.Spec.Template.Labels, "headless Service": m.headless.Spec.Selector,
		"ingress Service": m.ingress.Spec.Selector, "PodDisruptionBudget": m.pdb.Spec.Selector.MatchLabels,
		"NetworkPolicy": m.netpol.Spec.PodSelector.MatchLabels,
	} {
		for k, v := range want {
			if sel[k] != v {
				t.Errorf("%s lacks %s=%s", name, k, v)
			}
		}
	}
	if m.sts.Spec.ServiceName != m.headless.Name || !m.headless.Spec.PublishNotReadyAddresses {
		t.Errorf("serviceName %q, headless Service %q (publishNotReadyAddresses %v): peers must resolve before they are ready",
			m.sts.Spec.ServiceName, m.headless.Name, m.headless.Spec.PublishNotReadyAddresses)
	}
	if spec.ServiceAccountName != m.sa.Name || spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("service account %q, token automounted", spec.ServiceAccountName)
	}

	// Ports: the flags' ports are the container's named ports; Raft and scatter follow gossip.
	ingress, admin := port(t, c, "ingress", corev1.ProtocolTCP), port(t, c, "admin", corev1.ProtocolTCP)
	gossip := port(t, c, "gossip-tcp", corev1.ProtocolTCP)
	if addrPort(t, "listen", flags["listen"]) != ingress || addrPort(t, "admin", flags["admin"]) != admin {
		t.Errorf("--listen=%s --admin=%s, container ports ingress %d admin %d", flags["listen"], flags["admin"], ingress, admin)
	}
	if h, _, _ := net.SplitHostPort(flags["admin"]); h != "0.0.0.0" {
		t.Errorf("--admin=%s: the kubelet probes the pod's IP", flags["admin"])
	}
	if addrPort(t, "bind", flags["bind"]) != gossip || port(t, c, "gossip-udp", corev1.ProtocolUDP) != gossip ||
		port(t, c, "raft", corev1.ProtocolTCP) != gossip+1 || port(t, c, "scatter", corev1.ProtocolTCP) != gossip+2 {
		t.Errorf("gossip %d (--bind=%s): Raft must be gossip+1, scatter gossip+2", gossip, flags["bind"])
	}
	if flags["advertise"] != fmt.Sprintf("$(POD_IP):%d", gossip) {
		t.Errorf("--advertise=%s", flags["advertise"])
	}
	for _, sp := range m.headless.Spec.Ports {
		if port(t, c, sp.TargetPort.StrVal, sp.Protocol) != sp.Port {
			t.Errorf("headless Service port %s: %d, container %d", sp.Name, sp.Port, port(t, c, sp.TargetPort.StrVal, sp.Protocol))
		}
	}
	if len(m.ingress.Spec.Ports) != 1 || m.ingress.Spec.Ports[0].TargetPort != intstr.FromString("ingress") {
		t.Errorf("ingress Service ports %+v", m.ingress.Spec.Ports)
	}

	// Probes: what the admin API serves (the run test gets 200 from each).
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		wantPath := map[string]string{"startup": "/healthz", "liveness": "/healthz", "readiness": "/readyz"}[name]
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != wantPath || p.HTTPGet.Port != intstr.FromString("admin") {
			t.Errorf("%s probe %+v, want GET %s on the admin port", name, p, wantPath)
		}
	}

	// Join: the StatefulSet's own stable names, every one, on the gossip port; the first forms
	// the cluster.
	var names []string
	for i := range *m.sts.Spec.Replicas {
		names = append(names, fmt.Sprintf("%s-%d.%s:%d", m.sts.Name, i, m.headless.Name, gossip))
	}
	if flags["join"] != strings.Join(names, ",") || flags["bootstrap-node"] != m.sts.Name+"-0" || flags["node-name"] != "$(POD_NAME)" {
		t.Errorf("--join=%s --bootstrap-node=%s --node-name=%s, want --join=%s", flags["join"], flags["bootstrap-node"], flags["node-name"], strings.Join(names, ","))
	}

	// Files: the pod spec in the ConfigMap, the key and token in the Secret.
	v, key := m.mountedFile(t, c, c.Args[1])
	if v.ConfigMap == nil || v.ConfigMap.Name != m.config.Name || m.config.Data[key] == "" {
		t.Errorf("pod spec %s: volume %+v, ConfigMap %s has no key %q", c.Args[1], v, m.config.Name, key)
	}
	for _, f := range []string{"gossip-key-file", "token-file"} {
		v, p := m.mountedFile(t, c, flags[f])
		if v.Secret == nil || v.Secret.SecretName != m.secret.Name {
			t.Errorf("--%s=%s: not in the Secret %s", f, flags[f], m.secret.Name)
			continue
		}
		found := false
		for _, it := range v.Secret.Items {
			if it.Path == p {
				found = true
				if _, ok := m.secret.StringData[it.Key]; !ok {
					t.Errorf("--%s: key %s is not in the Secret's shape (secret.example.yaml)", f, it.Key)
				}
			}
		}
		if !found {
			t.Errorf("--%s=%s: no item of the Secret volume is mounted at %s", f, flags[f], p)
		}
	}
	if sd, _ := m.mountedFile(t, c, flags["state-dir"]+"/x"); sd.Name != m.sts.Spec.VolumeClaimTemplates[0].Name || flags["state-dir"] != image.StateDir {
		t.Errorf("--state-dir=%s: not the volume claim %s at %s", flags["state-dir"], m.sts.Spec.VolumeClaimTemplates[0].Name, image.StateDir)
	}
	// Every $(VAR) in the args is defined.
	for _, ref := range regexp.MustCompile(`\$\(([A-Z_]+)\)`).FindAllStringSubmatch(strings.Join(c.Args, " "), -1) {
		if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == ref[1] }) {
			t.Errorf("args use $(%s), which env does not define", ref[1])
		}
	}

	// Grace: the pod's own grace period + 15 s (cluster leave, admin close, margin).
	var pod struct {
		Spec struct {
			TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal([]byte(m.config.Data[key]), &pod); err != nil || pod.Spec.TerminationGracePeriodSeconds == nil {
		t.Fatalf("pod spec: %v (set terminationGracePeriodSeconds)", err)
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g != *pod.Spec.TerminationGracePeriodSeconds+15 {
		t.Errorf("terminationGracePeriodSeconds %v, want the pod's %d + 15", g, *pod.Spec.TerminationGracePeriodSeconds)
	}

	// Hardening and identity: the image's user, nothing writable but the volumes.
	psc, csc := spec.SecurityContext, c.SecurityContext
	if psc == nil || csc == nil || psc.RunAsUser == nil || *psc.RunAsUser != image.UID || psc.FSGroup == nil || *psc.FSGroup != image.GID ||
		psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
		csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation || csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("security contexts %+v %+v", psc, csc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: requests (cpu, memory) and a memory limit", c.Resources)
	}

	// Disruptions: a quorum of voters stays up.
	if r := *m.sts.Spec.Replicas; m.pdb.Spec.MaxUnavailable == nil || int32(m.pdb.Spec.MaxUnavailable.IntValue()) > (r-1)/2 {
		t.Errorf("PodDisruptionBudget maxUnavailable %v with %d replicas breaks the Raft quorum", m.pdb.Spec.MaxUnavailable, r)
	}

	// kustomize: the resources exist, the image it rewrites is the container's.
	for _, r := range m.kustomize.Resources {
		if _, err := os.Stat(filepath.Join("kubernetes", r)); err != nil {
			t.Errorf("kustomization resource: %v", err)
		}
	}
	if len(m.kustomize.Images) != 1 || m.kustomize.Images[0].Name != c.Image {
		t.Errorf("kustomization images %+v, container image %q", m.kustomize.Images, c.Image)
	}
}

// releaseBinary is the release's binary for this machine.
func releaseBinary(t *testing.T, dir string) string {
	t.Helper()
	rel, err := image.ReadRelease(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range rel.Artifacts {
		if a.Target == deploytest.Platform {
			return filepath.Join(dir, a.File)
		}
	}
	t.Fatalf("release has no %s binary", deploytest.Platform)
	return ""
}

// checkFlags runs `wasmpod ARGS... --help`: the binary parses the whole command line with its
// real flag set (an unknown flag or a bad value fails) and prints help instead of running.
// Each flag is also looked up in the help text, so a flag cobra would take by prefix or a
// hidden one is caught too.
func checkFlags(t *testing.T, bin string, args []string) {
	t.Helper()
	out, err := exec.Command(bin, append(slices.Clone(args), "--help")...).CombinedOutput()
	if err != nil {
		t.Fatalf("wasmpod %s --help: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, a := range args {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			name, _, _ = strings.Cut(name, "=")
			if !regexp.MustCompile(`(?m)^\s+(-\w, )?--` + regexp.QuoteMeta(name) + `\b`).Match(out) {
				t.Errorf("--%s is not in `wasmpod %s --help`", name, args[0])
			}
		}
	}
}

// expand replaces $(VAR) with env's values, as the kubelet does in args.
func expand(s string, env map[string]string) string {
	return regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).ReplaceAllStringFunc(s, func(ref string) string {
		if v, ok := env[ref[2:len(ref)-1]]; ok {
			return v
		}
		return ref
	})
}

// TestStatefulSetRuns runs the StatefulSet the way a kubelet would, without Kubernetes: three
// pods from its template, each in a network namespace of its own (its pod IP) with the image's
// file system, the ConfigMap, the Secret (fresh values, in the example's shape) and a state
// volume mounted where the manifest says, /etc/hosts giving the headless Service's DNS names,
// and the container's exact args with $(POD_NAME) and $(POD_IP) expanded, as the image's user.
// Then: the probes pass on their ports and paths, the ingress answers, the three nodes form one
// cluster (three alive voters, one leader) from the join list, and SIGTERM stops each within
// terminationGracePeriodSeconds with exit code 0. The example Secret's placeholders are refused.
func TestStatefulSetRuns(t *testing.T) {
	if why := deploytest.NetAvailable(); why != "" {
		deploytest.Skip(t, why)
	}
	m := loadManifests(t)
	c, _ := m.container(t)
	spec := m.sts.Spec.Template.Spec
	tarFile, _, err := deploytest.Image()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	img, _, err := deploytest.ReadImage(tarFile, filepath.Join(dir, "layout"), deploytest.Platform)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	gossipKey := make([]byte, 32)
	rand.Read(gossipKey)
	token := make([]byte, 32)
	rand.Read(token)
	secret := map[string]string{"gossip.key": base64.StdEncoding.EncodeToString(gossipKey), "admin.token": hex.EncodeToString(token)}
	for k := range m.secret.StringData {
		if _, ok := secret[k]; !ok {
			t.Fatalf("the example Secret has key %q the test does not fill", k)
		}
	}

	n := deploytest.NewNet(t)
	replicas := int(*m.sts.Spec.Replicas)
	var hosts strings.Builder
	hosts.WriteString("127.0.0.1 localhost\n")
	for i := range replicas {
		name := fmt.Sprintf("%s-%d", m.sts.Name, i)
		fmt.Fprintf(&hosts, "%s %s.%s %s\n", n.IP(10+i), name, m.headless.Name, name)
	}

	// kubelet: one rootfs per pod with the volumes mounted.
	mount := func(rootfs string, secretData map[string]string) {
		for _, vm := range c.VolumeMounts {
			at := filepath.Join(rootfs, vm.MountPath)
			var v *corev1.Volume
			for i := range spec.Volumes {
				if spec.Volumes[i].Name == vm.Name {
					v = &spec.Volumes[i]
				}
			}
			must(t, os.MkdirAll(at, 0o755))
			switch {
			case v == nil: // a volume claim: a fresh volume, owned by root, group-writable for fsGroup
				must(t, os.Chown(at, 0, int(*spec.SecurityContext.FSGroup)))
				must(t, os.Chmod(at, 0o2770))
			case v.ConfigMap != nil:
				for k, val := range m.config.Data {
					must(t, os.WriteFile(filepath.Join(at, k), []byte(val), 0o644))
				}
			case v.Secret != nil:
				for _, it := range v.Secret.Items {
					p := filepath.Join(at, it.Path)
					must(t, os.WriteFile(p, []byte(secretData[it.Key]), 0o600))
					must(t, os.Chown(p, 0, int(*spec.SecurityContext.FSGroup)))
					must(t, os.Chmod(p, os.FileMode(*v.Secret.DefaultMode)))
				}
			case v.EmptyDir != nil:
				must(t, os.Chmod(at, 0o1777))
			default:
				t.Fatalf("volume %s: kind not emulated", v.Name)
			}
		}
		must(t, os.WriteFile(filepath.Join(rootfs, "etc/hosts"), []byte(hosts.String()), 0o644))
	}
	argv := func(env map[string]string) []string {
		out := slices.Clone(cf.Config.Entrypoint)
		for _, a := range c.Args {
			out = append(out, expand(a, env))
		}
		return out
	}
	podEnv := func(i int) (map[string]string, []string) {
		env := map[string]string{}
		for _, e := range c.Env {
			switch {
			case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
				env[e.Name] = fmt.Sprintf("%s-%d", m.sts.Name, i)
			case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
				env[e.Name] = n.IP(10 + i)
			case e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory":
				env[e.Name] = strconv.FormatInt(c.Resources.Limits.Memory().Value(), 10)
			case e.ValueFrom == nil:
				env[e.Name] = e.Value
			default:
				t.Fatalf("env %s: source not emulated", e.Name)
			}
		}
		list := slices.Clone(cf.Config.Env)
		for k, v := range env {
			list = append(list, k+"="+v)
		}
		return env, list
	}

	// The example Secret is refused: its placeholders are not a key.
	{
		rootfs := filepath.Join(dir, "example")
		must(t, deploytest.Rootfs(img, rootfs))
		mount(rootfs, m.secret.StringData)
		env, list := podEnv(0)
		h := deploytest.Start(t, deploytest.Proc{Rootfs: rootfs, Argv: argv(env), Env: list})
		deadline := time.Now().Add(time.Minute)
		for !h.Exited() && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if code := h.StopWithin(time.Second); code == 0 || !strings.Contains(h.Output(), "--gossip-key-file") {
			t.Errorf("the example Secret's placeholder key: exit %d\n%s", code, h.Output())
		}
	}

	type pod struct {
		ip string
		h  *deploytest.Host
	}
	var pods []pod
	for i := range replicas {
		rootfs := filepath.Join(dir, fmt.Sprintf("pod-%d", i))
		must(t, deploytest.Rootfs(img, rootfs))
		mount(rootfs, secret)
		ns := n.AddHost(fmt.Sprintf("pod%d", i), 10+i)
		env, list := podEnv(i)
		pods = append(pods, pod{n.IP(10 + i), deploytest.Start(t, deploytest.Proc{Rootfs: rootfs, Argv: argv(env), Env: list, NetNS: ns})})
	}
	client := n.Client()
	portOf := func(name string) int32 { return port(t, c, name, corev1.ProtocolTCP) }
	url := func(p pod, portName, path string) string {
		return fmt.Sprintf("http://%s%s", net.JoinHostPort(p.ip, strconv.Itoa(int(portOf(portName)))), path)
	}
	waitFor := func(what string, limit time.Duration, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !ok() {
			for i, p := range pods {
				if p.h.Exited() {
					t.Fatalf("pod %d exited while waiting for %s:\n%s", i, what, p.h.Output())
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out after %s waiting for %s", limit, what)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for i, p := range pods {
		for _, pr := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
			waitFor(fmt.Sprintf("pod %d: GET %s", i, pr.HTTPGet.Path), 2*time.Minute, func() bool {
				code, _, _ := deploytest.Get(client, url(p, pr.HTTPGet.Port.StrVal, pr.HTTPGet.Path))
				return code == 200
			})
		}
		code, body, err := deploytest.Get(client, url(p, m.ingress.Spec.Ports[0].TargetPort.StrVal, "/world"))
		if err != nil || code != 200 || body != "hello, world\n" {
			t.Errorf("pod %d ingress: %d %q %v", i, code, body, err)
		}
	}
	var members []struct {
		Name, State   string
		Voter, Leader bool
	}
	waitFor("one cluster of three voters", 2*time.Minute, func() bool {
		_, body, err := deploytest.Get(client, url(pods[replicas-1], "admin", "/v1/members"))
		if err != nil || json.Unmarshal([]byte(body), &members) != nil || len(members) != replicas {
			return false
		}
		leaders := 0
		for _, mb := range members {
			if mb.State != "alive" || !mb.Voter {
				return false
			}
			if mb.Leader {
				leaders++
			}
		}
		return leaders == 1
	})
	t.Logf("members: %+v", members)
	grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	for i := len(pods) - 1; i >= 0; i-- {
		start := time.Now()
		if code := pods[i].h.StopWithin(grace); code != 0 {
			t.Errorf("pod %d: exit code %d after SIGTERM", i, code)
		}
		t.Logf("pod %d stopped in %s", i, time.Since(start).Round(time.Millisecond))
	}
	if t.Failed() {
		for i, p := range pods {
			t.Logf("pod %d:\n%s", i, p.h.Output())
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
