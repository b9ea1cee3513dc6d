package check

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// checkVersion is stamped into the binary the tests build.
const checkVersion = "deploy-check"

// workDir holds what the tests build; removed when they end.
var workDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "clickedge-deploy-check-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var builtBinary struct {
	once sync.Once
	path string
	err  error
}

// clickedgeBinary builds cmd/clickedge once, the way deploy/Dockerfile's build
// stage does — CGO_ENABLED=0 and its -ldflags, with VERSION=checkVersion — and
// returns its path. -trimpath is checked in the Dockerfile but left out here:
// it changes the build cache key of every package, so the build would share
// nothing with the test binary's (run the checks with CGO_ENABLED=0 to share
// the most); it affects neither static linking nor the version stamp.
func clickedgeBinary(t testing.TB) string {
	t.Helper()
	b := &builtBinary
	b.once.Do(func() {
		df := parseDockerfile(t)
		run := goBuildRun(t, df.stages[0])
		ld := strings.ReplaceAll(ldflagsOf(t, run), versionMarker, checkVersion)
		b.path = filepath.Join(workDir, "clickedge")
		args := []string{"build", "-ldflags", ld, "-o", b.path, "./cmd/clickedge"}
		cmd := exec.Command("go", args...)
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

var helpFlag = regexp.MustCompile(`^  --([a-z0-9-]+) \((CLICKEDGE_[A-Z0-9_]+)\)$`)

var flagCache sync.Map // mode → map[string]string

// modeFlags returns the flags of `clickedge <mode>` mapped to their environment
// variables, read from the built binary's --help.
func modeFlags(t testing.TB, mode string) map[string]string {
	t.Helper()
	if v, ok := flagCache.Load(mode); ok {
		return v.(map[string]string)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(clickedgeBinary(t), mode, "--help")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("clickedge %s --help: %v\n%s", mode, err, stderr.String())
	}
	flags := map[string]string{}
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		if m := helpFlag.FindStringSubmatch(sc.Text()); m != nil {
			flags[m[1]] = m[2]
		}
	}
	if len(flags) < 5 {
		t.Fatalf("clickedge %s --help listed only %v", mode, flags)
	}
	flagCache.Store(mode, flags)
	return flags
}

// modeEnv returns the set of CLICKEDGE_* variables `clickedge <mode>` reads.
func modeEnv(t testing.TB, mode string) map[string]bool {
	env := map[string]bool{}
	for _, e := range modeFlags(t, mode) {
		env[e] = true
	}
	return env
}

// otherEnv are variables the kit may set that are not clickedge flags.
var otherEnv = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GODEBUG": true, "TZ": true}

// checkEnvNames fails for a CLICKEDGE_* name that `clickedge <mode>` does not
// read (a typo, or a flag of another mode) or any other unknown name.
func checkEnvNames(t *testing.T, where, mode string, names []string) {
	t.Helper()
	known := modeEnv(t, mode)
	for _, n := range names {
		if !known[n] && !otherEnv[n] {
			t.Errorf("%s: %s is not read by clickedge %s", where, n, mode)
		}
	}
}

// checkArgs fails for a --flag that `clickedge <mode>` does not define.
func checkArgs(t *testing.T, where, mode string, args []string) {
	t.Helper()
	flags := modeFlags(t, mode)
	for _, a := range args {
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, "=")
		if _, ok := flags[name]; !ok {
			t.Errorf("%s: clickedge %s has no flag --%s", where, mode, name)
		}
	}
}
