package check

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// natsChartValues are value names of the official NATS Helm chart, 1.x
// (nats-io/k8s, helm/charts/nats/values.yaml), as documented there; a name
// ending in ".*" takes any keys below it (free-form maps: merge, patch, env,
// topology spread constraints keyed by topology key, ...). A key outside this
// list in nats-values.yaml is a typo or a 0.x name (the 1.x chart ignores
// unknown values silently, so nothing else would notice).
var natsChartValues = []string{
	"global.image.pullPolicy", "global.image.pullSecretNames", "global.image.registry", "global.labels.*",
	"nameOverride", "fullnameOverride", "namespaceOverride",

	"config.cluster.enabled", "config.cluster.port", "config.cluster.replicas", "config.cluster.noAdvertise",
	"config.cluster.routeURLs.*", "config.cluster.tls.*", "config.cluster.merge.*", "config.cluster.patch",

	"config.jetstream.enabled", "config.jetstream.domain", "config.jetstream.uniqueTag",
	"config.jetstream.fileStore.enabled", "config.jetstream.fileStore.dir", "config.jetstream.fileStore.maxSize",
	"config.jetstream.fileStore.pvc.enabled", "config.jetstream.fileStore.pvc.size",
	"config.jetstream.fileStore.pvc.storageClassName", "config.jetstream.fileStore.pvc.name",
	"config.jetstream.fileStore.pvc.merge.*", "config.jetstream.fileStore.pvc.patch",
	"config.jetstream.memoryStore.enabled", "config.jetstream.memoryStore.maxSize",
	"config.jetstream.merge.*", "config.jetstream.patch",

	"config.nats.port", "config.nats.tls.*",
	"config.leafnodes.enabled", "config.leafnodes.port", "config.leafnodes.tls.*",
	"config.leafnodes.merge.*", "config.leafnodes.patch",
	"config.websocket.*", "config.mqtt.*", "config.gateway.*",
	"config.monitor.enabled", "config.monitor.port", "config.monitor.tls.*",
	"config.profiling.enabled", "config.profiling.port",
	"config.resolver.*",
	"config.serverNamePrefix",
	"config.merge.*", "config.patch",

	"container.image.repository", "container.image.tag", "container.image.pullPolicy",
	"container.image.registry", "container.image.fullImageName",
	"container.ports.*", "container.env.*", "container.merge.*", "container.patch",

	"reloader.enabled", "reloader.image.*", "reloader.env.*", "reloader.natsVolumeMountPrefixes",
	"reloader.merge.*", "reloader.patch",

	"promExporter.enabled", "promExporter.image.*", "promExporter.port", "promExporter.env.*",
	"promExporter.merge.*", "promExporter.patch", "promExporter.monitorDomain",
	"promExporter.podMonitor.enabled", "promExporter.podMonitor.merge.*", "promExporter.podMonitor.patch",
	"promExporter.podMonitor.name",

	"service.enabled", "service.ports.*", "service.merge.*", "service.patch", "service.name",
	"statefulSet.merge.*", "statefulSet.patch", "statefulSet.name",
	"podTemplate.configChecksumAnnotation", "podTemplate.topologySpreadConstraints.*",
	"podTemplate.merge.*", "podTemplate.patch",
	"headlessService.merge.*", "headlessService.patch", "headlessService.name",
	"configMap.merge.*", "configMap.patch", "configMap.name",

	"natsBox.enabled", "natsBox.contexts.*", "natsBox.defaultContextName",
	"natsBox.container.*", "natsBox.podTemplate.*", "natsBox.deployment.*",
	"natsBox.contentsSecret.*", "natsBox.contextsSecret.*", "natsBox.serviceAccount.*",

	"serviceAccount.enabled", "serviceAccount.merge.*", "serviceAccount.patch", "serviceAccount.name",
	"podDisruptionBudget.enabled", "podDisruptionBudget.merge.*", "podDisruptionBudget.patch",
	"podDisruptionBudget.name",
	"networkPolicy.*",
	"extraResources",
}

// valuePaths flattens a values tree into dotted key paths of its leaves.
func valuePaths(prefix string, v any, out *[]string) {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		*out = append(*out, prefix)
		return
	}
	for k, sub := range m {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		valuePaths(p, sub, out)
	}
}

func documentedValue(path string) bool {
	for _, d := range natsChartValues {
		if base, ok := strings.CutSuffix(d, ".*"); ok {
			if path == base || strings.HasPrefix(path, base+".") {
				return true
			}
		} else if path == d {
			return true
		}
	}
	return false
}

// lookup walks a values tree.
func lookup(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func loadNATSValues(t *testing.T) map[string]any {
	t.Helper()
	var values map[string]any
	if err := yaml.UnmarshalStrict(readFile(t, deployPath(t, "k8s", "nats-values.yaml")), &values); err != nil {
		t.Fatalf("nats-values.yaml: %v", err)
	}
	return values
}

func TestNATSHelmValues(t *testing.T) {
	values := loadNATSValues(t)
	var paths []string
	valuePaths("", values, &paths)
	slices.Sort(paths)
	for _, p := range paths {
		if !documentedValue(p) {
			t.Errorf("nats-values.yaml sets %s, which is not a value of the NATS chart 1.x", p)
		}
	}
	if documentedValue("nats.jetstream.enabled") || documentedValue("cluster.enabled") {
		t.Fatal("the 0.x names are accepted: the allowlist is broken")
	}

	for path, want := range map[string]any{
		"config.cluster.enabled":                 true,
		"config.cluster.replicas":                float64(3),
		"config.jetstream.enabled":               true,
		"config.jetstream.fileStore.enabled":     true,
		"config.jetstream.fileStore.pvc.enabled": true,
		"config.jetstream.merge.sync_interval":   "always",
		"config.monitor.enabled":                 true,
	} {
		if got := lookup(values, path); got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	if size, ok := lookup(values, "config.jetstream.fileStore.pvc.size").(string); !ok {
		t.Error("no config.jetstream.fileStore.pvc.size")
	} else if q, err := resource.ParseQuantity(size); err != nil || q.Value() < 10<<30 {
		t.Errorf("PVC size %q: %v (want at least 10Gi)", size, err)
	}

	// The same domain as the VM cluster configs, so leaf-edge.conf fits both.
	t.Setenv("NATS_LEAF_PASSWORD", "x")
	if d, want := lookup(values, "config.jetstream.domain"), loadNATSConfig(t, "cluster-1.conf").JetStreamDomain; d != want {
		t.Errorf("config.jetstream.domain %v, want %q as in cluster-common.conf", d, want)
	}

	// The server version is the one these tests run (go.mod) and compose uses.
	tag, _ := lookup(values, "container.image.tag").(string)
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/nats-io/nats-server/v2").Output()
	if err != nil {
		t.Fatalf("go list -m nats-server: %v", err)
	}
	tested := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	if !strings.HasPrefix(tag, tested+"-") && tag != tested {
		t.Errorf("container.image.tag %q, want nats-server %s, the version deploy/check tests the settings with", tag, tested)
	}
	p, err := loadCompose(t, deployPath(t, "compose.yaml"), map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if img := p.Services["nats-1"].Image; img != "nats:"+tag {
		t.Errorf("compose runs %s, the Helm values nats:%s", img, tag)
	}
}

var chartRaw = regexp.MustCompile(`"<<\s+(.*?)\s+>>"`)

// TestNATSHelmValuesRenderedConfig builds the nats.conf the chart would render
// from nats-values.yaml — the chart's own settings for a 3-replica JetStream
// cluster, with the values' merge blocks on top, serialised as the chart does
// (JSON, "<< x >>" unquoted) — and has nats-server parse it: an unknown or
// misspelt key in a merge block fails here.
func TestNATSHelmValuesRenderedConfig(t *testing.T) {
	values := loadNATSValues(t)
	js := map[string]any{
		"store_dir":        lookup(values, "config.jetstream.fileStore.dir"),
		"max_file_store":   fmt.Sprintf("<< %s >>", lookup(values, "config.jetstream.fileStore.pvc.size")),
		"max_memory_store": 0,
	}
	if d, ok := lookup(values, "config.jetstream.domain").(string); ok {
		js["domain"] = d
	}
	if m, ok := lookup(values, "config.jetstream.merge").(map[string]any); ok {
		for k, v := range m {
			js[k] = v
		}
	}
	conf := map[string]any{
		"server_name":            "nats-0",
		"port":                   4222,
		"http_port":              lookup(values, "config.monitor.port"),
		"lame_duck_duration":     "30s",
		"lame_duck_grace_period": "10s",
		"cluster": map[string]any{
			"name": "nats", "port": 6222, "no_advertise": true,
			"routes": []string{"nats://nats-0.nats-headless:6222", "nats://nats-1.nats-headless:6222", "nats://nats-2.nats-headless:6222"},
		},
		"jetstream": js,
	}
	if m, ok := lookup(values, "config.merge").(map[string]any); ok {
		for k, v := range m {
			conf[k] = v
		}
	}
	// Like the chart's toPrettyRawJson: no HTML escaping of < and >.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(conf); err != nil {
		t.Fatal(err)
	}
	rendered := chartRaw.ReplaceAll(buf.Bytes(), []byte("$1"))
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, rendered, 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server rejects the config rendered from nats-values.yaml: %v\n%s", err, rendered)
	}
	if !o.JetStream || !o.SyncAlways || o.MaxPayload < 8<<20 || o.JetStreamMaxStore < 10<<30 {
		t.Errorf("rendered config: jetstream %v, sync always %v, max_payload %d, max_file_store %d",
			o.JetStream, o.SyncAlways, o.MaxPayload, o.JetStreamMaxStore)
	}
}
