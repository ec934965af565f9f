package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// The parent project requires goleak in every package with tests. These
// tests start no goroutine of their own.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// kinds maps apiVersion/kind to a new typed object: anything else in the
// manifests is an error, so that nothing goes unchecked.
var kinds = map[string]func() any{
	"v1/Service":                    func() any { return &corev1.Service{} },
	"apps/v1/StatefulSet":           func() any { return &appsv1.StatefulSet{} },
	"v1/Secret":                     func() any { return &corev1.Secret{} },
	"policy/v1/PodDisruptionBudget": func() any { return &policyv1.PodDisruptionBudget{} },
}

// decodeStrict decodes one YAML document into its typed object. Unknown
// fields, duplicate keys and unknown kinds are errors. A document holding
// only comments decodes to nil.
func decodeStrict(doc []byte) (any, error) {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML: %v", err)
	}
	if string(bytes.TrimSpace(j)) == "null" {
		return nil, nil
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return nil, fmt.Errorf("not a Kubernetes object: %v", err)
	}
	newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("unknown kind %q (apiVersion %q): this test decodes only %v", tm.Kind, tm.APIVersion, slices.Sorted(maps.Keys(kinds)))
	}
	obj := newObj()
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return nil, fmt.Errorf("%s: %v", tm.Kind, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: trailing data after the object", tm.Kind)
	}
	// encoding/json matches keys to fields whatever their case; the API
	// server does not, so "clusterIp" must fail here too.
	var generic any
	if err := json.Unmarshal(j, &generic); err != nil {
		return nil, err
	}
	if err := exactKeys(generic, reflect.TypeOf(obj), tm.Kind); err != nil {
		return nil, err
	}
	return obj, nil
}

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

// exactKeys returns an error for the first key of the decoded JSON j that
// names no field of typ with exactly that spelling.
func exactKeys(j any, typ reflect.Type, path string) error {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if reflect.PointerTo(typ).Implements(jsonUnmarshaler) {
		return nil // Quantity, IntOrString, Time: a format of their own
	}
	switch v := j.(type) {
	case map[string]any:
		fields := map[string]reflect.Type{}
		switch typ.Kind() {
		case reflect.Struct:
			fields = jsonFields(typ)
		case reflect.Map:
			for k := range v {
				fields[k] = typ.Elem()
			}
		}
		for k, e := range v {
			ft, ok := fields[k]
			if !ok {
				return fmt.Errorf("%s: unknown field %q (field names are case-sensitive)", path, k)
			}
			if err := exactKeys(e, ft, path+"."+k); err != nil {
				return err
			}
		}
	case []any:
		if typ.Kind() == reflect.Slice {
			for i, e := range v {
				if err := exactKeys(e, typ.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// jsonFields maps the JSON names of a struct's fields to their types,
// with the fields of embedded structs (TypeMeta) inlined.
func jsonFields(typ reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported():
			continue
		case name == "" && f.Anonymous && f.Type.Kind() == reflect.Struct:
			maps.Copy(out, jsonFields(f.Type))
			continue
		case name == "":
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// splitDocuments splits a YAML stream at its "---" lines.
func splitDocuments(b []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimRight(line, " \t") == "---" {
			docs = append(docs, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	return append(docs, cur.Bytes())
}

func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		name, doc, wantErr string
	}{
		{"service", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n", ""},
		{"comments only", "# nothing\n", ""},
		{"unknown field", "apiVersion: v1\nkind: Service\nspec: {clusterIP: None, port: 1}\n", `unknown field "port"`},
		{"field in the wrong case", "apiVersion: v1\nkind: Service\nspec: {clusterIp: None}\n", `unknown field "clusterIp"`},
		{"nested wrong case", "apiVersion: apps/v1\nkind: StatefulSet\nspec: {template: {spec: {containers: [{name: x, readonlyRootFilesystem: true}]}}}\n", `unknown field "readonlyRootFilesystem"`},
		{"map keys are free", "apiVersion: v1\nkind: Secret\nstringData: {Node.Key: x}\nmetadata: {labels: {A: b}}\n", ""},
		{"unknown kind", "apiVersion: v1\nkind: ConfigMap\n", `unknown kind "ConfigMap"`},
		{"wrong apiVersion", "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\n", `unknown kind "PodDisruptionBudget"`},
		{"duplicate key", "apiVersion: v1\nkind: Secret\nkind: Secret\n", "not valid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeStrict([]byte(tt.doc))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// manifests are the objects of k8s/*.yaml, one of each kind.
type manifests struct {
	svc    *corev1.Service
	sts    *appsv1.StatefulSet
	secret *corev1.Secret
	pdb    *policyv1.PodDisruptionBudget
}

func (m manifests) container(t *testing.T) corev1.Container {
	t.Helper()
	cs := m.sts.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("StatefulSet %s has %d containers, want 1", m.sts.Name, len(cs))
	}
	return cs[0]
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no k8s/*.yaml (err %v)", err)
	}
	var m manifests
	seen := map[string]string{} // kind -> where
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocuments(b) {
			where := fmt.Sprintf("%s document %d", f, i+1)
			obj, err := decodeStrict(doc)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if obj == nil {
				continue
			}
			kind := fmt.Sprintf("%T", obj)
			if prev, dup := seen[kind]; dup {
				t.Fatalf("%s: a second %s (the first is %s)", where, kind, prev)
			}
			seen[kind] = where
			switch o := obj.(type) {
			case *corev1.Service:
				m.svc = o
			case *appsv1.StatefulSet:
				m.sts = o
			case *corev1.Secret:
				m.secret = o
			case *policyv1.PodDisruptionBudget:
				m.pdb = o
			}
		}
	}
	if m.svc == nil || m.sts == nil || m.secret == nil || m.pdb == nil {
		t.Fatalf("k8s/*.yaml must hold one Service, StatefulSet, Secret and PodDisruptionBudget; found %v", slices.Sorted(maps.Keys(seen)))
	}
	return m
}

// command is a parsed command line: program, subcommand and its flags.
// Flags are taken as "-name value" or "-name=value": the manifests pass no
// boolean flag.
type command struct {
	program, sub string
	flags        map[string]string
	order        []string // flag names as given
}

func parseCommand(argv []string) (command, error) {
	if len(argv) < 2 {
		return command{}, fmt.Errorf("want a program and a subcommand, got %q", argv)
	}
	c := command{program: argv[0], sub: argv[1], flags: map[string]string{}}
	for i := 2; i < len(argv); i++ {
		a := argv[i]
		if !strings.HasPrefix(a, "-") {
			return c, fmt.Errorf("%q is not a flag (in %q)", a, argv)
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !hasVal {
			if i+1 == len(argv) {
				return c, fmt.Errorf("flag -%s has no value", name)
			}
			i++
			val = argv[i]
		}
		if _, dup := c.flags[name]; dup {
			return c, fmt.Errorf("flag -%s given twice", name)
		}
		c.flags[name] = val
		c.order = append(c.order, name)
	}
	return c, nil
}

// commands returns the container's command line and its preStop one.
func (m manifests) commands(t *testing.T) (serve, preStop command) {
	t.Helper()
	c := m.container(t)
	if len(c.Command) == 0 {
		t.Fatalf("container %s has no command: name the program (the image's ENTRYPOINT) so that the manifests say what they run", c.Name)
	}
	serve, err := parseCommand(append(slices.Clone(c.Command), c.Args...))
	if err != nil {
		t.Fatalf("container %s command/args: %v", c.Name, err)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil {
		t.Fatalf("container %s has no preStop exec hook", c.Name)
	}
	preStop, err = parseCommand(c.Lifecycle.PreStop.Exec.Command)
	if err != nil {
		t.Fatalf("container %s preStop: %v", c.Name, err)
	}
	return serve, preStop
}

// containerPort resolves a port given by name or number.
func containerPort(c corev1.Container, p intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp, true
		}
	}
	return corev1.ContainerPort{}, false
}

func portOf(hostport string) (int32, error) {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(p, 10, 32)
	return int32(n), err
}

func TestManifests(t *testing.T) {
	m := loadManifests(t)
	c := m.container(t)
	serve, preStop := m.commands(t)
	pod := m.sts.Spec.Template

	selectorMatches := func(t *testing.T, what string, sel *metav1.LabelSelector) {
		t.Helper()
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil || s.Empty() {
			t.Fatalf("%s selector %v: empty or invalid (%v)", what, sel, err)
		}
		if !s.Matches(labels.Set(pod.Labels)) {
			t.Errorf("%s selector %q does not match the pod template labels %v", what, s, pod.Labels)
		}
	}

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"labels", func(t *testing.T) {
			for what, l := range map[string]map[string]string{"Service": m.svc.Labels, "StatefulSet": m.sts.Labels,
				"Secret": m.secret.Labels, "PodDisruptionBudget": m.pdb.Labels, "pod template": pod.Labels} {
				if l["app.kubernetes.io/name"] != "rexi" {
					t.Errorf("%s labels %v lack app.kubernetes.io/name: rexi", what, l)
				}
			}
		}},
		{"headless service", func(t *testing.T) {
			if m.sts.Spec.ServiceName != m.svc.Name {
				t.Errorf("StatefulSet serviceName %q, want the Service %q", m.sts.Spec.ServiceName, m.svc.Name)
			}
			if m.svc.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("Service %s clusterIP %q, want None (headless)", m.svc.Name, m.svc.Spec.ClusterIP)
			}
			if !m.svc.Spec.PublishNotReadyAddresses {
				t.Errorf("Service %s must publish not-ready addresses, or peers never find each other", m.svc.Name)
			}
		}},
		{"selectors", func(t *testing.T) {
			selectorMatches(t, "Service", &metav1.LabelSelector{MatchLabels: m.svc.Spec.Selector})
			selectorMatches(t, "StatefulSet", m.sts.Spec.Selector)
			selectorMatches(t, "PodDisruptionBudget", m.pdb.Spec.Selector)
		}},
		{"service ports", func(t *testing.T) {
			for _, sp := range m.svc.Spec.Ports {
				target := sp.TargetPort
				if target == (intstr.IntOrString{}) {
					target = intstr.FromInt32(sp.Port)
				}
				cp, ok := containerPort(c, target)
				switch {
				case !ok:
					t.Errorf("Service port %s targets %s, which container %s does not have", sp.Name, target.String(), c.Name)
				case sp.Name != cp.Name || sp.Port != cp.ContainerPort:
					t.Errorf("Service port %s:%d reaches container port %s:%d; keep names and numbers equal", sp.Name, sp.Port, cp.Name, cp.ContainerPort)
				}
			}
		}},
		{"probes", func(t *testing.T) {
			for what, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
				if p == nil || p.HTTPGet == nil {
					t.Errorf("%s probe is not an HTTP GET", what)
					continue
				}
				if _, ok := containerPort(c, p.HTTPGet.Port); !ok {
					t.Errorf("%s probe port %s is not a container port", what, p.HTTPGet.Port.String())
				}
			}
		}},
		{"listen ports", func(t *testing.T) {
			for _, f := range []struct{ flag, port string }{{"listen", "rexi"}, {"admin", "admin"}, {"peers-dns", "rexi"}} {
				cp, ok := containerPort(c, intstr.FromString(f.port))
				got, err := portOf(serve.flags[f.flag])
				if !ok || err != nil || got != cp.ContainerPort {
					t.Errorf("serve -%s %q: port %d, want container port %s (%d)", f.flag, serve.flags[f.flag], got, f.port, cp.ContainerPort)
				}
			}
			if got, want := preStop.flags["admin"], "127.0.0.1:"+strconv.Itoa(int(mustPort(t, serve.flags["admin"]))); got != want {
				t.Errorf("preStop drain -admin %q, want %q (serve's -admin port on loopback)", got, want)
			}
		}},
		{"env references", func(t *testing.T) {
			defined := map[string]bool{}
			for _, e := range c.Env {
				defined[e.Name] = true
			}
			for _, a := range c.Args {
				for _, ref := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(a, -1) {
					if !defined[ref[1]] {
						t.Errorf("arg %q uses $(%s), which the container's env does not define (Kubernetes would pass it literally)", a, ref[1])
					}
				}
			}
		}},
		{"volumes", func(t *testing.T) {
			vols := map[string]corev1.Volume{}
			for _, v := range pod.Spec.Volumes {
				vols[v.Name] = v
			}
			var secretMounts []corev1.VolumeMount
			for _, vm := range c.VolumeMounts {
				v, ok := vols[vm.Name]
				if !ok {
					t.Errorf("volume mount %s at %s: no such volume", vm.Name, vm.MountPath)
					continue
				}
				if v.Secret != nil {
					secretMounts = append(secretMounts, vm)
					if v.Secret.SecretName != m.secret.Name {
						t.Errorf("volume %s mounts Secret %q, want %q", v.Name, v.Secret.SecretName, m.secret.Name)
					}
					if !vm.ReadOnly {
						t.Errorf("Secret volume %s is mounted read-write at %s", vm.Name, vm.MountPath)
					}
				}
			}
			if len(secretMounts) != 1 {
				t.Fatalf("want one Secret volume mount, got %d", len(secretMounts))
			}
			checkSecretFiles(t, secretMounts[0].MountPath, m.secret, serve, preStop)
		}},
		{"drain grace", func(t *testing.T) {
			grace, err := time.ParseDuration(serve.flags["drain-grace"])
			if err != nil {
				t.Fatalf("serve -drain-grace %q: %v", serve.flags["drain-grace"], err)
			}
			if got := preStop.flags["grace"]; got != serve.flags["drain-grace"] {
				t.Errorf("preStop -grace %q, want serve's -drain-grace %q", got, serve.flags["drain-grace"])
			}
			tgps := int64(corev1.DefaultTerminationGracePeriodSeconds)
			if p := pod.Spec.TerminationGracePeriodSeconds; p != nil {
				tgps = *p
			}
			if time.Duration(tgps)*time.Second <= grace {
				t.Errorf("terminationGracePeriodSeconds %d must exceed -drain-grace %v, or the kubelet kills workers mid-drain", tgps, grace)
			}
		}},
		{"secret placeholders", func(t *testing.T) {
			// Real credentials never go into the repository.
			if len(m.secret.Data) > 0 {
				t.Errorf("Secret %s has data; keep only stringData placeholders", m.secret.Name)
			}
			for k, v := range m.secret.StringData {
				if !strings.Contains(v, "REPLACE_ME") {
					t.Errorf("Secret key %s is not a REPLACE_ME placeholder", k)
				}
			}
		}},
		{"hardening", func(t *testing.T) {
			psc, sc := pod.Spec.SecurityContext, c.SecurityContext
			if psc == nil || sc == nil {
				t.Fatal("pod and container need a securityContext")
			}
			if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
				t.Error("pod securityContext: runAsNonRoot must be true")
			}
			if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Error("pod securityContext: seccompProfile must be RuntimeDefault")
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Error("container securityContext: readOnlyRootFilesystem must be true")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Error("container securityContext: allowPrivilegeEscalation must be false")
			}
			if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
				t.Error("container securityContext: capabilities must drop ALL and add none")
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					t.Errorf("container resources: no %s request", r)
				}
				if _, ok := c.Resources.Limits[r]; !ok {
					t.Errorf("container resources: no %s limit", r)
				}
			}
		}},
		{"memory bounds within the memory limit", func(t *testing.T) {
			// What peers can make a node hold, by its flags (set here, not
			// left to defaults sized for a large host), must fit under
			// GOMEMLIMIT, and that under the container's limit: a greedy
			// peer then meets the node's documented errors, not the OOM
			// killer. Partial frames count 3× (their buffers, SECURITY.md).
			bytes := func(name string) int64 {
				n, err := strconv.ParseInt(serve.flags[name], 10, 64)
				if err != nil || n <= 0 {
					t.Fatalf("serve -%s %q: want a byte count", name, serve.flags[name])
				}
				return n
			}
			held := bytes("max-output-bytes") + 3*bytes("max-partial-bytes") + bytes("max-arg-bytes")
			var soft int64 = -1
			for _, e := range c.Env {
				if e.Name == "GOMEMLIMIT" {
					soft = parseMemLimit(e.Value)
				}
			}
			limit := c.Resources.Limits.Memory().Value()
			if soft <= 0 || held > soft || soft >= limit {
				t.Errorf("node budgets %d MiB, GOMEMLIMIT %d MiB, memory limit %d MiB: want budgets ≤ GOMEMLIMIT < limit", held>>20, soft>>20, limit>>20)
			}
		}},
		{"disruption budget", func(t *testing.T) {
			mu := m.pdb.Spec.MaxUnavailable
			if mu == nil || mu.Type != intstr.Int || mu.IntVal < 1 || m.sts.Spec.Replicas == nil || mu.IntVal >= *m.sts.Spec.Replicas {
				t.Errorf("PodDisruptionBudget maxUnavailable %v: want a number from 1 to replicas-1", mu)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}
}

func mustPort(t *testing.T, hostport string) int32 {
	t.Helper()
	p, err := portOf(hostport)
	if err != nil {
		t.Fatalf("%q: %v", hostport, err)
	}
	return p
}

// checkSecretFiles checks that every file a command reads from the Secret
// mount is a key of the Secret.
func checkSecretFiles(t *testing.T, mountPath string, secret *corev1.Secret, cmds ...command) {
	t.Helper()
	keys := map[string]bool{}
	for k := range secret.StringData {
		keys[k] = true
	}
	for k := range secret.Data {
		keys[k] = true
	}
	prefix := strings.TrimSuffix(mountPath, "/") + "/"
	for _, c := range cmds {
		for _, name := range c.order {
			v := c.flags[name]
			if rest, ok := strings.CutPrefix(v, prefix); ok && !keys[rest] {
				t.Errorf("%s -%s reads %s, but Secret %s has no key %q (keys: %v)", c.sub, name, v, secret.Name, rest, slices.Sorted(maps.Keys(keys)))
			}
		}
	}
}

// dockerfile is what the test reads from the final stage of a Dockerfile.
type dockerfile struct {
	entrypoint []string
	expose     []int32
	user       string
}

func parseDockerfile(b []byte) (dockerfile, error) {
	var d dockerfile
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		rest := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), fields[0]))
		switch strings.ToUpper(fields[0]) {
		case "FROM": // only the final stage counts
			d = dockerfile{}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &d.entrypoint); err != nil {
				return d, fmt.Errorf("ENTRYPOINT %s: want the exec (JSON) form: %v", rest, err)
			}
		case "EXPOSE":
			for _, p := range fields[1:] {
				n, err := strconv.ParseInt(strings.TrimSuffix(p, "/tcp"), 10, 32)
				if err != nil {
					return d, fmt.Errorf("EXPOSE %s: %v", p, err)
				}
				d.expose = append(d.expose, int32(n))
			}
		case "USER":
			d.user = rest
		}
	}
	return d, nil
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	d, err := parseDockerfile(b)
	if err != nil {
		t.Fatal(err)
	}
	m := loadManifests(t)
	c := m.container(t)
	serve, preStop := m.commands(t)
	if len(d.entrypoint) != 1 {
		t.Fatalf("Dockerfile ENTRYPOINT %q: want the binary alone", d.entrypoint)
	}
	for what, prog := range map[string]string{"container command": serve.program, "preStop": preStop.program} {
		if prog != d.entrypoint[0] {
			t.Errorf("%s runs %q, but the image's ENTRYPOINT is %q", what, prog, d.entrypoint[0])
		}
	}
	var ports []int32
	for _, cp := range c.Ports {
		ports = append(ports, cp.ContainerPort)
	}
	slices.Sort(ports)
	slices.Sort(d.expose)
	if !slices.Equal(ports, d.expose) {
		t.Errorf("Dockerfile EXPOSE %v, container ports %v", d.expose, ports)
	}
	uid, _, _ := strings.Cut(d.user, ":")
	if sc := m.sts.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsUser == nil || strconv.FormatInt(*sc.RunAsUser, 10) != uid {
		t.Errorf("Dockerfile USER %q: want the pod's runAsUser as a number", d.user)
	}
}

// repoRoot is the rexi repository: the deploy module lives in its deploy/
// directory, and go test runs in the package directory. REXI_REPO_ROOT
// overrides it (for a copy of deploy/ kept elsewhere).
func repoRoot(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("REXI_REPO_ROOT")
	if dir == "" {
		dir = ".."
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatalf("the rexi repository is not at %s (%v); set REXI_REPO_ROOT", dir, err)
	}
	if mod := modulePath(b); mod != "github.com/rexi-go/rexi" {
		t.Fatalf("%s/go.mod declares module %q, not github.com/rexi-go/rexi; set REXI_REPO_ROOT", dir, mod)
	}
	return dir
}

func modulePath(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// buildRexinode builds ./cmd/rexinode of the repository into a temporary
// directory.
func buildRexinode(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rexinode")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/rexinode")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "GOWORK=off") // build the repository's own module, whatever go.work is around
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/rexinode in %s: %v\n%s", cmd.Dir, err, out)
	}
	return bin
}

// runHelp runs rexinode with args and returns what it printed. -h exits 0
// or 2 depending on the version; anything else is a failure.
func runHelp(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	// Flags also come from REXI_* variables and REXI_CONFIG: keep ours out.
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "REXI_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 2) {
		t.Fatalf("rexinode %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// helpFlags are the flag names in Go flag package help ("  -listen string").
func helpFlags(help string) map[string]bool {
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([A-Za-z0-9][A-Za-z0-9_.-]*)`).FindAllStringSubmatch(help, -1) {
		flags[m[1]] = true
	}
	return flags
}

// hasCommand reports whether rexinode lists sub among its commands and
// does not call it unknown.
func hasCommand(usage, subHelp, sub string) bool {
	listed := regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(sub) + `\s`).MatchString(usage)
	return listed && !strings.Contains(subHelp, "unknown command")
}

// mentionsPath reports whether text names path as a whole word.
func mentionsPath(text, path string) bool {
	return regexp.MustCompile(`(^|[^\w/])` + regexp.QuoteMeta(path) + `($|[^\w/])`).MatchString(text)
}

// TestRexinodeHasWhatManifestsUse checks the manifests' contract with
// rexinode: each subcommand and flag they pass, each REXI_* variable they
// set and each HTTP path they probe.
func TestRexinodeHasWhatManifestsUse(t *testing.T) {
	m := loadManifests(t)
	c := m.container(t)
	serve, preStop := m.commands(t)
	bin := buildRexinode(t)
	usage := runHelp(t, bin, "help")
	serveHelp := runHelp(t, bin, "serve", "-h")

	// REXI_X sets flag x of serve.
	serveUses := slices.Clone(serve.order)
	for _, e := range c.Env {
		if rest, ok := strings.CutPrefix(e.Name, "REXI_"); ok {
			serveUses = append(serveUses, strings.ReplaceAll(strings.ToLower(rest), "_", "-"))
		}
	}

	for _, tt := range []struct {
		cmd  command
		uses []string
	}{
		{serve, serveUses},
		{preStop, preStop.order},
	} {
		t.Run(tt.cmd.sub, func(t *testing.T) {
			help := serveHelp
			if tt.cmd.sub != "serve" {
				help = runHelp(t, bin, tt.cmd.sub, "-h")
			}
			if !hasCommand(usage, help, tt.cmd.sub) {
				t.Fatalf("rexinode has no %q subcommand (its flags %s are checked once it exists)", tt.cmd.sub, dashed(tt.uses))
			}
			known := helpFlags(help)
			var missing []string
			for _, f := range tt.uses {
				if !known[f] {
					missing = append(missing, f)
				}
			}
			if len(missing) > 0 {
				t.Errorf("rexinode %s lacks flags the manifests use: %s", tt.cmd.sub, dashed(missing))
			}
		})
	}

	t.Run("admin paths", func(t *testing.T) {
		var missing []string
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
			if p != nil && p.HTTPGet != nil && !mentionsPath(serveHelp, p.HTTPGet.Path) {
				missing = append(missing, p.HTTPGet.Path)
			}
		}
		if len(missing) > 0 {
			t.Errorf("rexinode serve -h (the -admin flag's help) does not list the probed paths: %s", strings.Join(missing, ", "))
		}
	})
}

func dashed(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "-" + n
	}
	return strings.Join(out, ", ")
}

// parseMemLimit reads a GOMEMLIMIT value: bytes, or a number with a
// B, KiB, MiB or GiB suffix; -1 when it is neither.
func parseMemLimit(v string) int64 {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}, {"", 0}} {
		if num, ok := strings.CutSuffix(v, u.suffix); ok {
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil {
				return -1
			}
			return n << u.shift
		}
	}
	return -1
}
