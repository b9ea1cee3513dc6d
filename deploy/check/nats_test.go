package check

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clickedge/clickedge/sink"
)

const testLeafPassword = "leaf-password-for-tests"

// loadNATSConfig parses a config of deploy/nats exactly as nats-server -c does
// (unknown fields are errors).
func loadNATSConfig(t *testing.T, name string) *server.Options {
	t.Helper()
	opts, err := server.ProcessConfigFile(deployPath(t, "nats", name))
	if err != nil {
		t.Fatalf("nats-server rejects deploy/nats/%s: %v", name, err)
	}
	return opts
}

// forTest turns parsed options into ones that run here: loopback, free or given
// ports, the store in a temporary directory, no signal handlers or logs.
func forTest(t *testing.T, o *server.Options) *server.Options {
	t.Helper()
	o = o.Clone()
	o.Host, o.Port = "127.0.0.1", server.RANDOM_PORT
	o.HTTPHost, o.HTTPPort = "127.0.0.1", server.RANDOM_PORT
	o.NoSigs, o.NoLog = true, true
	o.PidFile, o.PortsFileDir = "", ""
	if o.JetStream {
		o.StoreDir = t.TempDir()
	}
	return o
}

func startNATS(t *testing.T, o *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatalf("new server %s: %v", o.ServerName, err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		t.Fatalf("server %s not ready in 15s", o.ServerName)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func connect(t *testing.T, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// healthz asks a server's monitoring port what compose's and Kubernetes' probes ask.
func healthz(t *testing.T, s *server.Server, query string) int {
	t.Helper()
	addr := s.MonitorAddr()
	if addr == nil {
		t.Fatalf("server %s has no monitoring listener", s.Name())
	}
	resp, err := http.Get(fmt.Sprintf("http://%s/healthz%s", addr, query))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func TestNATSSingleConfig(t *testing.T) {
	o := loadNATSConfig(t, "single.conf")
	if !o.JetStream {
		t.Fatal("single.conf: JetStream is not enabled")
	}
	if !o.SyncAlways {
		t.Error("single.conf: jetstream.sync_interval is not \"always\": acked writes could be lost on power failure")
	}
	if o.StoreDir == "" {
		t.Error("single.conf: no jetstream store_dir")
	}
	if !isLoopback(o.Host) || !isLoopback(o.HTTPHost) {
		t.Errorf("single.conf listens on %q (monitor %q); want loopback only, clients are not authenticated", o.Host, o.HTTPHost)
	}
	if o.JetStreamDomain != "" || o.Cluster.Port != 0 || len(o.LeafNode.Remotes) != 0 {
		t.Errorf("single.conf: want a lone server (domain %q, cluster port %d, leaf remotes %d)",
			o.JetStreamDomain, o.Cluster.Port, len(o.LeafNode.Remotes))
	}
	if o.MaxPayload < 8<<20 {
		t.Errorf("single.conf: max_payload %d, want 8MB for the catalog KV value", o.MaxPayload)
	}

	// Run it for real and let clickedge create what it creates on start.
	s := startNATS(t, forTest(t, o))
	if !s.JetStreamEnabled() {
		t.Fatal("single.conf: JetStream not enabled on the running server")
	}
	if code := healthz(t, s, "?js-enabled-only=true"); code != http.StatusOK {
		t.Errorf("/healthz?js-enabled-only=true: %d", code)
	}
	nc := connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sink.EnsureStreams(ctx, js, sink.StreamConfig{Replicas: 3}); err == nil {
		t.Error("R3 streams were created on a single server; --replicas must be 1 there and the docs say so")
	}
	if err := sink.EnsureStreams(ctx, js, sink.StreamConfig{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	kv, err := sink.EnsureCatalogKV(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	// A catalog above the 1MB default payload goes through.
	big := []byte(`{"pad":"` + strings.Repeat("x", 3<<20) + `"}`)
	if _, err := sink.PutCatalog(ctx, kv, big); err != nil {
		t.Errorf("a 3MB catalog does not fit: %v", err)
	}
	for _, name := range []string{sink.ClickStream, sink.EventStream, "KV_" + sink.CatalogBucket} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if got := st.CachedInfo().Config.Storage; got != jetstream.FileStorage {
			t.Errorf("stream %s storage %v, want file", name, got)
		}
	}
}

// TestNATSClusterAndLeaf starts the three cluster configs and the leaf config
// for real (loopback ports, temporary stores) and checks, through the leaf as a
// far edge would, that clickedge's R3 streams and bucket are created in the hub,
// that publishes are acked by the hub's JetStream, and that the catalog watch
// works across the leaf connection.
func TestNATSClusterAndLeaf(t *testing.T) {
	t.Setenv("NATS_LEAF_PASSWORD", "")
	os.Unsetenv("NATS_LEAF_PASSWORD")
	if _, err := server.ProcessConfigFile(deployPath(t, "nats", "cluster-1.conf")); err == nil {
		t.Error("cluster-1.conf parses with an empty NATS_LEAF_PASSWORD... check that the leaf password comes from the environment")
	}
	t.Setenv("NATS_LEAF_PASSWORD", testLeafPassword)

	const n = 3
	clusterPorts := make([]int, n)
	leafPorts := make([]int, n)
	var routes []*url.URL
	for i := range n {
		clusterPorts[i], leafPorts[i] = freePort(t), freePort(t)
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", clusterPorts[i])})
	}
	var hub []*server.Server
	optsList := make([]*server.Options, n)
	for i := range n {
		name := fmt.Sprintf("cluster-%d.conf", i+1)
		o := loadNATSConfig(t, name)
		if want := fmt.Sprintf("nats-%d", i+1); o.ServerName != want {
			t.Errorf("%s: server_name %q, want %q", name, o.ServerName, want)
		}
		if !o.JetStream || !o.SyncAlways {
			t.Errorf("%s: jetstream %v, sync always %v; want both", name, o.JetStream, o.SyncAlways)
		}
		if o.JetStreamDomain != "hub" {
			t.Errorf("%s: jetstream domain %q, want hub", name, o.JetStreamDomain)
		}
		if o.Cluster.Name != "clickedge" || len(o.Routes) != n {
			t.Errorf("%s: cluster %q with %d routes, want clickedge with %d", name, o.Cluster.Name, len(o.Routes), n)
		}
		for j, r := range o.Routes {
			if want := fmt.Sprintf("nats-%d:6222", j+1); r.Host != want {
				t.Errorf("%s: route %d is %s, want %s (the compose service)", name, j, r.Host, want)
			}
		}
		if o.LeafNode.Port != 7422 || o.LeafNode.Username != "leaf" || o.LeafNode.Password != testLeafPassword {
			t.Errorf("%s: leafnodes port %d user %q password from env %v", name, o.LeafNode.Port, o.LeafNode.Username,
				o.LeafNode.Password == testLeafPassword)
		}
		o = forTest(t, o)
		o.Cluster.Host, o.Cluster.Port = "127.0.0.1", clusterPorts[i]
		o.Routes = routes
		o.LeafNode.Host, o.LeafNode.Port = "127.0.0.1", leafPorts[i]
		optsList[i] = o
	}
	// Start the three together: a JetStream cluster needs a quorum to come up.
	errs := make(chan error, n)
	servers := make([]*server.Server, n)
	for i, o := range optsList {
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		servers[i] = s
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		go func() {
			s.Start()
			if !s.ReadyForConnections(20 * time.Second) {
				errs <- fmt.Errorf("%s not ready", s.Name())
				return
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	hub = servers

	t.Setenv("NATS_HUB_LEAF_URL", fmt.Sprintf("nats://leaf:%s@127.0.0.1:%d", testLeafPassword, leafPorts[0]))
	lo := loadNATSConfig(t, "leaf-edge.conf")
	if lo.JetStream {
		t.Error("leaf-edge.conf enables JetStream: the leaf would answer $JS.API itself and the edge would not find the hub's streams")
	}
	if !isLoopback(lo.Host) {
		t.Errorf("leaf-edge.conf listens on %q, want loopback (only the local edge connects)", lo.Host)
	}
	if len(lo.LeafNode.Remotes) != 1 || len(lo.LeafNode.Remotes[0].URLs) != 1 {
		t.Fatalf("leaf-edge.conf: want one remote with the URL from NATS_HUB_LEAF_URL, got %+v", lo.LeafNode.Remotes)
	}
	if lo.MaxPayload < 8<<20 {
		t.Errorf("leaf-edge.conf: max_payload %d, want 8MB", lo.MaxPayload)
	}
	leaf := startNATS(t, forTest(t, lo))

	// Wait for the leaf link and the hub's JetStream meta leader.
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	for leaf.NumLeafNodes() == 0 {
		if ctx.Err() != nil {
			t.Fatal("leaf node did not connect to the hub (check leafnodes.authorization and NATS_HUB_LEAF_URL)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	edgeNC := connect(t, leaf) // what a far edge does: --nats nats://127.0.0.1:4222
	js, err := jetstream.New(edgeNC)
	if err != nil {
		t.Fatal(err)
	}
	var last error
	for {
		// Exactly what the worker does on start with --replicas 3 (here through
		// the leaf, to show the API crosses it).
		// A request that reaches the hub before it has a meta leader is not
		// answered, so each attempt gets its own short deadline.
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		last = sink.EnsureStreams(actx, js, sink.StreamConfig{Replicas: 3})
		acancel()
		if last == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("ensure R3 streams through the leaf: %v", last)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if _, err := sink.EnsureCatalogKV(ctx, js, 3); err != nil {
		t.Fatalf("ensure R3 catalog bucket through the leaf: %v", err)
	}

	// A click published at the edge is acked by the hub's stream, deduplicated
	// on Nats-Msg-Id like the shipper relies on.
	ack, err := js.Publish(ctx, sink.ClickSubjectPrefix+"m_test", []byte(`{"v":1}`), jetstream.WithMsgID("click-1"))
	if err != nil {
		t.Fatalf("publish through the leaf: %v", err)
	}
	if ack.Stream != sink.ClickStream || ack.Domain != "hub" {
		t.Errorf("ack from stream %q domain %q, want %s in domain hub", ack.Stream, ack.Domain, sink.ClickStream)
	}
	dup, err := js.Publish(ctx, sink.ClickSubjectPrefix+"m_test", []byte(`{"v":1}`), jetstream.WithMsgID("click-1"))
	if err != nil || !dup.Duplicate {
		t.Errorf("republish of the same Nats-Msg-Id: duplicate=%v err=%v", dup != nil && dup.Duplicate, err)
	}

	// The hub sees R3 file streams with both other replicas.
	hubJS, err := jetstream.New(connect(t, hub[1]))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{sink.ClickStream, sink.EventStream, "KV_" + sink.CatalogBucket} {
		var info *jetstream.StreamInfo
		for {
			st, err := hubJS.Stream(ctx, name)
			if err == nil {
				info = st.CachedInfo()
				if info.Cluster != nil && len(info.Cluster.Replicas) == n-1 {
					break
				}
			}
			if ctx.Err() != nil {
				t.Fatalf("stream %s not replicated on %d servers: %v %+v", name, n, err, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if info.Config.Replicas != n || info.Config.Storage != jetstream.FileStorage {
			t.Errorf("stream %s: replicas %d storage %v, want %d file", name, info.Config.Replicas, info.Config.Storage, n)
		}
	}

	// The hub's domain is addressable explicitly as well.
	jsHub, err := jetstream.NewWithDomain(edgeNC, "hub")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jsHub.Stream(ctx, sink.EventStream); err != nil {
		t.Errorf("$JS.hub.API through the leaf: %v", err)
	}

	// The worker puts the catalog at the hub; the far edge's watch sees it.
	kv, err := hubJS.KeyValue(ctx, sink.CatalogBucket)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := sink.PutCatalog(ctx, kv, []byte(`{"version":7}`))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan uint64, 1)
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- sink.WatchCatalog(wctx, edgeNC, func(_ []byte, r uint64) {
			select {
			case got <- r:
			default:
			}
		}, nil)
	}()
	select {
	case r := <-got:
		if r != rev {
			t.Errorf("edge saw catalog revision %d, want %d", r, rev)
		}
	case <-ctx.Done():
		t.Error("the edge's catalog watch through the leaf saw nothing")
	}
	wcancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Error(err)
	}

	// Control: the same leaf without its mappings cannot reach the hub's
	// JetStream with the plain API that clickedge uses — the mappings are what
	// make a far edge work, not an accident of the setup.
	bare := lo.Clone()
	bare.Accounts = nil
	bare.ServerName = "edge-leaf-unmapped"
	bareLeaf := startNATS(t, forTest(t, bare))
	for bareLeaf.NumLeafNodes() == 0 && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	bareJS, err := jetstream.New(connect(t, bareLeaf))
	if err != nil {
		t.Fatal(err)
	}
	bctx, bcancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = bareJS.AccountInfo(bctx)
	bcancel()
	if err == nil {
		t.Error("$JS.API reaches the hub from a leaf without mappings; the explanation in leaf-edge.conf is out of date")
	}

	for _, s := range hub {
		if code := healthz(t, s, "?js-enabled-only=true"); code != http.StatusOK {
			t.Errorf("%s /healthz?js-enabled-only=true: %d", s.Name(), code)
		}
	}
}
