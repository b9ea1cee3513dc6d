package check

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// dockerfile is deploy/Dockerfile as BuildKit's frontend parses it.
type dockerfile struct {
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
	lint     []string // lint warnings and parser warnings
}

var parsedDockerfile struct {
	once sync.Once
	df   dockerfile
	err  error
}

func parseDockerfile(t testing.TB) dockerfile {
	t.Helper()
	p := &parsedDockerfile
	p.once.Do(func() {
		f, err := os.Open(deployPath(t, "Dockerfile"))
		if err != nil {
			p.err = err
			return
		}
		defer f.Close()
		res, err := parser.Parse(f)
		if err != nil {
			p.err = fmt.Errorf("parse deploy/Dockerfile: %w", err)
			return
		}
		for _, w := range res.Warnings {
			p.df.lint = append(p.df.lint, w.Short)
		}
		lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
			p.df.lint = append(p.df.lint, fmt.Sprintf("%s: %s (line %v)", rule, msg, loc))
		}})
		p.df.stages, p.df.metaArgs, p.err = instructions.Parse(res.AST, lint)
	})
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p.df
}

// goBuildRun is the build stage's RUN that compiles ./cmd/clickedge.
func goBuildRun(t testing.TB, st instructions.Stage) string {
	t.Helper()
	for _, c := range st.Commands {
		if r, ok := c.(*instructions.RunCommand); ok {
			line := strings.Join(r.CmdLine, " ")
			if strings.Contains(line, "go build") && strings.Contains(line, "./cmd/clickedge") {
				return line
			}
		}
	}
	t.Fatalf("stage %q has no RUN ... go build ... ./cmd/clickedge", st.Name)
	return ""
}

// versionMarker stands for $VERSION when the build command line is split.
const versionMarker = "@VERSION@"

// ldflagsOf returns the argument of -ldflags in a shell command line, as the
// shell would pass it, with versionMarker where $VERSION is expanded.
func ldflagsOf(t testing.TB, line string) string {
	t.Helper()
	words, err := shell.NewLex('\\').ProcessWords(line, shell.EnvsFromSlice([]string{"VERSION=" + versionMarker}))
	if err != nil {
		t.Fatalf("split %q: %v", line, err)
	}
	for i, w := range words {
		if w == "-ldflags" && i+1 < len(words) {
			return words[i+1]
		}
		if v, ok := strings.CutPrefix(w, "-ldflags="); ok {
			return v
		}
	}
	t.Fatalf("no -ldflags in %q", line)
	return ""
}

func TestDockerfile(t *testing.T) {
	df := parseDockerfile(t)
	if len(df.lint) > 0 {
		t.Errorf("BuildKit lint warnings:\n  %s", strings.Join(df.lint, "\n  "))
	}
	if len(df.stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build (build + runtime)", len(df.stages))
	}
	build, final := df.stages[0], df.stages[len(df.stages)-1]

	// The Go of the build image is not older than go.mod asks for.
	var goVersion string
	for _, a := range df.metaArgs {
		for _, kv := range a.Args {
			if kv.Key == "GO_VERSION" && kv.Value != nil {
				goVersion = *kv.Value
			}
		}
	}
	out, err := exec.Command("go", "mod", "edit", "-json", filepath.Join(repoRoot(t), "go.mod")).Output()
	if err != nil {
		t.Fatal(err)
	}
	var mod struct{ Go string }
	if err := json.Unmarshal(out, &mod); err != nil {
		t.Fatal(err)
	}
	if goVersion == "" || semverLess("v"+goVersion, "v"+mod.Go) {
		t.Errorf("ARG GO_VERSION=%q is older than go.mod's go %s (the golang image will not download a newer toolchain)", goVersion, mod.Go)
	}
	if build.Name != "build" || !strings.HasPrefix(build.BaseName, "golang:") {
		t.Errorf("first stage %q FROM %q, want a golang image named build", build.Name, build.BaseName)
	}
	if !strings.HasPrefix(final.BaseName, "gcr.io/distroless/static") && final.BaseName != "scratch" {
		t.Errorf("runtime stage FROM %q, want distroless static or scratch", final.BaseName)
	}

	run := goBuildRun(t, build)
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath"} {
		if !strings.Contains(run, want) {
			t.Errorf("build RUN lacks %s: %s", want, run)
		}
	}
	ld := ldflagsOf(t, run)
	for _, want := range []string{"-s", "-w", "-X", "main.version=" + versionMarker} {
		if !slices.Contains(strings.Fields(ld), want) {
			t.Errorf("-ldflags %q lacks %s", ld, want)
		}
	}
	if !stageHasArg(build, "VERSION") {
		t.Error("build stage does not declare ARG VERSION, so -X main.version=${VERSION} is always empty")
	}

	var (
		user        string
		volumes     []string
		ports       []string
		entrypoint  *instructions.EntrypointCommand
		healthcheck *instructions.HealthCheckCommand
		copied      []string
	)
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.VolumeCommand:
			volumes = append(volumes, c.Volumes...)
		case *instructions.ExposeCommand:
			ports = append(ports, c.Ports...)
		case *instructions.EntrypointCommand:
			entrypoint = c
		case *instructions.HealthCheckCommand:
			healthcheck = c
		case *instructions.CopyCommand:
			if c.From != build.Name {
				t.Errorf("runtime stage copies from %q, want only from the build stage", c.From)
			}
			copied = append(copied, c.DestPath)
		case *instructions.RunCommand:
			t.Errorf("runtime stage has a RUN (%v): distroless has no shell", c.CmdLine)
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || uid == "0" || uid == "root" {
		t.Errorf("runtime USER %q: want a non-root user", user)
	} else if strings.Trim(uid, "0123456789") != "" {
		t.Errorf("runtime USER %q: want a numeric uid so that Kubernetes' runAsNonRoot can check it", user)
	}
	if !slices.Contains(volumes, "/data") {
		t.Errorf("VOLUME %v, want /data", volumes)
	}
	for _, p := range []string{"8080", "9090"} {
		if !slices.Contains(ports, p) {
			t.Errorf("EXPOSE %v lacks %s", ports, p)
		}
	}
	if entrypoint == nil || entrypoint.PrependShell || len(entrypoint.CmdLine) == 0 ||
		entrypoint.CmdLine[0] != "/usr/local/bin/clickedge" || !slices.Contains(copied, "/usr/local/bin/clickedge") {
		t.Errorf("ENTRYPOINT %+v: want exec form [/usr/local/bin/clickedge], copied from the build stage", entrypoint)
	}
	if healthcheck == nil || len(healthcheck.Health.Test) < 2 || healthcheck.Health.Test[0] != "CMD" ||
		!slices.Contains(copied, healthcheck.Health.Test[1]) {
		t.Errorf("HEALTHCHECK %+v: want exec form running a binary the image contains", healthcheck)
	}
}

// semverLess compares dotted version numbers (v1.26 < v1.26.8 < v1.27).
func semverLess(a, b string) bool {
	pa := strings.Split(strings.TrimPrefix(a, "v"), ".")
	pb := strings.Split(strings.TrimPrefix(b, "v"), ".")
	for i := 0; i < max(len(pa), len(pb)); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

func stageHasArg(st instructions.Stage, name string) bool {
	for _, c := range st.Commands {
		if a, ok := c.(*instructions.ArgCommand); ok {
			for _, kv := range a.Args {
				if kv.Key == name {
					return true
				}
			}
		}
	}
	return false
}

// TestDockerfileBuildCommand compiles clickedge with the Dockerfile's own go
// build flags and checks the result: static, and stamped with the version.
func TestDockerfileBuildCommand(t *testing.T) {
	bin := clickedgeBinary(t)
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("clickedge version: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "clickedge "+checkVersion; got != want {
		t.Errorf("clickedge version = %q, want %q (-X main.version is not reaching the binary)", got, want)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary has a dynamic loader (PT_INTERP): not static, will not run on distroless static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("binary links %v dynamically", libs)
	}
	if f.Section(".symtab") != nil {
		t.Error("binary has a symbol table: -ldflags -s did not apply")
	}
}

// TestDockerHealthProbe builds the probe the Dockerfile writes inline and checks
// its exit codes against a ready, a draining and an absent server.
func TestDockerHealthProbe(t *testing.T) {
	df := parseDockerfile(t)
	var src string
	for _, c := range df.stages[0].Commands {
		if cp, ok := c.(*instructions.CopyCommand); ok {
			for _, sc := range cp.SourceContents {
				if cp.DestPath == "/probe/main.go" {
					src = sc.Data
				}
			}
		}
	}
	if src == "" {
		t.Fatal("no inline COPY <<... /probe/main.go in the build stage")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	probe := filepath.Join(dir, "clickedge-probe")
	cmd := exec.Command("go", "build", "-o", probe, "main.go")
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the probe: %v\n%s", err, out)
	}
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	defer srv.Close()
	for _, tc := range []struct {
		name   string
		status int
		url    string
		want   int
	}{
		{"ready", http.StatusOK, srv.URL + "/readyz", 0},
		{"draining", http.StatusServiceUnavailable, srv.URL + "/readyz", 1},
		{"wrong path", http.StatusOK, srv.URL + "/nope", 1},
		{"down", http.StatusOK, deadURL + "/readyz", 1},
	} {
		status = tc.status
		err := exec.Command(probe, tc.url).Run()
		got := 0
		if ee, ok := err.(*exec.ExitError); ok {
			got = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s: probe exit %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestDockerignore checks deploy/Dockerfile.dockerignore with the pattern
// matcher BuildKit uses: everything `go build ./cmd/clickedge` reads is in the
// context, local state and secrets are not.
func TestDockerignore(t *testing.T) {
	f, err := os.Open(deployPath(t, "Dockerfile.dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	excluded := func(rel string) bool {
		ex, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		if err != nil {
			t.Fatal(err)
		}
		return ex
	}

	root := repoRoot(t)
	needed := []string{"go.mod", "go.sum"}
	cmd := exec.Command("go", "list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Module,Standard", "./cmd/clickedge")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			Dir                 string
			GoFiles, EmbedFiles []string
			Standard            bool
			Module              *struct{ Main bool }
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Standard || p.Module == nil || !p.Module.Main {
			continue
		}
		for _, name := range append(p.GoFiles, p.EmbedFiles...) {
			rel, err := filepath.Rel(root, filepath.Join(p.Dir, name))
			if err != nil {
				t.Fatal(err)
			}
			needed = append(needed, rel)
		}
	}
	if len(needed) < 10 {
		t.Fatalf("go list found only %v", needed)
	}
	for _, rel := range needed {
		if excluded(rel) {
			t.Errorf("%s is needed by go build ./cmd/clickedge but the .dockerignore excludes it", rel)
		}
	}
	for _, rel := range []string{"data/secret", "data/edge.db", ".git/config", "clickedge", "sink.test",
		"sink/outbox_test.go", "edge/testdata/x", "deploy/compose.yaml", "docs/admin-api.md", "bench/out/x"} {
		if !excluded(rel) {
			t.Errorf("%s would be sent to the Docker build context", rel)
		}
	}
}
