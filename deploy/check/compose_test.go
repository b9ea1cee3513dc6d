package check

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"
)

// loadCompose loads a compose file as `docker compose` does: interpolation
// with env, merge keys, path resolution and validation against the Compose
// JSON schema.
func loadCompose(t *testing.T, path string, env map[string]string) (*types.Project, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return loader.LoadWithContext(ctx, types.ConfigDetails{
		WorkingDir:  filepath.Dir(path),
		ConfigFiles: []types.ConfigFile{{Filename: path}},
		Environment: env,
	}, func(o *loader.Options) {
		o.ResolvePaths = true
	})
}

var clickedgeNATSURLs = []string{"nats://nats-1:4222", "nats://nats-2:4222", "nats://nats-3:4222"}

func TestComposeSchemaValidationCatchesMistakes(t *testing.T) {
	// The loader must reject what the schema forbids, or the test below proves
	// nothing.
	bad := filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(bad, []byte("services:\n  x:\n    image: a\n    restartt: always\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadCompose(t, bad, nil); err == nil {
		t.Fatal("compose-go accepted an unknown service key: schema validation is off")
	}
}

func TestCompose(t *testing.T) {
	path := deployPath(t, "compose.yaml")
	p, err := loadCompose(t, path, map[string]string{})
	if err != nil {
		t.Fatalf("docker compose would reject deploy/compose.yaml: %v", err)
	}
	// With every documented variable set, too.
	if _, err := loadCompose(t, path, map[string]string{
		"CLICKEDGE_VERSION": "1.2.3", "CLICKEDGE_ADMIN_TOKEN": strings.Repeat("t", 32), "CLICKEDGE_DEMO": "true",
		"NATS_LEAF_PASSWORD": "x", "GRAFANA_ADMIN_PASSWORD": "y", "CLICKEDGE_TRUSTED_PROXIES": "10.0.0.0/8",
	}); err != nil {
		t.Errorf("with variables set: %v", err)
	}

	want := []string{"edge1", "edge2", "grafana", "nats-1", "nats-2", "nats-3", "prometheus", "secrets-init", "worker"}
	var got []string
	for name := range p.Services {
		got = append(got, name)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}

	// Published ports stay on loopback.
	for name, s := range p.Services {
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %s:%d on %q, want 127.0.0.1", name, port.Published, port.Target, port.HostIP)
			}
		}
	}

	// NATS: the cluster configs of deploy/nats, each server with its own volume
	// at the config's store_dir and a health check on its monitoring port.
	t.Setenv("NATS_LEAF_PASSWORD", "x")
	dataVolumes := map[string]string{}
	for i, name := range []string{"nats-1", "nats-2", "nats-3"} {
		s := p.Services[name]
		file := fmt.Sprintf("cluster-%d.conf", i+1)
		if !strings.HasPrefix(s.Image, "nats:") {
			t.Errorf("%s image %q, want the official nats image", name, s.Image)
		}
		if !slices.Contains(s.Command, "/etc/nats/"+file) {
			t.Errorf("%s command %q does not load /etc/nats/%s", name, s.Command, file)
		}
		opts := loadNATSConfig(t, file)
		var cfgMount, store bool
		for _, v := range s.Volumes {
			switch {
			case v.Type == types.VolumeTypeBind && v.Target == "/etc/nats":
				cfgMount = v.Source == deployPath(t, "nats") && v.ReadOnly
			case v.Type == types.VolumeTypeVolume && v.Target == opts.StoreDir:
				store = true
				dataVolumes[name] = v.Source
			}
		}
		if !cfgMount {
			t.Errorf("%s: deploy/nats is not mounted read-only at /etc/nats", name)
		}
		if !store {
			t.Errorf("%s: no named volume at the JetStream store_dir %s", name, opts.StoreDir)
		}
		if s.HealthCheck == nil || !strings.Contains(strings.Join(s.HealthCheck.Test, " "), "8222/healthz") || opts.HTTPPort != 8222 {
			t.Errorf("%s: health check %v against monitoring port %d", name, s.HealthCheck, opts.HTTPPort)
		}
		if s.Hostname != name {
			t.Errorf("%s hostname %q: the routes in cluster-common.conf name the servers nats-1..3", name, s.Hostname)
		}
	}

	// clickedge: one image built from deploy/Dockerfile, edge and worker against
	// all three servers, the worker creating R3 streams.
	for name, mode := range map[string]string{"worker": "worker", "edge1": "edge", "edge2": "edge"} {
		s := p.Services[name]
		if s.Build == nil || s.Build.Context != repoRoot(t) || s.Build.Dockerfile != "deploy/Dockerfile" {
			t.Errorf("%s build %+v, want context the repository root and deploy/Dockerfile", name, s.Build)
		} else if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Error(err)
		}
		if len(s.Command) == 0 || s.Command[0] != mode {
			t.Fatalf("%s command %q, want %s ...", name, s.Command, mode)
		}
		checkArgs(t, name, mode, s.Command[1:])
		var env []string
		for k := range s.Environment {
			env = append(env, k)
		}
		checkEnvNames(t, name, mode, env)
		var natsArg string
		for _, a := range s.Command[1:] {
			if v, ok := strings.CutPrefix(a, "--nats="); ok {
				natsArg = v
			}
		}
		if urls := strings.Split(natsArg, ","); !slices.Equal(urls, clickedgeNATSURLs) {
			t.Errorf("%s --nats=%q, want all three servers %v", name, natsArg, clickedgeNATSURLs)
		}
		if mode == "worker" && !slices.Contains(s.Command, "--replicas=3") {
			t.Errorf("worker command %q lacks --replicas=3", s.Command)
		}
		// Its own data volume, and the secret file inside a mounted volume.
		secret := s.Environment["CLICKEDGE_SECRET_FILE"]
		var data, secretMounted bool
		for _, v := range s.Volumes {
			if v.Target == "/data" && v.Type == types.VolumeTypeVolume {
				data = true
				for other, src := range dataVolumes {
					if src == v.Source {
						t.Errorf("%s shares data volume %s with %s", name, src, other)
					}
				}
				dataVolumes[name] = v.Source
			}
			if secret != nil && strings.HasPrefix(*secret, v.Target+"/") {
				secretMounted = true
			}
		}
		if !data {
			t.Errorf("%s: no named volume at /data (the image's CLICKEDGE_DATA)", name)
		}
		if !secretMounted {
			t.Errorf("%s: CLICKEDGE_SECRET_FILE %v is not on a mounted volume", name, secret)
		}
		if s.HealthCheck == nil || len(s.HealthCheck.Test) < 2 || s.HealthCheck.Test[0] != "CMD" ||
			s.HealthCheck.Test[1] != "/usr/local/bin/clickedge-probe" {
			t.Errorf("%s health check %+v: want the image's clickedge-probe (distroless has no shell)", name, s.HealthCheck)
		}
		if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= 17*time.Second {
			t.Errorf("%s stop_grace_period %v: want more than drain + flush + 10 s", name, s.StopGracePeriod)
		}
		for _, dep := range []string{"nats-1", "nats-2", "nats-3"} {
			if d, ok := s.DependsOn[dep]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s does not wait for %s to be healthy", name, dep)
			}
		}
		if d, ok := s.DependsOn["secrets-init"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s does not wait for the secret to be generated", name)
		}
	}
	ids := map[string]bool{}
	for _, name := range []string{"edge1", "edge2"} {
		id := p.Services[name].Environment["CLICKEDGE_EDGE_ID"]
		if id == nil || ids[*id] {
			t.Errorf("%s: CLICKEDGE_EDGE_ID %v missing or not unique", name, id)
		} else {
			ids[*id] = true
		}
	}

	// Prometheus and Grafana read deploy/prometheus and deploy/grafana.
	mounts := map[string]string{}
	for _, name := range []string{"prometheus", "grafana"} {
		for _, v := range p.Services[name].Volumes {
			if v.Type == types.VolumeTypeBind {
				mounts[v.Target] = v.Source
			}
		}
	}
	for target, src := range map[string]string{
		"/etc/prometheus/prometheus.yml":        "prometheus/prometheus.yml",
		"/etc/prometheus/alerts.yml":            "prometheus/alerts.yml",
		"/etc/grafana/provisioning/datasources": "grafana/provisioning/datasources",
		"/etc/grafana/provisioning/dashboards":  "grafana/provisioning/dashboards",
		"/var/lib/grafana/dashboards":           "grafana/dashboards",
	} {
		if mounts[target] != deployPath(t, src) {
			t.Errorf("%s is mounted from %q, want deploy/%s", target, mounts[target], src)
		}
	}
	if !slices.Contains(p.Services["prometheus"].Command, "--config.file=/etc/prometheus/prometheus.yml") {
		t.Errorf("prometheus command %q does not load the mounted config", p.Services["prometheus"].Command)
	}
	for _, name := range []string{"prometheus", "grafana"} {
		if p.Services[name].HealthCheck == nil {
			t.Errorf("%s has no health check", name)
		}
	}

	checkPrometheusTargets(t, p)
}

// checkPrometheusTargets checks, when deploy/prometheus/prometheus.yml exists
// (it is maintained separately), that its static targets are services of this
// compose project and its rule files are mounted.
func checkPrometheusTargets(t *testing.T, p *types.Project) {
	path := deployPath(t, "prometheus", "prometheus.yml")
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		t.Logf("%s does not exist yet; not cross-checked", path)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		RuleFiles     []string `json:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, _, _ := strings.Cut(target, ":")
				if _, ok := p.Services[host]; !ok && host != "localhost" && host != "127.0.0.1" {
					t.Errorf("prometheus.yml job %s scrapes %s, which is not a compose service", sc.JobName, target)
				}
			}
		}
	}
	for _, rf := range cfg.RuleFiles {
		if !filepath.IsAbs(rf) {
			rf = filepath.Join("/etc/prometheus", rf)
		}
		found := false
		for _, v := range p.Services["prometheus"].Volumes {
			if matched, _ := filepath.Match(rf, v.Target); matched || v.Target == rf {
				found = true
			}
		}
		if !found {
			t.Errorf("prometheus.yml loads rule file %s, which compose does not mount", rf)
		}
	}
}
