package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsEnv(t *testing.T) {
	env := map[string]string{"CLICKEDGE_IP_PRIVACY": "drop", "CLICKEDGE_LISTEN": "127.0.0.1:1", "CLICKEDGE_DRAIN_DELAY": "3s"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	c, err := parseFlags("edge", []string{"--listen", "127.0.0.1:2"}, io.Discard, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if c.IPPrivacy != "drop" || c.Listen != "127.0.0.1:2" || c.DrainDelay != 3*time.Second {
		t.Errorf("config = %+v: want env for unset flags, the flag where given", c)
	}
	env["CLICKEDGE_DRAIN_DELAY"] = "soon"
	if _, err := parseFlags("edge", nil, io.Discard, lookup); err == nil || !strings.Contains(err.Error(), "CLICKEDGE_DRAIN_DELAY") {
		t.Errorf("bad env value: err = %v, want one naming the variable", err)
	}
	if _, err := parseFlags("worker", []string{"--listen", "x"}, io.Discard, lookup); err == nil {
		t.Error("worker accepted the edge-only --listen")
	}
}

func TestHelpNamesEveryOperatorFlag(t *testing.T) {
	var buf bytes.Buffer
	c, err := parseFlags("serve", []string{"--help"}, &buf, func(string) (string, bool) { return "", false })
	if c != nil || err != nil {
		t.Fatalf("--help: config %v, err %v", c, err)
	}
	for _, f := range []string{"--listen", "--metrics-addr", "--data", "--nats", "--catalog", "--geoip", "--trusted-proxies", "--ip-privacy", "--demo", "CLICKEDGE_TRUSTED_PROXIES"} {
		if !strings.Contains(buf.String(), f) {
			t.Errorf("serve --help lacks %s", f)
		}
	}
}

func TestRunUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"launch"}, "unknown command"},
		{[]string{"edge", "--data", t.TempDir(), "--metrics-addr", ""}, "--secret"},
		{[]string{"serve", "--data", t.TempDir(), "--ip-privacy", "maybe", "--listen", "127.0.0.1:0", "--metrics-addr", "", "--nats-listen", ""}, "--ip-privacy"},
	}
	for _, tt := range tests {
		err := run(context.Background(), tt.args, io.Discard, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) || exitCode(err) != 2 {
			t.Errorf("run(%q) = %v, want a usage error about %q", tt.args, err, tt.want)
		}
	}
}

// TestREADMEDocumentsEveryFlag: every flag of every command has a row in
// README's flag table naming the commands that take it.
func TestREADMEDocumentsEveryFlag(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if name, ok := strings.CutPrefix(line, "| `--"); ok {
			if i := strings.Index(name, "`"); i > 0 {
				rows[name[:i]] = line
			}
		}
	}
	for _, mode := range []string{"serve", "edge", "worker"} {
		var help bytes.Buffer
		if _, err := parseFlags(mode, []string{"--help"}, &help, func(string) (string, bool) { return "", false }); err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(help.String(), "\n") {
			name, ok := strings.CutPrefix(line, "  --")
			if !ok {
				continue
			}
			name = strings.Fields(name)[0]
			row, ok := rows[name]
			if !ok {
				t.Errorf("README has no row for --%s", name)
				continue
			}
			cmds := strings.Split(row, "|")[2]
			if !strings.Contains(cmds, mode) && !strings.Contains(cmds, "all") {
				t.Errorf("README row of --%s does not list %s: %q", name, mode, cmds)
			}
		}
	}
}
