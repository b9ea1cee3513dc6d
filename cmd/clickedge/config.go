package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Config is everything a subcommand needs, from flags and CLICKEDGE_* variables.
type Config struct {
	Mode           string
	Listen         string
	MetricsAddr    string
	Data           string
	NATS           string
	NATSListen     string
	Catalog        string
	GeoIP          string
	TrustedProxies string
	IPPrivacy      string
	Demo           bool
	DemoAPIKey     string
	Secrets        string
	SecretFile     string
	EdgeID         string
	FallbackURL    string
	SecureCookies  bool
	OutboxMaxBytes int64
	Capture        string
	CommitInterval time.Duration
	DrainDelay     time.Duration
	FlushTimeout   time.Duration
	Replicas       int
	LogLevel       string
	LogFormat      string
	AdminListen    string
	AdminToken     string
	Rebuild        bool
}

// envName is the environment variable of a flag: --ip-privacy → CLICKEDGE_IP_PRIVACY.
func envName(flagName string) string {
	return "CLICKEDGE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses a subcommand's flags; environment variables fill the
// flags not given on the command line. A nil config and nil error mean --help.
func parseFlags(mode string, args []string, stderr io.Writer, lookup func(string) (string, bool)) (*Config, error) {
	c := &Config{Mode: mode}
	fs := flag.NewFlagSet("clickedge "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	hostname, _ := os.Hostname()
	edge := mode != "worker"
	worker := mode != "edge"

	fs.StringVar(&c.MetricsAddr, "metrics-addr", "127.0.0.1:9090", "address of the Prometheus /metrics, /healthz and /readyz listener (empty: none)")
	fs.StringVar(&c.Data, "data", "./data", "directory of the bbolt files (edge outbox, worker store), the embedded NATS store and the generated secret")
	defNATS := "nats://127.0.0.1:4222"
	fs.StringVar(&c.NATS, "nats", defNATS, "comma-separated NATS server URLs (edge and worker; serve uses its embedded server)")
	fs.StringVar(&c.Secrets, "secret", "", "click-id secrets, comma-separated, each at least 16 bytes; the first mints, all verify (rotation). serve generates and keeps one in --data when none is given")
	fs.StringVar(&c.SecretFile, "secret-file", "", "file holding the click-id secrets, one per line (instead of --secret)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.IntVar(&c.Replicas, "replicas", 1, "JetStream replicas of the streams and KV bucket clickedge creates (3 on a cluster)")
	if edge {
		fs.StringVar(&c.Listen, "listen", "127.0.0.1:8080", "edge HTTP address (redirects, merchant APIs, health)")
		fs.StringVar(&c.GeoIP, "geoip", "", "mmdb geo database (MaxMind GeoIP2/GeoLite2, ip-location-db); empty: the first *.mmdb in <data>/geoip, if any; reloaded when the file changes")
		fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For/Forwarded headers are believed")
		fs.StringVar(&c.IPPrivacy, "ip-privacy", "truncate", "how client IPs are stored: full, truncate (/24 and /48) or drop")
		fs.StringVar(&c.EdgeID, "edge-id", hostname, "name of this edge, stored on every click it mints")
		fs.StringVar(&c.FallbackURL, "fallback-url", "", "where unknown codes go when no merchant claims them (empty: a plain 404 page)")
		fs.BoolVar(&c.SecureCookies, "secure-cookies", false, "mark cookies Secure even when TLS ends in front of the edge")
		fs.Int64Var(&c.OutboxMaxBytes, "outbox-max-bytes", 1<<30, "cap on the outbox's pending bytes; past it clicks are redirected but counted as dropped, and API writes get 503")
		fs.StringVar(&c.Capture, "capture", "durable", "what a redirect does with its click: durable (the 302 is sent after the click's outbox commit), "+
			"async (the 302 is sent at once and the click committed within --commit-interval, at most 5ms: a crash or power loss loses the clicks of the last interval, a clean shutdown none), "+
			"or none (enrich and redirect, record nothing; counted as clickedge_clicks_total{outcome=\"not_captured\"}). Merchant API writes are durable in every mode")
		fs.DurationVar(&c.CommitInterval, "commit-interval", 0, "least time from one outbox commit to the next: what queues meanwhile shares a commit (0: commit as soon as the previous commit ends). "+
			"At most 5ms with --capture async, where it bounds the loss window")
		fs.DurationVar(&c.DrainDelay, "drain-delay", 2*time.Second, "on shutdown, how long /readyz answers 503 before the listener closes")
		fs.DurationVar(&c.FlushTimeout, "flush-timeout", 5*time.Second, "on shutdown, how long to keep shipping the outbox to NATS")
	}
	if worker {
		fs.StringVar(&c.Catalog, "catalog", "", "catalog file (JSON or YAML, see docs/catalog.example.yaml) that seeds the worker: applied at start when no catalog is stored or the file changed since it was applied")
		fs.BoolVar(&c.Demo, "demo", false, "load the demo catalog when the worker has none (its API key is printed once)")
		fs.StringVar(&c.DemoAPIKey, "demo-api-key", "", "API key of the demo merchant (default: generated and printed once)")
		fs.BoolVar(&c.Rebuild, "rebuild", false, "at start, replay the click and event streams from their first message into the store (rebuild an empty store or catch up a restored backup; replay changes nothing already stored)")
		fs.StringVar(&c.AdminListen, "admin-listen", "127.0.0.1:8081", "address of the admin API (merchants, keys, campaigns, partners, links, payouts; see docs/admin-api.md); empty: none")
		fs.StringVar(&c.AdminToken, "admin-token", "", "bearer token of the admin API, at least 24 characters; without one the admin API is off (serve --demo generates and prints one)")
	}
	if mode == "serve" {
		fs.StringVar(&c.NATSListen, "nats-listen", "127.0.0.1:4222", "client address of the embedded NATS server, for edges and tools outside the process (empty: in-process only; port 0: random)")
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: clickedge %s [flags]\n\nFlags (each also as the environment variable shown):\n", mode)
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(stderr, "  --%s (%s)\n    \t%s", f.Name, envName(f.Name), f.Usage)
			if f.DefValue != "" && f.DefValue != "false" {
				fmt.Fprintf(stderr, " (default %q)", f.DefValue)
			}
			fmt.Fprintln(stderr)
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil
		}
		return nil, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || envErr != nil {
			return
		}
		if v, ok := lookup(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = usageError{fmt.Sprintf("%s=%q: %v", envName(f.Name), v, err)}
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	return c, nil
}
