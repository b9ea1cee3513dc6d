// Package check holds the tests of the deploy kit (deploy/): they read the NATS
// configs, compose file, Kubernetes manifests, Helm values, Dockerfile and systemd
// units with the tools that consume them and assert what the kit promises. It is
// its own module so that compose-go, buildkit and the Kubernetes API types stay
// out of clickedge's go.mod.
//
//	cd deploy/check && go test -count=1 ./...
//
// Tests that need an external program (systemd-analyze) skip when it is missing,
// unless CLICKEDGE_REQUIRE_TOOLS=1, which turns the skip into a failure.
package check

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// deployDir is deploy/, the parent of this module's directory.
func deployDir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Dir(filepath.Dir(file))
}

// repoRoot is the root of the clickedge repository.
func repoRoot(t testing.TB) string { return filepath.Dir(deployDir(t)) }

// deployPath joins elem onto deploy/.
func deployPath(t testing.TB, elem ...string) string {
	return filepath.Join(append([]string{deployDir(t)}, elem...)...)
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// requireTool returns the path of an external program, or skips the test when it
// is not installed — unless CLICKEDGE_REQUIRE_TOOLS=1, when it fails instead.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CLICKEDGE_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%s not found on PATH and CLICKEDGE_REQUIRE_TOOLS=1: %v", name, err)
	}
	t.Skipf("%s not found on PATH (set CLICKEDGE_REQUIRE_TOOLS=1 to make this a failure)", name)
	return ""
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
