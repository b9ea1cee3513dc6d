// Command clickedge runs the clickedge edge redirect and click-capture
// service and its attribution worker.
//
//	clickedge serve   embedded NATS JetStream + edge + worker in one process
//	clickedge edge    the public edge against an external NATS (--nats)
//	clickedge worker  the attribution worker against an external NATS (--nats)
//	clickedge admin   drive the admin API of a worker (see docs/admin-api.md)
//
// Every flag has a CLICKEDGE_* environment equivalent; see `clickedge <cmd> --help`.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "clickedge:", err)
		os.Exit(exitCode(err))
	}
}

const usage = `clickedge — edge redirect and click capture for affiliate programs

Usage:
  clickedge serve  [flags]   embedded NATS JetStream + edge + worker in one process
  clickedge edge   [flags]   the public edge, against an external NATS (--nats)
  clickedge worker [flags]   the attribution worker, against an external NATS (--nats)
  clickedge admin  COMMAND   manage merchants, keys, campaigns, partners, links and payouts
                             through the admin API ("clickedge admin --help")
  clickedge version          print the version

Run "clickedge <command> --help" for the flags of a command. Every flag can also
be given as an environment variable: --ip-privacy is CLICKEDGE_IP_PRIVACY.
`

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	if _, ok := err.(usageError); ok {
		return 2
	}
	return 1
}

// run is main without the process: tests call it with their own context,
// arguments and writers, and get the bound addresses through started.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, started func(*App)) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	switch args[0] {
	case "serve", "edge", "worker":
		cfg, err := parseFlags(args[0], args[1:], stderr, os.LookupEnv)
		if err != nil {
			return err
		}
		if cfg == nil { // --help
			return nil
		}
		return runApp(ctx, cfg, stdout, stderr, started)
	case "admin":
		return runAdmin(ctx, args[1:], os.LookupEnv, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "clickedge", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
}
