package check

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// k8sObject is one decoded manifest document.
type k8sObject struct {
	Kind, Name string
	Obj        any // *appsv1.StatefulSet, *corev1.Service, ...
}

// newK8sObject returns an empty typed object for apiVersion/kind.
func newK8sObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, nil
	}
	return nil, fmt.Errorf("unexpected %s %s", apiVersion, kind)
}

// decodeK8s decodes every document of a multi-document YAML stream into the
// Kubernetes API types, strictly: an unknown or duplicated field is an error,
// as `kubectl apply --validate=strict` would have it.
func decodeK8s(data []byte) ([]k8sObject, error) {
	var objs []k8sObject
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, err
		}
		if tm.Kind == "" {
			// Only comments.
			var m map[string]any
			if err := yaml.Unmarshal(doc, &m); err == nil && len(m) == 0 {
				continue
			}
		}
		obj, err := newK8sObject(tm.APIVersion, tm.Kind)
		if err != nil {
			return nil, err
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s: %w", tm.Kind, err)
		}
		meta := obj.(metav1.Object)
		objs = append(objs, k8sObject{Kind: tm.Kind, Name: meta.GetName(), Obj: obj})
	}
}

func TestK8sStrictDecodingCatchesMistakes(t *testing.T) {
	bad := "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: x\nspec:\n  replica: 2\n"
	if _, err := decodeK8s([]byte(bad)); err == nil {
		t.Fatal("strict decoding accepted spec.replica: unknown fields would pass unnoticed")
	}
}

// TestK8sManifests decodes each manifest file of deploy/k8s on its own.
func TestK8sManifests(t *testing.T) {
	files, err := filepath.Glob(deployPath(t, "k8s", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range files {
		switch filepath.Base(f) {
		case "kustomization.yaml", "nats-values.yaml":
			continue
		}
		objs, err := decodeK8s(readFile(t, f))
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
			continue
		}
		if len(objs) == 0 {
			t.Errorf("%s: no objects", filepath.Base(f))
		}
		for _, o := range objs {
			if errs := validation.IsDNS1123Subdomain(o.Name); len(errs) > 0 {
				t.Errorf("%s %s: bad name: %v", o.Kind, o.Name, errs)
			}
		}
		seen += len(objs)
	}
	if seen < 8 {
		t.Errorf("only %d objects in deploy/k8s", seen)
	}
}

// kustomizeBuild runs kustomize (the library behind kubectl apply -k) over a
// copy of deploy/k8s in memory, with secrets.env made from its example.
func kustomizeBuild(t *testing.T) []k8sObject {
	t.Helper()
	fs := filesys.MakeFsInMemory()
	src := deployPath(t, "k8s")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		// A local secrets.env (git-ignored) is never read: the example stands in.
		if e.IsDir() || e.Name() == "secrets.env" {
			continue
		}
		if err := fs.WriteFile(filepath.Join("/k8s", e.Name()), readFile(t, filepath.Join(src, e.Name()))); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.WriteFile("/k8s/secrets.env", readFile(t, filepath.Join(src, "secrets.env.example"))); err != nil {
		t.Fatal(err)
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, "/k8s")
	if err != nil {
		t.Fatalf("kustomize build deploy/k8s: %v", err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeK8s(out)
	if err != nil {
		t.Fatalf("kustomize output: %v", err)
	}
	return objs
}

func find[T any](objs []k8sObject) map[string]*T {
	m := map[string]*T{}
	for _, o := range objs {
		if v, ok := o.Obj.(*T); ok {
			m[o.Name] = v
		}
	}
	return m
}

// workload is what the checks need of a StatefulSet or Deployment.
type workload struct {
	kind, name  string
	replicas    int32
	selector    *metav1.LabelSelector
	template    corev1.PodTemplateSpec
	serviceName string
	claims      []corev1.PersistentVolumeClaim
}

func TestK8sKustomizeBuild(t *testing.T) {
	objs := kustomizeBuild(t)
	for _, o := range objs {
		if o.Kind == "Namespace" {
			continue
		}
		if ns := o.Obj.(metav1.Object).GetNamespace(); ns != "clickedge" {
			t.Errorf("%s %s in namespace %q, want clickedge", o.Kind, o.Name, ns)
		}
	}
	configMaps := find[corev1.ConfigMap](objs)
	secrets := find[corev1.Secret](objs)
	services := find[corev1.Service](objs)
	var workloads []workload
	for name, s := range find[appsv1.StatefulSet](objs) {
		workloads = append(workloads, workload{"StatefulSet", name, ptrOr(s.Spec.Replicas, 1), s.Spec.Selector,
			s.Spec.Template, s.Spec.ServiceName, s.Spec.VolumeClaimTemplates})
	}
	for name, d := range find[appsv1.Deployment](objs) {
		workloads = append(workloads, workload{"Deployment", name, ptrOr(d.Spec.Replicas, 1), d.Spec.Selector,
			d.Spec.Template, "", nil})
	}

	// The generated Secret: hashed name, the keys the pods reference.
	if len(secrets) != 1 {
		t.Fatalf("secrets %v, want the one clickedge-secrets-<hash> from secretGenerator", keys(secrets))
	}
	for name, s := range secrets {
		if !strings.HasPrefix(name, "clickedge-secrets-") {
			t.Errorf("secret %s: want clickedge-secrets-<hash>", name)
		}
		for _, k := range []string{"CLICKEDGE_SECRET", "CLICKEDGE_ADMIN_TOKEN"} {
			if _, ok := s.Data[k]; !ok {
				t.Errorf("secret %s lacks %s (secrets.env.example)", name, k)
			}
		}
	}

	modes := map[string]string{}
	for _, w := range workloads {
		t.Run(w.name, func(t *testing.T) {
			checkWorkload(t, w, configMaps, secrets, services)
			if c := w.template.Spec.Containers; len(c) > 0 && len(c[0].Args) > 0 {
				modes[w.name] = c[0].Args[0]
			}
		})
	}
	var edges, workers int
	for _, w := range workloads {
		switch modes[w.name] {
		case "edge":
			edges++
			if w.replicas < 2 {
				t.Errorf("%s: %d replicas, want at least 2 edges", w.name, w.replicas)
			}
		case "worker":
			workers++
			if w.kind != "StatefulSet" || w.replicas != 1 {
				t.Errorf("%s: %s with %d replicas; the worker is a single writer: a StatefulSet of 1", w.name, w.kind, w.replicas)
			}
		}
	}
	if edges != 1 || workers != 1 {
		t.Errorf("%d edge and %d worker workloads, want one of each", edges, workers)
	}

	// Services select pods, by ports those pods have.
	for name, svc := range services {
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		var matched []workload
		for _, w := range workloads {
			if len(svc.Spec.Selector) > 0 && sel.Matches(labels.Set(w.template.Labels)) {
				matched = append(matched, w)
			}
		}
		if len(matched) == 0 {
			t.Errorf("service %s selects no workload", name)
			continue
		}
		for _, p := range svc.Spec.Ports {
			for _, w := range matched {
				if !hasContainerPort(w.template.Spec, p.TargetPort) {
					t.Errorf("service %s port %s: %s has no container port %s", name, p.Name, w.name, p.TargetPort.String())
				}
			}
		}
	}
	for name, pdb := range find[policyv1.PodDisruptionBudget](objs) {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, w := range workloads {
			if sel.Matches(labels.Set(w.template.Labels)) {
				n++
			}
		}
		if n == 0 {
			t.Errorf("PodDisruptionBudget %s selects nothing", name)
		}
	}

	// The optional ServiceMonitor scrapes port "metrics" of Services that
	// have one.
	mon, err := decodeK8s(readFile(t, deployPath(t, "k8s", "servicemonitor.yaml")))
	if err != nil || len(mon) != 1 {
		t.Fatalf("servicemonitor.yaml: %v %v", mon, err)
	}
	sm := mon[0].Obj.(*monitoringv1.ServiceMonitor)
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	scraped := map[string]bool{}
	for name, svc := range services {
		if !sel.Matches(labels.Set(svc.Labels)) {
			continue
		}
		for _, p := range svc.Spec.Ports {
			for _, ep := range sm.Spec.Endpoints {
				if ep.Port == p.Name {
					scraped[name] = true
				}
			}
		}
	}
	for _, want := range []string{"clickedge-edge-headless", "clickedge-worker"} {
		if !scraped[want] {
			t.Errorf("the ServiceMonitor does not scrape %s (scrapes %v)", want, scraped)
		}
	}
}

func checkWorkload(t *testing.T, w workload, configMaps map[string]*corev1.ConfigMap,
	secrets map[string]*corev1.Secret, services map[string]*corev1.Service) {
	sel, err := metav1.LabelSelectorAsSelector(w.selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(w.template.Labels)) {
		t.Errorf("selector %v does not match the pod labels %v (%v)", w.selector, w.template.Labels, err)
	}
	spec := w.template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want clickedge alone", len(spec.Containers))
	}
	c := spec.Containers[0]
	if len(c.Args) == 0 || (c.Args[0] != "edge" && c.Args[0] != "worker") {
		t.Fatalf("args %q: want edge or worker", c.Args)
	}
	mode := c.Args[0]
	checkArgs(t, w.name, mode, c.Args[1:])

	// Image: pinned by kustomization.yaml's images.
	name, tag, ok := strings.Cut(c.Image[strings.LastIndex(c.Image, "/")+1:], ":")
	if !ok || tag == "" || tag == "latest" || name != "clickedge" {
		t.Errorf("image %q: want clickedge with a pinned tag", c.Image)
	}
	if c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("imagePullPolicy %q", c.ImagePullPolicy)
	}

	// Environment: names clickedge reads, from objects that exist.
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			t.Errorf("envFrom %+v: only ConfigMaps expected", ef)
			continue
		}
		cm, ok := configMaps[ef.ConfigMapRef.Name]
		if !ok {
			t.Errorf("envFrom ConfigMap %s does not exist", ef.ConfigMapRef.Name)
			continue
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
			s, ok := secrets[ref.SecretKeyRef.Name]
			if !ok {
				t.Errorf("env %s: secret %s does not exist (kustomize did not rewrite the reference?)", e.Name, ref.SecretKeyRef.Name)
			} else if _, ok := s.Data[ref.SecretKeyRef.Key]; !ok {
				t.Errorf("env %s: secret has no key %s", e.Name, ref.SecretKeyRef.Key)
			}
		}
	}
	var names []string
	for k := range env {
		names = append(names, k)
	}
	checkEnvNames(t, w.name, mode, names)
	if _, ok := env["CLICKEDGE_SECRET"]; !ok {
		t.Error("no CLICKEDGE_SECRET: edges and workers need the shared click-id secret")
	}
	if mode == "edge" {
		if _, ok := env["CLICKEDGE_EDGE_ID"]; !ok {
			t.Error("no CLICKEDGE_EDGE_ID")
		}
	}

	// Probes: /readyz and /healthz on the metrics listener.
	_, metricsPort, err := net.SplitHostPort(env["CLICKEDGE_METRICS_ADDR"])
	if err != nil || !strings.HasPrefix(env["CLICKEDGE_METRICS_ADDR"], "0.0.0.0:") {
		t.Errorf("CLICKEDGE_METRICS_ADDR %q: want 0.0.0.0:<port> so the kubelet can probe it", env["CLICKEDGE_METRICS_ADDR"])
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		want := map[string]string{"readiness": "/readyz", "liveness": "/healthz"}[name]
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want {
			t.Errorf("%s probe %+v: want GET %s", name, p, want)
			continue
		}
		if port := containerPort(c, p.HTTPGet.Port); fmt.Sprint(port) != metricsPort {
			t.Errorf("%s probe on port %s (%d), want the metrics port %s", name, p.HTTPGet.Port.String(), port, metricsPort)
		}
	}

	// Security: non-root, read-only root, no privilege, no capabilities.
	psc, csc := spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", psc)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod seccompProfile is not RuntimeDefault")
	}
	if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
		csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
		t.Errorf("container securityContext %+v: want readOnlyRootFilesystem, no privilege escalation, drop ALL", csc)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the service account token is mounted; clickedge never talks to the API server")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}

	// /data (CLICKEDGE_DATA in the image) on a volume that outlives the pod.
	var data *corev1.VolumeMount
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == "/data" {
			data = &c.VolumeMounts[i]
		}
	}
	if data == nil {
		t.Fatal("nothing mounted at /data")
	}
	persistent := slices.ContainsFunc(w.claims, func(pvc corev1.PersistentVolumeClaim) bool { return pvc.Name == data.Name })
	for _, v := range spec.Volumes {
		if v.Name == data.Name && v.PersistentVolumeClaim != nil {
			persistent = true
		}
	}
	if !persistent {
		t.Errorf("/data is volume %q, not a PersistentVolumeClaim: the %s's bbolt file would not survive the pod", data.Name, mode)
	}
	if w.kind == "StatefulSet" {
		svc, ok := services[w.serviceName]
		if !ok || svc.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("serviceName %q is not a headless Service here", w.serviceName)
		}
	}

	// Grace period longer than clickedge's own shutdown bound.
	drain, flush := 2*time.Second, 5*time.Second
	if v, ok := env["CLICKEDGE_DRAIN_DELAY"]; ok {
		drain, _ = time.ParseDuration(v)
	}
	if v, ok := env["CLICKEDGE_FLUSH_TIMEOUT"]; ok {
		flush, _ = time.ParseDuration(v)
	}
	grace := 30 * time.Second
	if spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}
	if grace <= drain+flush+10*time.Second {
		t.Errorf("terminationGracePeriodSeconds %s, want more than drain %s + flush %s + 10s", grace, drain, flush)
	}
}

func containerPort(c corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}

func hasContainerPort(spec corev1.PodSpec, p intstr.IntOrString) bool {
	for _, c := range spec.Containers {
		if containerPort(c, p) != 0 {
			return true
		}
	}
	return false
}

func ptrOr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
