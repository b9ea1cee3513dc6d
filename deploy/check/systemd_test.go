package check

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// unitFile is a systemd unit as key → values per section (a key may repeat).
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, path)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: cannot read line %q", path, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// last is a key's effective value (the last assignment), "" when unset.
func (u unitFile) last(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func (u unitFile) has(section, key string) bool { _, ok := u[section][key]; return ok }

// readEnvFile reads KEY=VALUE lines as systemd's EnvironmentFile= does (without
// its quoting rules, which the examples do not use).
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, path)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			t.Fatalf("%s: not KEY=VALUE: %q", path, line)
		}
		env[k] = v
	}
	return env
}

// systemdDuration parses the spans the kit uses ("45s", "10min", "2h").
func systemdDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(strings.NewReplacer("min", "m", " ", "").Replace(s))
	if err != nil {
		t.Fatalf("time span %q: %v", s, err)
	}
	return d
}

// The units that run clickedge, by mode.
var clickedgeUnits = map[string]string{
	"clickedge-serve.service":  "serve",
	"clickedge-edge.service":   "edge",
	"clickedge-worker.service": "worker",
}

func TestSystemdUnits(t *testing.T) {
	dir := deployPath(t, "systemd")
	for name, mode := range clickedgeUnits {
		t.Run(name, func(t *testing.T) {
			u := parseUnit(t, filepath.Join(dir, name))
			svc := "Service"
			exec := strings.Fields(u.last(svc, "ExecStart"))
			if len(exec) < 2 || exec[0] != "/usr/local/bin/clickedge" || exec[1] != mode {
				t.Fatalf("ExecStart %q: want /usr/local/bin/clickedge %s ...", exec, mode)
			}
			checkArgs(t, name, mode, exec[2:])
			if !slices.Contains(exec, "--data=/var/lib/clickedge") || u.last(svc, "StateDirectory") != "clickedge" {
				t.Errorf("want --data=/var/lib/clickedge with StateDirectory=clickedge, got %q / %q", exec, u.last(svc, "StateDirectory"))
			}
			if mode != "serve" {
				// Edges and workers need the shared secret; it comes as a credential.
				if !slices.Contains(exec, "--secret-file=${CREDENTIALS_DIRECTORY}/click-secret") ||
					!slices.Contains(u[svc]["LoadCredential"], "click-secret:/etc/clickedge/click-secret") {
					t.Errorf("want the click-id secret as LoadCredential + --secret-file, got %q / %q", exec, u[svc]["LoadCredential"])
				}
			}
			user := u.last(svc, "User")
			if u.last(svc, "DynamicUser") != "yes" && (user == "" || user == "root" || user == "0") {
				t.Errorf("User=%q and no DynamicUser: runs as root", user)
			}
			for key, want := range map[string]string{
				"ProtectSystem":           "strict",
				"ProtectHome":             "yes",
				"NoNewPrivileges":         "yes",
				"PrivateTmp":              "yes",
				"PrivateDevices":          "yes",
				"CapabilityBoundingSet":   "",
				"AmbientCapabilities":     "",
				"MemoryDenyWriteExecute":  "yes",
				"SystemCallArchitectures": "native",
				"Restart":                 "on-failure",
			} {
				if !u.has(svc, key) || u.last(svc, key) != want {
					t.Errorf("%s=%q, want %q", key, u.last(svc, key), want)
				}
			}
			if f := u[svc]["SystemCallFilter"]; len(f) == 0 || f[0] != "@system-service" {
				t.Errorf("SystemCallFilter %q, want @system-service first", f)
			}
			for _, fam := range strings.Fields(u.last(svc, "RestrictAddressFamilies")) {
				if !slices.Contains([]string{"AF_INET", "AF_INET6", "AF_UNIX"}, fam) {
					t.Errorf("RestrictAddressFamilies allows %s", fam)
				}
			}
			if !u.has(svc, "RestrictAddressFamilies") {
				t.Error("no RestrictAddressFamilies")
			}
			var envFiles []string
			for _, f := range u[svc]["EnvironmentFile"] {
				if !strings.HasPrefix(f, "-/etc/clickedge/") || !strings.HasSuffix(f, ".env") {
					t.Errorf("EnvironmentFile=%s: want optional files -/etc/clickedge/*.env", f)
				}
				envFiles = append(envFiles, strings.TrimSuffix(filepath.Base(f), ".env"))
			}
			if !slices.Equal(envFiles, []string{"clickedge", mode}) {
				t.Errorf("EnvironmentFile= %v, want clickedge.env then %s.env", envFiles, mode)
			}

			// clickedge's own shutdown bound is drain + flush + 10 s, with the
			// values the example env files set (or the defaults).
			drain, flush := 2*time.Second, 5*time.Second
			for _, f := range envFiles {
				env := readEnvFile(t, filepath.Join(dir, f+".env.example"))
				if v, ok := env["CLICKEDGE_DRAIN_DELAY"]; ok {
					drain = systemdDuration(t, v)
				}
				if v, ok := env["CLICKEDGE_FLUSH_TIMEOUT"]; ok {
					flush = systemdDuration(t, v)
				}
			}
			if stop := systemdDuration(t, u.last(svc, "TimeoutStopSec")); stop <= drain+flush+10*time.Second {
				t.Errorf("TimeoutStopSec=%s, want more than drain %s + flush %s + 10s", stop, drain, flush)
			}
		})
	}
}

func TestSystemdEnvExamples(t *testing.T) {
	dir := deployPath(t, "systemd")
	for file, modes := range map[string][]string{
		"clickedge.env.example": {"serve", "edge", "worker"},
		"serve.env.example":     {"serve"},
		"edge.env.example":      {"edge"},
		"worker.env.example":    {"worker"},
	} {
		env := readEnvFile(t, filepath.Join(dir, file))
		if len(env) == 0 {
			t.Errorf("%s sets nothing", file)
		}
		var names []string
		for k := range env {
			names = append(names, k)
			if k == "CLICKEDGE_SECRET" {
				t.Errorf("%s sets CLICKEDGE_SECRET: it would override the credential", file)
			}
		}
		for _, mode := range modes {
			checkEnvNames(t, file, mode, names)
		}
	}
}

// systemdTempUnits copies deploy/systemd's units into a temporary directory
// with the binaries they start pointed at files that exist here, as
// systemd-analyze verify requires.
func systemdTempUnits(t *testing.T) (dir string, units []string) {
	t.Helper()
	src := deployPath(t, "systemd")
	dir = t.TempDir()
	repl := strings.NewReplacer(
		"/usr/local/bin/clickedge", clickedgeBinary(t),
		"/usr/local/lib/clickedge/geoip.sh", deployPath(t, "geoip.sh"))
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".service") && !strings.HasSuffix(name, ".timer") {
			continue
		}
		b := repl.Replace(string(readFile(t, filepath.Join(src, name))))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, name)
	}
	if len(units) < 3 {
		t.Fatalf("only %v in deploy/systemd", units)
	}
	return dir, units
}

// analyzeVerify runs systemd-analyze verify and returns its complaints about
// the given units (verify exits 0 on mere warnings such as unknown keys, so the
// output is what counts).
func analyzeVerify(t *testing.T, tool, dir string, units []string) (complaints []string, err error) {
	t.Helper()
	cmd := exec.Command(tool, append([]string{"verify", "--man=no"}, units...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		for _, u := range units {
			if strings.Contains(line, u) {
				complaints = append(complaints, line)
				break
			}
		}
	}
	return complaints, err
}

func TestSystemdAnalyzeVerify(t *testing.T) {
	tool := requireTool(t, "systemd-analyze")
	dir, units := systemdTempUnits(t)
	complaints, err := analyzeVerify(t, tool, dir, units)
	if err != nil || len(complaints) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(complaints, "\n"))
	}

	// The harness must see a broken unit: a misspelt key in a copy.
	bad := "clickedge-broken.service"
	b := strings.Replace(string(readFile(t, filepath.Join(dir, "clickedge-edge.service"))),
		"ProtectHome=yes", "ProtectHomes=yes", 1)
	if err := os.WriteFile(filepath.Join(dir, bad), []byte(b), 0o644); err != nil {
		t.Fatal(err)
	}
	if complaints, _ := analyzeVerify(t, tool, dir, []string{bad}); len(complaints) == 0 {
		t.Error("systemd-analyze verify did not report an unknown key: this check cannot fail")
	}
}

var exposure = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

func TestSystemdAnalyzeSecurity(t *testing.T) {
	tool := requireTool(t, "systemd-analyze")
	dir, units := systemdTempUnits(t)
	for _, u := range units {
		if !strings.HasSuffix(u, ".service") {
			continue
		}
		// systemd's own hardening score, 0 (locked down) to 10 (exposed);
		// --threshold (in tenths) makes it exit non-zero above 2.0 ("OK" is
		// below 4.9).
		cmd := exec.Command(tool, "security", "--offline=yes", "--threshold=20", "--no-pager", u)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		m := exposure.FindSubmatch(out)
		if err != nil || m == nil {
			t.Errorf("%s: systemd-analyze security: %v\n%s", u, err, out)
			continue
		}
		t.Logf("%s: exposure %s", u, m[1])
	}
}

// expandSyscallGroup lists the system calls of a systemd-analyze syscall-filter
// group, following nested groups.
func expandSyscallGroup(t *testing.T, tool, group string, seen map[string]bool) map[string]bool {
	t.Helper()
	out, err := exec.Command(tool, "syscall-filter", "--no-pager", group).Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter %s: %v", group, err)
	}
	set := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n")[1:] {
		name := strings.TrimSpace(line)
		switch {
		case name == "" || strings.HasPrefix(name, "#"):
		case strings.HasPrefix(name, "@"):
			if !seen[name] {
				seen[name] = true
				for s := range expandSyscallGroup(t, tool, name, seen) {
					set[s] = true
				}
			}
		default:
			set[name] = true
		}
	}
	return set
}

var (
	straceCall   = regexp.MustCompile(`^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)(?:\(| resumed>)`)
	straceSocket = regexp.MustCompile(`socket\((AF_[A-Z0-9]+)`)
)

// TestSystemdSandboxFitsClickedge runs `clickedge serve` (edge, worker and
// embedded JetStream: every code path the units run) under strace through a
// redirect, a metrics scrape and a graceful stop, and checks that every system
// call it made is allowed by the units' SystemCallFilter, every socket family by
// RestrictAddressFamilies, and that it never maps memory writable and
// executable (MemoryDenyWriteExecute).
func TestSystemdSandboxFitsClickedge(t *testing.T) {
	tool := requireTool(t, "systemd-analyze")
	strace := requireTool(t, "strace")
	u := parseUnit(t, deployPath(t, "systemd", "clickedge-serve.service"))
	filters := u["Service"]["SystemCallFilter"]
	allowed := map[string]bool{}
	for _, f := range filters {
		deny := strings.HasPrefix(f, "~")
		for _, g := range strings.Fields(strings.TrimPrefix(f, "~")) {
			set := map[string]bool{g: true}
			if strings.HasPrefix(g, "@") {
				set = expandSyscallGroup(t, tool, g, map[string]bool{g: true})
			}
			for s := range set {
				if deny {
					delete(allowed, s)
				} else {
					allowed[s] = true
				}
			}
		}
	}
	if len(allowed) < 100 {
		t.Fatalf("SystemCallFilter %q allows only %d calls", filters, len(allowed))
	}
	families := strings.Fields(u.last("Service", "RestrictAddressFamilies"))

	bin := clickedgeBinary(t)
	data := t.TempDir()
	edgePort, metricsPort := freePort(t), freePort(t)
	traceFile := filepath.Join(t.TempDir(), "trace")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, strace, "-f", "-qq", "-o", traceFile, bin, "serve", "--demo",
		"--data="+data,
		fmt.Sprintf("--listen=127.0.0.1:%d", edgePort),
		fmt.Sprintf("--metrics-addr=127.0.0.1:%d", metricsPort),
		"--admin-listen=", "--nats-listen=", "--drain-delay=100ms")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The process is strace; clickedge is its child, the first pid in the trace.
	tracee := func() int {
		b, _ := os.ReadFile(traceFile)
		var pid int
		if _, err := fmt.Sscanf(string(b), "%d ", &pid); err != nil {
			return 0
		}
		return pid
	}
	waited := false
	defer func() {
		if !waited {
			if pid := tracee(); pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	client := &http.Client{Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(url string) (int, error) {
		resp, err := client.Get(url)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	for {
		if code, err := get(fmt.Sprintf("http://127.0.0.1:%d/readyz", metricsPort)); err == nil && code == http.StatusOK {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("clickedge serve under strace did not become ready:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A redirect commits to the outbox and ships to JetStream; the scrape reads
	// /proc for the process collector.
	if code, err := get(fmt.Sprintf("http://127.0.0.1:%d/r/alice", edgePort)); err != nil || code != http.StatusFound {
		t.Errorf("GET /r/alice: %d %v", code, err)
	}
	if code, err := get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)); err != nil || code != http.StatusOK {
		t.Errorf("GET /metrics: %d %v", code, err)
	}
	time.Sleep(300 * time.Millisecond) // let the shipper publish
	pid := tracee()
	if pid <= 0 {
		t.Fatal("no clickedge pid in the strace output")
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	waited = true
	if err != nil {
		t.Fatalf("clickedge serve under strace: %v\n%s", err, logs.String())
	}

	calls := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, traceFile)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var wx []string
	for sc.Scan() {
		line := sc.Text()
		if m := straceCall.FindStringSubmatch(line); m != nil {
			calls[m[1]]++
		}
		if m := straceSocket.FindStringSubmatch(line); m != nil && !slices.Contains(families, m[1]) {
			t.Errorf("socket family %s outside RestrictAddressFamilies=%v: %s", m[1], families, line)
		}
		if (strings.Contains(line, "mmap(") || strings.Contains(line, "mprotect(")) &&
			strings.Contains(line, "PROT_WRITE") && strings.Contains(line, "PROT_EXEC") {
			wx = append(wx, line)
		}
	}
	if len(calls) < 20 {
		t.Fatalf("strace recorded only %v", calls)
	}
	if _, ok := calls["execve"]; !ok {
		t.Fatalf("strace output has no execve: %v", calls)
	}
	var denied []string
	for c := range calls {
		if !allowed[c] {
			denied = append(denied, c)
		}
	}
	slices.Sort(denied)
	if len(denied) > 0 {
		t.Errorf("clickedge used system calls outside SystemCallFilter=%v: %v", filters, denied)
	}
	if len(wx) > 0 {
		t.Errorf("writable+executable mappings, which MemoryDenyWriteExecute=yes refuses:\n%s", strings.Join(wx, "\n"))
	}
	t.Logf("%d distinct system calls, all allowed", len(calls))
}

// TestSystemdSysusers has systemd-sysusers create (dry run, in an empty root)
// the user the units run as.
func TestSystemdSysusers(t *testing.T) {
	tool := requireTool(t, "systemd-sysusers")
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "--root="+root, "--dry-run", deployPath(t, "systemd", "clickedge.sysusers")).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	for name := range clickedgeUnits {
		u := parseUnit(t, deployPath(t, "systemd", name))
		user := u.last("Service", "User")
		if !strings.Contains(string(out), fmt.Sprintf("Creating user '%s'", user)) {
			t.Errorf("%s runs as %q, which clickedge.sysusers does not create:\n%s", name, user, out)
		}
	}
}
