package check

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clickedge/clickedge/attribution"
	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// natsCommand is one `nats ...` line of the README's pre-create block.
type natsCommand struct {
	words []string          // the whole command line, split as a shell would
	args  []string          // positional arguments after "nats <noun> add"
	flags map[string]string // --name value, --name=value; "" for switches
}

var natsSwitches = map[string]bool{"pull": true, "defaults": true, "no-allow-direct": true}

// readmeNATSCommands returns the README's `nats stream|kv|consumer add` lines.
func readmeNATSCommands(t *testing.T) []natsCommand {
	t.Helper()
	var cmds []natsCommand
	lex := shell.NewLex('\\')
	for _, line := range strings.Split(string(readFile(t, deployPath(t, "README.md"))), "\n") {
		if !strings.HasPrefix(line, "nats ") {
			continue
		}
		words, err := lex.ProcessWords(line, shell.EnvsFromSlice(nil))
		if err != nil {
			t.Fatalf("README: %q: %v", line, err)
		}
		if len(words) < 4 || words[2] != "add" {
			continue
		}
		c := natsCommand{words: words, flags: map[string]string{}}
		for i := 3; i < len(words); i++ {
			w := words[i]
			name, ok := strings.CutPrefix(w, "--")
			if !ok {
				c.args = append(c.args, w)
				continue
			}
			if n, v, ok := strings.Cut(name, "="); ok {
				c.flags[n] = v
			} else if natsSwitches[name] {
				c.flags[name] = ""
			} else if i+1 < len(words) {
				c.flags[name] = words[i+1]
				i++
			}
		}
		cmds = append(cmds, c)
	}
	return cmds
}

// runWorker starts the real attribution worker against nc, as `clickedge
// worker --replicas 1` does, and waits until its two consumers exist.
func runWorker(t *testing.T, ctx context.Context, js jetstream.JetStream, nc *nats.Conn) {
	t.Helper()
	store := attribution.NewStore(filepath.Join(t.TempDir(), "worker.db"))
	if err := store.Open(); err != nil {
		t.Fatal(err)
	}
	minter, err := redirect.NewMinter([]byte("deploy-check-click-secret"))
	if err != nil {
		t.Fatal(err)
	}
	w := &attribution.Worker{Store: store, NC: nc, JS: js, Minter: minter,
		Streams: sink.StreamConfig{Replicas: 1}, KVReplicas: 1}
	if err := w.Start(ctx); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(func() { w.Stop(); store.Close() })
	for _, c := range [][2]string{{sink.ClickStream, attribution.DefaultDurable},
		{sink.EventStream, attribution.DefaultDurable + attribution.DefaultEventDurableSuffix}} {
		for {
			if _, err := js.Consumer(ctx, c[0], c[1]); err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("worker did not create consumer %s on %s", c[1], c[0])
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// jsSnapshot is the configuration of everything clickedge creates.
type jsSnapshot struct {
	Streams   map[string]jetstream.StreamConfig
	Consumers map[string]jetstream.ConsumerConfig
}

func snapshot(t *testing.T, ctx context.Context, js jetstream.JetStream) jsSnapshot {
	t.Helper()
	s := jsSnapshot{Streams: map[string]jetstream.StreamConfig{}, Consumers: map[string]jetstream.ConsumerConfig{}}
	for _, name := range []string{sink.ClickStream, sink.EventStream, "KV_" + sink.CatalogBucket} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		s.Streams[name] = st.CachedInfo().Config
	}
	for _, c := range [][2]string{{sink.ClickStream, attribution.DefaultDurable},
		{sink.EventStream, attribution.DefaultDurable + attribution.DefaultEventDurableSuffix}} {
		cons, err := js.Consumer(ctx, c[0], c[1])
		if err != nil {
			t.Fatalf("consumer %s/%s: %v", c[0], c[1], err)
		}
		s.Consumers[c[0]+"/"+c[1]] = cons.CachedInfo().Config
	}
	return s
}

// TestREADMEJetStreamObjects starts the real worker on the single-server
// config and checks the README's table and `nats` commands against the streams,
// bucket and consumers it created.
func TestREADMEJetStreamObjects(t *testing.T) {
	s := startNATS(t, forTest(t, loadNATSConfig(t, "single.conf")))
	nc := connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runWorker(t, ctx, js, nc)
	got := snapshot(t, ctx, js)
	kv, err := js.KeyValue(ctx, sink.CatalogBucket)
	if err != nil {
		t.Fatal(err)
	}
	kvStatus, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}

	readme := string(readFile(t, deployPath(t, "README.md")))
	for _, name := range []string{sink.ClickStream, sink.EventStream, sink.CatalogBucket, sink.CatalogKey,
		attribution.DefaultDurable, attribution.DefaultDurable + attribution.DefaultEventDurableSuffix,
		sink.ClickSubjectPrefix + ">", sink.EventSubjectPrefix + ">", sink.APISubjectPrefix + ">", sink.APIQueueGroup} {
		if !strings.Contains(readme, "`"+name+"`") {
			t.Errorf("README does not name `%s`", name)
		}
	}

	cmds := readmeNATSCommands(t)
	if len(cmds) != 5 {
		t.Fatalf("README has %d `nats ... add` commands, want 2 streams, 1 bucket, 2 consumers", len(cmds))
	}
	dur := func(c natsCommand, flag string) time.Duration {
		d, err := time.ParseDuration(c.flags[flag])
		if err != nil {
			t.Errorf("%s --%s=%q: %v", c.words[1], flag, c.flags[flag], err)
		}
		return d
	}
	num := func(c natsCommand, flag string) int64 {
		n, err := strconv.ParseInt(c.flags[flag], 10, 64)
		if err != nil {
			t.Errorf("%s --%s=%q: %v", c.words[1], flag, c.flags[flag], err)
		}
		return n
	}
	check := func(what string, gotV, wantV any) {
		if !reflect.DeepEqual(gotV, wantV) {
			t.Errorf("README %s: the command says %v, the worker creates %v", what, wantV, gotV)
		}
	}
	for _, c := range cmds {
		if c.words[1] != "consumer" && c.flags["replicas"] != "3" {
			t.Errorf("%s: --replicas %q, want 3 (the cluster case the text describes)", strings.Join(c.words[:4], " "), c.flags["replicas"])
		}
		switch c.words[1] {
		case "stream":
			name := c.args[0]
			cfg, ok := got.Streams[name]
			if !ok {
				t.Errorf("README creates stream %s, which clickedge does not use", name)
				continue
			}
			check(name+" subjects", cfg.Subjects, []string{c.flags["subjects"]})
			check(name+" description", cfg.Description, c.flags["description"])
			check(name+" storage", cfg.Storage.String(), map[string]string{"file": "File", "memory": "Memory"}[c.flags["storage"]])
			check(name+" retention", strings.ToLower(cfg.Retention.String()), c.flags["retention"])
			check(name+" discard", map[jetstream.DiscardPolicy]string{jetstream.DiscardOld: "old", jetstream.DiscardNew: "new"}[cfg.Discard], c.flags["discard"])
			check(name+" max age", cfg.MaxAge, dur(c, "max-age"))
			check(name+" duplicate window", cfg.Duplicates, dur(c, "dupe-window"))
			check(name+" max msgs", cfg.MaxMsgs, num(c, "max-msgs"))
			check(name+" max bytes", cfg.MaxBytes, num(c, "max-bytes"))
			check(name+" max msgs per subject", cfg.MaxMsgsPerSubject, num(c, "max-msgs-per-subject"))
			check(name+" max msg size", int64(cfg.MaxMsgSize), num(c, "max-msg-size"))
			_, noDirect := c.flags["no-allow-direct"]
			check(name+" allow direct", cfg.AllowDirect, !noDirect)
		case "kv":
			check("kv bucket", c.args[0], sink.CatalogBucket)
			check("kv history", kvStatus.History(), num(c, "history"))
			check("kv storage", got.Streams["KV_"+sink.CatalogBucket].Storage.String(), "File")
			check("kv description", got.Streams["KV_"+sink.CatalogBucket].Description, c.flags["description"])
		case "consumer":
			key := c.args[0] + "/" + c.args[1]
			cfg, ok := got.Consumers[key]
			if !ok {
				t.Errorf("README creates consumer %s, which clickedge does not use", key)
				continue
			}
			if _, pull := c.flags["pull"]; !pull || cfg.DeliverSubject != "" {
				t.Errorf("consumer %s: README --pull %v, worker deliver subject %q", key, pull, cfg.DeliverSubject)
			}
			check(key+" durable", cfg.Durable, c.args[1])
			check(key+" filter", cfg.FilterSubject, c.flags["filter"])
			check(key+" deliver", strings.ToLower(cfg.DeliverPolicy.String()), c.flags["deliver"])
			check(key+" ack", strings.ToLower(strings.TrimPrefix(cfg.AckPolicy.String(), "Ack")), c.flags["ack"])
			check(key+" ack wait", cfg.AckWait, dur(c, "wait"))
			check(key+" max deliver", int64(cfg.MaxDeliver), num(c, "max-deliver"))
			check(key+" max ack pending", int64(cfg.MaxAckPending), num(c, "max-pending"))
			check(key+" replay", strings.ToLower(cfg.ReplayPolicy.String()), c.flags["replay"])
			check(key+" description", cfg.Description, c.flags["description"])
		default:
			t.Errorf("unexpected README command %q", c.words)
		}
	}
}

// TestREADMENatsCLI runs the README's pre-create commands with the real `nats`
// CLI (when it is on PATH; it is not needed otherwise), then starts the worker:
// its create-or-update must find nothing to change.
func TestREADMENatsCLI(t *testing.T) {
	cli, err := exec.LookPath("nats")
	if err != nil {
		t.Skip("nats CLI not on PATH (go install github.com/nats-io/natscli/nats@v0.5.0 to run this check)")
	}
	s := startNATS(t, forTest(t, loadNATSConfig(t, "single.conf")))
	for _, c := range readmeNATSCommands(t) {
		args := append([]string{"--server", s.ClientURL()}, c.words[1:]...)
		for i, a := range args {
			if a == "--replicas" && i+1 < len(args) {
				args[i+1] = "1" // one server here
			}
		}
		cmd := exec.Command(cli, args...)
		cmd.Env = append(os.Environ(), "NATS_CONTEXT=", "HOME="+t.TempDir())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nats %s: %v\n%s", strings.Join(args[2:], " "), err, out)
		}
	}
	nc := connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := snapshot(t, ctx, js)
	runWorker(t, ctx, js, nc)
	after := snapshot(t, ctx, js)
	for name, b := range before.Streams {
		if a := after.Streams[name]; !reflect.DeepEqual(a, b) {
			t.Errorf("the worker changed stream %s that the README's command created:\n README: %s\n worker: %s", name, jsonOf(b), jsonOf(a))
		}
	}
	for name, b := range before.Consumers {
		if a := after.Consumers[name]; !reflect.DeepEqual(a, b) {
			t.Errorf("the worker changed consumer %s that the README's command created:\n README: %s\n worker: %s", name, jsonOf(b), jsonOf(a))
		}
	}
}

func jsonOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
