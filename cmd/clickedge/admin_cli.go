package main

// `clickedge admin …` is the command-line client of the admin API
// (docs/admin-api.md). It is a thin layer: every command is one request (two
// when an update needs the campaign's currency), flags become JSON fields
// exactly as the API names them, and the API's own validation stays the
// authority; the client checks only what it must know to build the request.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/clickedge/clickedge/money"
)

// Defaults of the admin client.
const (
	defaultAdminURL     = "http://127.0.0.1:8081"
	defaultAdminTimeout = 10 * time.Second
	// adminAnswerLimit bounds an answer the client reads: a catalog export is
	// the largest, and the API refuses bodies over 1 MiB, so a catalog that
	// could be imported again is far below this.
	adminAnswerLimit = 64 << 20
)

const adminUsage = `clickedge admin — manage merchants, API keys, campaigns, partners, links,
conversions and payouts through the admin API of a running clickedge
(serve or worker with --admin-listen and --admin-token; docs/admin-api.md).

Usage:
  clickedge admin [global flags] RESOURCE COMMAND [ARGS] [flags]

Resources and commands:
  merchants    list | get ID | create --id ID [flags] | update ID [flags]
  keys         list MERCHANT | create MERCHANT [--name N] | revoke MERCHANT KEY_ID
  campaigns    list [--merchant M] | get ID | update ID [flags]
               create --id ID --merchant M --destination URL [flags]
  partners     list [--merchant M] | get ID | balance ID | update ID [flags]
               create --id ID --merchant M --key KEY [flags]
  links        list [--merchant M] [--campaign C] [--partner P] | get CODE
               create --campaign C --partner P [flags] | update CODE [flags]
               pause CODE | resume CODE
  conversions  list MERCHANT [--partner P] [--campaign C] [--status S] [--limit N] [--offset N]
               get MERCHANT REF | approve|reject|paid MERCHANT REF [--note TEXT]
  payouts      create MERCHANT --partner P [--reference R]
  catalog      export [--file F] | import FILE

Global flags (accepted anywhere on the line):
  --url URL          admin API base URL; $CLICKEDGE_ADMIN_URL, default ` + defaultAdminURL + `
  --token TOKEN      admin bearer token; $CLICKEDGE_ADMIN_TOKEN (prefer the variable:
                     command lines are visible to other users of the machine)
  --output, -o FMT   table (default) or json: the answer's data, pretty-printed for jq;
                     $CLICKEDGE_ADMIN_OUTPUT
  --timeout D        time limit of each request, default 10s; $CLICKEDGE_ADMIN_TIMEOUT

Every create and update also takes --json '{...}' or --file F: a JSON (or YAML)
object with the API's field names, under the flags (a flag wins over the same
field). update sends a JSON merge patch of only the fields given; a field set
to null in --json is cleared. Durations (--window, --hold,
--min-click-to-conversion) are Go durations (720h, 90m, 0s), sent as seconds.

Run "clickedge admin RESOURCE --help" or "clickedge admin RESOURCE COMMAND --help"
for details.

Examples:
  export CLICKEDGE_ADMIN_TOKEN=ce_admin_…
  clickedge admin merchants create --id acme --name Acme --allowed-domain acme.example
  clickedge admin campaigns create --id spring --merchant acme \
      --destination https://acme.example/shop --commission type=sale,percent=10 \
      --commission type=lead,flat=5.00 --window 720h
  clickedge admin partners create --id dave --merchant acme --key DAVE1 --coupon DAVE
  clickedge admin links create --campaign spring --partner dave --code dave-spring
  clickedge admin keys create acme --name production
  clickedge admin conversions list acme --status approved -o json | jq '.[].id'
  clickedge admin payouts create acme --partner dave --reference 2026-05
`

// adminGlobals are the flags every admin command accepts.
type adminGlobals struct {
	url, token, output string
	timeout            time.Duration
}

// register binds the global flags to fs. The current values are the
// defaults, so that registering on the next flag set keeps what an earlier
// part of the command line set.
func (g *adminGlobals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.url, "url", g.url, "admin API base URL")
	fs.StringVar(&g.token, "token", g.token, "admin bearer token")
	fs.StringVar(&g.output, "output", g.output, "table or json")
	fs.StringVar(&g.output, "o", g.output, "table or json")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "time limit of each request")
}

// fieldKind says how a body flag's text becomes a JSON value.
type fieldKind int

const (
	fString     fieldKind = iota
	fStrings              // repeatable; a JSON array of strings
	fBool                 // a JSON boolean; --flag=false sends false
	fDuration             // a Go duration sent as whole seconds
	fInt                  // a non-negative integer
	fCommission           // repeatable commission spec; see parseCommission
)

// bodyField is a flag that sets one field of a create or update body.
type bodyField struct {
	flag, key, arg, help string
	kind                 fieldKind
	// required on create (in the flags or in --json/--file).
	required bool
	// createOnly fields name the object and cannot change (id, merchant_id,
	// code): update takes them as arguments instead.
	createOnly bool
}

// adminOpt is a plain string flag of a command (filters, notes, files).
type adminOpt struct{ flag, arg, help string }

// adminCommand is one RESOURCE COMMAND of the client.
type adminCommand struct {
	verb     string
	args     []string // names of the positional arguments
	synopsis string   // after "clickedge admin RESOURCE "
	summary  string
	fields   []bodyField // body flags; with --json and --file when non-nil
	opts     []adminOpt
	run      func(*adminRun) error
}

// adminResource groups the commands of one kind of object.
type adminResource struct {
	name    string
	aliases []string
	summary string
	cmds    []*adminCommand
}

func (r *adminResource) command(verb string) *adminCommand {
	for _, c := range r.cmds {
		if c.verb == verb {
			return c
		}
	}
	return nil
}

func (r *adminResource) verbs() []string {
	out := make([]string, len(r.cmds))
	for i, c := range r.cmds {
		out[i] = c.verb
	}
	return out
}

// adminRun is one parsed invocation.
type adminRun struct {
	ctx            context.Context
	client         *adminClient
	res            *adminResource
	cmd            *adminCommand
	output         string
	args           []string
	opt            map[string]string // adminOpt values by flag name
	set            map[string]bool   // flags given on the command line
	fieldVals      map[string]*string
	listVals       map[string]*stringList
	boolVals       map[string]*bool
	jsonArg, file  string
	stdout, stderr io.Writer
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

var merchantFields = []bodyField{
	{flag: "id", key: "id", arg: "ID", help: "merchant id, 1-64 of [A-Za-z0-9_-]", required: true, createOnly: true},
	{flag: "name", key: "name", arg: "NAME", help: "name shown to people"},
	{flag: "cookie-domain", key: "cookie_domain", arg: "DOMAIN", help: "Domain of first-party cookies (empty: host-only)"},
	{flag: "allowed-domain", key: "allowed_domains", arg: "DOMAIN", kind: fStrings, help: "host destinations may point to (with subdomains); repeat for more; replaces the list"},
	{flag: "fallback-url", key: "fallback_url", arg: "URL", help: "where unknown or paused codes of this merchant send visitors"},
}

var campaignFields = []bodyField{
	{flag: "id", key: "id", arg: "ID", help: "campaign id", required: true, createOnly: true},
	{flag: "merchant", key: "merchant_id", arg: "MERCHANT", help: "merchant the campaign belongs to", required: true, createOnly: true},
	{flag: "destination", key: "default_destination", arg: "URL", help: "default destination, on an allowed domain", required: true},
	{flag: "name", key: "name", arg: "NAME", help: "name shown to people"},
	{flag: "window", key: "window_seconds", arg: "DURATION", kind: fDuration, help: "attribution window (server default 720h)"},
	{flag: "hold", key: "hold_seconds", arg: "DURATION", kind: fDuration, help: "approve pending conversions automatically after this long (0s: never)"},
	{flag: "currency", key: "currency", arg: "CODE", help: "ISO 4217 currency of the commission rules (server default USD)"},
	{flag: "attribution", key: "attribution", arg: "MODEL", help: "last_click (default) or first_click"},
	{flag: "click-param", key: "click_param", arg: "NAME", help: "destination query parameter carrying the click id (default click_id)"},
	{flag: "cookie-name", key: "cookie_name", arg: "NAME", help: "first-party cookie name (default ce_<campaign id>)"},
	{flag: "cookie-holds", key: "cookie_holds", arg: "WHAT", help: "click_id (default) or partner_key"},
	{flag: "pass-partner-key", key: "pass_partner_key", kind: fBool, help: "append the partner key to the destination (as --partner-key-param, default aff=)"},
	{flag: "partner-key-param", key: "partner_key_param", arg: "NAME", help: "destination query parameter carrying the partner key (default aff)"},
	{flag: "pixel-id", key: "pixel_id", arg: "ID", help: "public id of the campaign's browser pixels"},
	{flag: "allowed-domain", key: "allowed_domains", arg: "DOMAIN", kind: fStrings, help: "extra allowed host; repeat for more; replaces the list"},
	{flag: "commission", key: "commissions", arg: "SPEC", kind: fCommission, help: "commission rule, e.g. type=sale,percent=10 or type=lead,flat=5.00 or\n" +
		"product_id=p1,percent=12.5; keys: type, product_id, product_type, percent, flat\n" +
		"(in the campaign currency), percent_bps, flat_minor; repeat for more rules;\n" +
		"replaces all rules"},
	{flag: "recurring-months", key: "recurring_months", arg: "N", kind: fInt, help: "later subscription payments earn for N months"},
	{flag: "recurring-lifetime", key: "recurring_lifetime", kind: fBool, help: "later subscription payments earn for the customer's lifetime"},
	{flag: "min-click-to-conversion", key: "min_click_to_conversion_seconds", arg: "DURATION", kind: fDuration, help: "flag conversions sooner than this after the click as suspect_fast (0s: off)"},
}

var partnerFields = []bodyField{
	{flag: "id", key: "id", arg: "ID", help: "partner id", required: true, createOnly: true},
	{flag: "merchant", key: "merchant_id", arg: "MERCHANT", help: "merchant the partner belongs to", required: true, createOnly: true},
	{flag: "key", key: "key", arg: "KEY", help: "referral key / partnership code, unique within the merchant", required: true},
	{flag: "email", key: "email", arg: "EMAIL", help: "partner's email"},
	{flag: "coupon", key: "coupon_codes", arg: "CODE", kind: fStrings, help: "coupon code credited to the partner; repeat for more; replaces the list"},
}

var linkFields = []bodyField{
	{flag: "campaign", key: "campaign_id", arg: "CAMPAIGN", help: "campaign of the link", required: true},
	{flag: "partner", key: "partner_id", arg: "PARTNER", help: "partner of the link (same merchant as the campaign)", required: true},
	{flag: "code", key: "code", arg: "CODE", help: "short code behind /r/CODE (generated when omitted)", createOnly: true},
	{flag: "destination", key: "destination", arg: "URL", help: "destination template overriding the campaign's"},
	{flag: "no-passthrough", key: "no_passthrough", kind: fBool, help: "do not pass the visitor's query parameters on"},
	{flag: "fallback-url", key: "fallback_url", arg: "URL", help: "where the link sends visitors while paused"},
	{flag: "paused", key: "paused", kind: fBool, help: "pause (true) or activate (false) the link"},
}

// adminResources is the command table of the client.
var adminResources = []*adminResource{
	{name: "merchants", aliases: []string{"merchant"}, summary: "tenants: each owns campaigns, partners and API keys", cmds: []*adminCommand{
		{verb: "list", synopsis: "list", summary: "list merchants", run: runList("merchants", nil, "merchants")},
		{verb: "get", args: []string{"ID"}, synopsis: "get ID", summary: "show a merchant", run: runGet("merchants")},
		{verb: "create", synopsis: "create --id ID [flags]", summary: "create a merchant", fields: merchantFields, run: runCreate("merchants")},
		{verb: "update", args: []string{"ID"}, synopsis: "update ID [flags]", summary: "change a merchant", fields: merchantFields, run: runUpdate("merchants")},
	}},
	{name: "keys", aliases: []string{"key", "api-keys"}, summary: "merchant API keys (only their hashes are stored)", cmds: []*adminCommand{
		{verb: "list", args: []string{"MERCHANT"}, synopsis: "list MERCHANT", summary: "list a merchant's keys (no secrets)", run: func(r *adminRun) error {
			a, err := r.client.do(r.ctx, http.MethodGet, []string{"merchants", r.args[0], "keys"}, nil, nil, "")
			if err != nil {
				return err
			}
			return r.print(a, "keys")
		}},
		{verb: "create", args: []string{"MERCHANT"}, synopsis: "create MERCHANT [--name N]", summary: "create a key; the key is shown once",
			opts: []adminOpt{{"name", "NAME", "name of the key, e.g. where it is used"}}, run: runKeyCreate},
		{verb: "revoke", args: []string{"MERCHANT", "KEY_ID"}, synopsis: "revoke MERCHANT KEY_ID", summary: "revoke a key; edges refuse it within a second", run: func(r *adminRun) error {
			a, err := r.client.do(r.ctx, http.MethodDelete, []string{"merchants", r.args[0], "keys", r.args[1]}, nil, nil, "")
			if err != nil {
				return err
			}
			return r.print(a, "keys")
		}},
	}},
	{name: "campaigns", aliases: []string{"campaign"}, summary: "destinations, windows, cookie policy and commission rules", cmds: []*adminCommand{
		{verb: "list", synopsis: "list [--merchant M]", summary: "list campaigns", opts: []adminOpt{{"merchant", "M", "only this merchant's"}},
			run: runList("campaigns", map[string]string{"merchant": "merchant_id"}, "campaigns")},
		{verb: "get", args: []string{"ID"}, synopsis: "get ID", summary: "show a campaign", run: runGet("campaigns")},
		{verb: "create", synopsis: "create --id ID --merchant M --destination URL [flags]", summary: "create a campaign", fields: campaignFields, run: runCreate("campaigns")},
		{verb: "update", args: []string{"ID"}, synopsis: "update ID [flags]", summary: "change a campaign", fields: campaignFields, run: runUpdate("campaigns")},
	}},
	{name: "partners", aliases: []string{"partner"}, summary: "affiliates who share links", cmds: []*adminCommand{
		{verb: "list", synopsis: "list [--merchant M]", summary: "list partners", opts: []adminOpt{{"merchant", "M", "only this merchant's"}},
			run: runList("partners", map[string]string{"merchant": "merchant_id"}, "partners")},
		{verb: "get", args: []string{"ID"}, synopsis: "get ID", summary: "show a partner", run: runGet("partners")},
		{verb: "create", synopsis: "create --id ID --merchant M --key KEY [flags]", summary: "create a partner", fields: partnerFields, run: runCreate("partners")},
		{verb: "update", args: []string{"ID"}, synopsis: "update ID [flags]", summary: "change a partner", fields: partnerFields, run: runUpdate("partners")},
		{verb: "balance", args: []string{"ID"}, synopsis: "balance ID", summary: "show a partner's balance and ledger", run: func(r *adminRun) error {
			a, err := r.client.do(r.ctx, http.MethodGet, []string{"partners", r.args[0], "balance"}, nil, nil, "")
			if err != nil {
				return err
			}
			return r.print(a, "balance")
		}},
	}},
	{name: "links", aliases: []string{"link"}, summary: "short codes behind /r/CODE: one partner in one campaign", cmds: []*adminCommand{
		{verb: "list", synopsis: "list [--merchant M] [--campaign C] [--partner P]", summary: "list links",
			opts: []adminOpt{{"merchant", "M", "only this merchant's"}, {"campaign", "C", "only this campaign's"}, {"partner", "P", "only this partner's"}},
			run:  runList("links", map[string]string{"merchant": "merchant_id", "campaign": "campaign_id", "partner": "partner_id"}, "links")},
		{verb: "get", args: []string{"CODE"}, synopsis: "get CODE", summary: "show a link", run: runGet("links")},
		{verb: "create", synopsis: "create --campaign C --partner P [flags]", summary: "create a link", fields: linkFields, run: runCreate("links")},
		{verb: "update", args: []string{"CODE"}, synopsis: "update CODE [flags]", summary: "change a link", fields: linkFields, run: runUpdate("links")},
		{verb: "pause", args: []string{"CODE"}, synopsis: "pause CODE", summary: "pause a link: visitors go to the fallback", run: runLinkAction("pause")},
		{verb: "resume", args: []string{"CODE"}, synopsis: "resume CODE", summary: "activate a paused link", run: runLinkAction("resume")},
	}},
	{name: "conversions", aliases: []string{"conversion"}, summary: "a merchant's conversions and their commission status", cmds: []*adminCommand{
		{verb: "list", args: []string{"MERCHANT"}, synopsis: "list MERCHANT [--partner P] [--campaign C] [--status S] [--limit N] [--offset N]",
			summary: "list conversions, newest first",
			opts: []adminOpt{{"partner", "P", "only this partner's"}, {"campaign", "C", "only this campaign's"},
				{"status", "S", "pending, approved, rejected or paid"}, {"limit", "N", "at most N (server default 50, max 100)"}, {"offset", "N", "skip the first N"}},
			run: runConversionList},
		{verb: "get", args: []string{"MERCHANT", "REF"}, synopsis: "get MERCHANT REF", summary: "show a conversion (REF: conversion id or the merchant's unique/order id)", run: func(r *adminRun) error {
			a, err := r.client.do(r.ctx, http.MethodGet, []string{"merchants", r.args[0], "conversions", r.args[1]}, nil, nil, "")
			if err != nil {
				return err
			}
			return r.print(a, "conversions")
		}},
		{verb: "approve", args: []string{"MERCHANT", "REF"}, synopsis: "approve MERCHANT REF [--note TEXT]", summary: "approve a pending conversion",
			opts: []adminOpt{{"note", "TEXT", "note kept with the change"}}, run: runStatus("approved")},
		{verb: "reject", args: []string{"MERCHANT", "REF"}, synopsis: "reject MERCHANT REF [--note TEXT]", summary: "reject a pending conversion",
			opts: []adminOpt{{"note", "TEXT", "note kept with the change"}}, run: runStatus("rejected")},
		{verb: "paid", args: []string{"MERCHANT", "REF"}, synopsis: "paid MERCHANT REF [--note TEXT]", summary: "mark an approved conversion paid",
			opts: []adminOpt{{"note", "TEXT", "note kept with the change"}}, run: runStatus("paid")},
	}},
	{name: "payouts", aliases: []string{"payout"}, summary: "pay a partner's approved commissions", cmds: []*adminCommand{
		{verb: "create", args: []string{"MERCHANT"}, synopsis: "create MERCHANT --partner P [--reference R]",
			summary: "mark every approved, unpaid conversion of the partner paid; repeating a reference pays nothing twice",
			opts:    []adminOpt{{"partner", "P", "partner to pay (required)"}, {"reference", "R", "payout reference, 1-100 of [A-Za-z0-9_.:-] (default generated)"}},
			run:     runPayout},
	}},
	{name: "catalog", summary: "the whole catalog at once", cmds: []*adminCommand{
		{verb: "export", synopsis: "export [--file F]", summary: "print the catalog as JSON, or write it to F (YAML when F ends in .yaml or .yml)",
			opts: []adminOpt{{"file", "F", "write to F instead of standard output"}}, run: runCatalogExport},
		{verb: "import", args: []string{"FILE"}, synopsis: "import FILE", summary: "replace the whole catalog with FILE (JSON, or YAML when it ends in .yaml or .yml)",
			run: runCatalogImport},
	}},
	{name: "backup", summary: "a consistent copy of the worker's store", cmds: []*adminCommand{
		{verb: "save", synopsis: "save --file F", summary: "download a consistent copy of the worker's store (a bbolt file) to F while the worker runs; restore with --rebuild (see README, Operating)",
			opts: []adminOpt{{"file", "F", "where to write the copy (required)"}}, run: runBackup},
	}},
}

func findAdminResource(name string) *adminResource {
	for _, r := range adminResources {
		if r.name == name {
			return r
		}
		for _, a := range r.aliases {
			if a == name {
				return r
			}
		}
	}
	return nil
}

func adminResourceNames() string {
	names := make([]string, len(adminResources))
	for i, r := range adminResources {
		names[i] = r.name
	}
	return oneOf(names)
}

// oneOf renders "a, b or c".
func oneOf(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// runAdmin runs `clickedge admin ARGS`. Usage errors are usageError (exit 2);
// failed requests are plain errors (exit 1).
func runAdmin(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	g := adminGlobals{url: defaultAdminURL, output: "table", timeout: defaultAdminTimeout}
	if v, ok := lookupEnv("CLICKEDGE_ADMIN_URL"); ok && v != "" {
		g.url = v
	}
	if v, ok := lookupEnv("CLICKEDGE_ADMIN_TOKEN"); ok {
		g.token = v
	}
	if v, ok := lookupEnv("CLICKEDGE_ADMIN_OUTPUT"); ok && v != "" {
		g.output = v
	}
	if v, ok := lookupEnv("CLICKEDGE_ADMIN_TIMEOUT"); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return usageError{fmt.Sprintf("CLICKEDGE_ADMIN_TIMEOUT %q: want a duration such as 10s", v)}
		}
		g.timeout = d
	}

	// The resource and the command word may each be preceded by global flags.
	words := make([]string, 0, 2)
	rest := args
	for len(words) < 2 {
		fs := newAdminFlagSet("admin")
		g.register(fs)
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return adminHelp(stdout, words)
			}
			return usageError{fmt.Sprintf("admin: %v (see clickedge admin --help)", err)}
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		words = append(words, rest[0])
		rest = rest[1:]
		if words[0] == "help" {
			return adminHelp(stdout, rest[:min(len(rest), 1)])
		}
		if findAdminResource(words[0]) == nil {
			return usageError{fmt.Sprintf("unknown admin command %q: want %s (see clickedge admin --help)", words[0], adminResourceNames())}
		}
		if len(words) == 2 && words[1] == "help" {
			return adminHelp(stdout, words[:1])
		}
	}
	if len(words) == 0 {
		fmt.Fprint(stderr, adminUsage)
		return usageError{fmt.Sprintf("admin: no command given: want %s", adminResourceNames())}
	}
	res := findAdminResource(words[0])
	if len(words) == 1 {
		return usageError{fmt.Sprintf("admin %s: no command given: want %s (see clickedge admin %s --help)", res.name, oneOf(res.verbs()), res.name)}
	}
	cmd := res.command(words[1])
	if cmd == nil {
		return usageError{fmt.Sprintf("unknown admin %s command %q: want %s (see clickedge admin %s --help)", res.name, words[1], oneOf(res.verbs()), res.name)}
	}

	r := &adminRun{ctx: ctx, res: res, cmd: cmd, stdout: stdout, stderr: stderr,
		opt: map[string]string{}, set: map[string]bool{}, fieldVals: map[string]*string{},
		listVals: map[string]*stringList{}, boolVals: map[string]*bool{}}
	fs := newAdminFlagSet("admin " + res.name + " " + cmd.verb)
	g.register(fs)
	opts := map[string]*string{}
	for _, o := range cmd.opts {
		opts[o.flag] = fs.String(o.flag, "", o.help)
	}
	for _, f := range cmd.fields {
		if f.createOnly && cmd.verb != "create" {
			continue
		}
		switch f.kind {
		case fStrings, fCommission:
			l := new(stringList)
			fs.Var(l, f.flag, f.help)
			r.listVals[f.flag] = l
		case fBool:
			r.boolVals[f.flag] = fs.Bool(f.flag, false, f.help)
		default:
			r.fieldVals[f.flag] = fs.String(f.flag, "", f.help)
		}
	}
	if cmd.fields != nil {
		fs.StringVar(&r.jsonArg, "json", "", "JSON object of fields")
		fs.StringVar(&r.file, "file", "", "file holding a JSON or YAML object of fields")
	}
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printAdminCommandHelp(stdout, res, cmd)
			return nil
		}
		return usageError{fmt.Sprintf("admin %s %s: %v (see clickedge admin %s %s --help)", res.name, cmd.verb, err, res.name, cmd.verb)}
	}
	if len(pos) != len(cmd.args) {
		want := "no arguments"
		if len(cmd.args) > 0 {
			want = strings.Join(cmd.args, " ")
		}
		return usageError{fmt.Sprintf("admin %s %s: want %s, got %d argument(s) (usage: clickedge admin %s %s)",
			res.name, cmd.verb, want, len(pos), res.name, cmd.synopsis)}
	}
	for i, p := range pos {
		if p == "" {
			return usageError{fmt.Sprintf("admin %s %s: %s is empty", res.name, cmd.verb, cmd.args[i])}
		}
	}
	r.args = pos
	fs.Visit(func(f *flag.Flag) { r.set[f.Name] = true })
	for name, v := range opts {
		r.opt[name] = *v
	}

	switch g.output {
	case "table", "json":
		r.output = g.output
	default:
		return usageError{fmt.Sprintf("--output %q: want table or json", g.output)}
	}
	if g.timeout <= 0 {
		return usageError{fmt.Sprintf("--timeout %s: want a positive duration", g.timeout)}
	}
	base, err := parseAdminURL(g.url)
	if err != nil {
		return usageError{err.Error()}
	}
	if strings.TrimSpace(g.token) == "" {
		return usageError{"no admin token: set --token or CLICKEDGE_ADMIN_TOKEN (the token given to serve or worker with --admin-token; serve --demo prints one)"}
	}
	r.client = &adminClient{base: base, token: strings.TrimSpace(g.token), timeout: g.timeout,
		hc: &http.Client{
			Timeout: g.timeout,
			// The admin API never redirects; following one could hand the
			// token to another service.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}}
	return cmd.run(r)
}

func newAdminFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseInterspersed parses fs from args, allowing flags after positional
// arguments (`links get CODE --output json`). A "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parseAdminURL checks --url; a bare host:port means http.
func parseAdminURL(s string) (*url.URL, error) {
	raw := strings.TrimSpace(s)
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--url %q: want the admin API's base URL, such as %s", s, defaultAdminURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

func adminHelp(w io.Writer, words []string) error {
	if len(words) == 0 {
		fmt.Fprint(w, adminUsage)
		return nil
	}
	res := findAdminResource(words[0])
	if res == nil {
		return usageError{fmt.Sprintf("unknown admin command %q: want %s (see clickedge admin --help)", words[0], adminResourceNames())}
	}
	fmt.Fprintf(w, "clickedge admin %s — %s\n\nUsage:\n", res.name, res.summary)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, c := range res.cmds {
		fmt.Fprintf(tw, "  clickedge admin %s %s\t%s\n", res.name, c.synopsis, c.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun \"clickedge admin %s COMMAND --help\" for the flags of a command,\n\"clickedge admin --help\" for the global flags.\n", res.name)
	return nil
}

func printAdminCommandHelp(w io.Writer, res *adminResource, cmd *adminCommand) {
	fmt.Fprintf(w, "Usage: clickedge admin %s %s\n\n%s.\n", res.name, cmd.synopsis, upperFirst(cmd.summary))
	var lines [][2]string
	for _, o := range cmd.opts {
		lines = append(lines, [2]string{"--" + o.flag + " " + o.arg, o.help})
	}
	for _, f := range cmd.fields {
		if f.createOnly && cmd.verb != "create" {
			continue
		}
		name := "--" + f.flag
		if f.kind != fBool {
			name += " " + f.arg
		}
		help := f.help
		if f.required && cmd.verb == "create" {
			help += " (required)"
		}
		lines = append(lines, [2]string{name, help})
	}
	if cmd.fields != nil {
		lines = append(lines,
			[2]string{"--json OBJECT", "JSON object of fields (API names), under the flags"},
			[2]string{"--file F", "file holding such an object (JSON, or YAML for .yaml/.yml)"})
	}
	if len(lines) > 0 {
		fmt.Fprintln(w, "\nFlags:")
		tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
		for _, l := range lines {
			help := strings.ReplaceAll(l[1], "\n", "\n\t")
			fmt.Fprintf(tw, "  %s\t%s\n", l[0], help)
		}
		tw.Flush()
	}
	if cmd.verb == "update" {
		fmt.Fprintln(w, "\nOnly the fields given are sent (a JSON merge patch); a list flag replaces the\nwhole list; --json '{\"field\":null}' clears a field.")
	}
	fmt.Fprintln(w, "\nGlobal flags: --url, --token, --output table|json, --timeout (see clickedge admin --help).")
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// ---- commands ----

func runList(path string, filters map[string]string, kind string) func(*adminRun) error {
	return func(r *adminRun) error {
		q := url.Values{}
		for flagName, param := range filters {
			if v := r.opt[flagName]; v != "" {
				q.Set(param, v)
			}
		}
		a, err := r.client.do(r.ctx, http.MethodGet, []string{path}, q, nil, "")
		if err != nil {
			return err
		}
		return r.print(a, kind)
	}
}

func runGet(path string) func(*adminRun) error {
	return func(r *adminRun) error {
		a, err := r.client.do(r.ctx, http.MethodGet, []string{path, r.args[0]}, nil, nil, "")
		if err != nil {
			return err
		}
		return r.print(a, path)
	}
}

func runCreate(path string) func(*adminRun) error {
	return func(r *adminRun) error {
		body, err := r.body()
		if err != nil {
			return err
		}
		for _, f := range r.cmd.fields {
			if !f.required {
				continue
			}
			if s, _ := body[f.key].(string); s == "" {
				return usageError{fmt.Sprintf("admin %s create: --%s is required (or %q in --json/--file)", r.res.name, f.flag, f.key)}
			}
		}
		raw, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		a, err := r.client.do(r.ctx, http.MethodPost, []string{path}, nil, raw, "application/json")
		if err != nil {
			return err
		}
		return r.print(a, path)
	}
}

func runUpdate(path string) func(*adminRun) error {
	return func(r *adminRun) error {
		body, err := r.body()
		if err != nil {
			return err
		}
		if len(body) == 0 {
			return usageError{fmt.Sprintf("admin %s update: nothing to change: give at least one flag, --json or --file (see clickedge admin %s update --help)", r.res.name, r.res.name)}
		}
		raw, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		a, err := r.client.do(r.ctx, http.MethodPatch, []string{path, r.args[0]}, nil, raw, "application/merge-patch+json")
		if err != nil {
			return err
		}
		return r.print(a, path)
	}
}

func runLinkAction(action string) func(*adminRun) error {
	return func(r *adminRun) error {
		a, err := r.client.do(r.ctx, http.MethodPost, []string{"links", r.args[0], action}, nil, nil, "")
		if err != nil {
			return err
		}
		return r.print(a, "links")
	}
}

func runKeyCreate(r *adminRun) error {
	body := map[string]any{}
	if r.set["name"] {
		body["name"] = r.opt["name"]
	}
	raw, _ := json.Marshal(body)
	a, err := r.client.do(r.ctx, http.MethodPost, []string{"merchants", r.args[0], "keys"}, nil, raw, "application/json")
	if err != nil {
		return err
	}
	if r.output == "json" {
		fmt.Fprintln(r.stderr, "The new API key is in the answer's \"key\": it is shown once, store it now.")
		return r.print(a, "keys")
	}
	var k struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(a.Data, &k); err != nil || k.Key == "" {
		return fmt.Errorf("the admin API answered without the new key: %s", compact(a.Data))
	}
	fmt.Fprintf(r.stdout, "New API key of merchant %s (shown once, store it now: only its hash is kept):\n\n    %s\n\n", r.args[0], k.Key)
	return r.printObject(a.Data, "new key")
}

var conversionStatuses = []string{"pending", "approved", "rejected", "paid"}

func runConversionList(r *adminRun) error {
	q := url.Values{}
	for flagName, param := range map[string]string{"partner": "partner_id", "campaign": "campaign_id", "status": "status", "limit": "limit", "offset": "offset"} {
		if v := r.opt[flagName]; v != "" {
			q.Set(param, v)
		}
	}
	if s := r.opt["status"]; s != "" && !contains(conversionStatuses, s) {
		return usageError{fmt.Sprintf("--status %q: want %s", s, oneOf(conversionStatuses))}
	}
	for _, name := range []string{"limit", "offset"} {
		if v := r.opt[name]; v != "" {
			if n, err := strconv.Atoi(v); err != nil || n < 0 {
				return usageError{fmt.Sprintf("--%s %q: want a non-negative integer", name, v)}
			}
		}
	}
	a, err := r.client.do(r.ctx, http.MethodGet, []string{"merchants", r.args[0], "conversions"}, q, nil, "")
	if err != nil {
		return err
	}
	if err := r.print(a, "conversions"); err != nil {
		return err
	}
	if r.output == "table" && a.Total != nil {
		var items []json.RawMessage
		if json.Unmarshal(a.Data, &items) == nil {
			offset, _ := strconv.Atoi(r.opt["offset"])
			if shown := len(items); offset+shown < *a.Total {
				fmt.Fprintf(r.stderr, "%d of %d conversions shown; --offset %d for more\n", shown, *a.Total, offset+shown)
			}
		}
	}
	return nil
}

func runStatus(status string) func(*adminRun) error {
	return func(r *adminRun) error {
		body := map[string]any{"status": status}
		if r.set["note"] {
			body["note"] = r.opt["note"]
		}
		raw, _ := json.Marshal(body)
		a, err := r.client.do(r.ctx, http.MethodPost, []string{"merchants", r.args[0], "conversions", r.args[1], "status"}, nil, raw, "application/json")
		if err != nil {
			return err
		}
		if a.State == "queued" {
			fmt.Fprintf(r.stderr, "queued: the worker has not applied the change yet; it will be when it catches up (check with: clickedge admin conversions get %s %s)\n", r.args[0], r.args[1])
		}
		return r.print(a, "conversions")
	}
}

func runPayout(r *adminRun) error {
	if r.opt["partner"] == "" {
		return usageError{"admin payouts create: --partner is required"}
	}
	body := map[string]any{"partner_id": r.opt["partner"]}
	if ref := r.opt["reference"]; ref != "" {
		body["reference"] = ref
	}
	raw, _ := json.Marshal(body)
	a, err := r.client.do(r.ctx, http.MethodPost, []string{"merchants", r.args[0], "payouts"}, nil, raw, "application/json")
	if err != nil {
		return err
	}
	if a.Status == http.StatusAccepted {
		fmt.Fprintln(r.stderr, "some conversions are queued: the worker pays them when it catches up; repeat the payout with the same --reference to see the result")
	}
	return r.print(a, "payouts")
}

func runCatalogExport(r *adminRun) error {
	a, err := r.client.do(r.ctx, http.MethodGet, []string{"catalog"}, nil, nil, "")
	if err != nil {
		return err
	}
	out := indentJSON(a.Data)
	file := r.opt["file"]
	if file == "" {
		// The catalog is data to edit and import again: JSON whatever --output.
		_, err := r.stdout.Write(out)
		return err
	}
	if isYAMLFile(file) {
		if out, err = yaml.JSONToYAML(a.Data); err != nil {
			return fmt.Errorf("convert catalog to YAML: %w", err)
		}
	}
	if err := os.WriteFile(file, out, 0o600); err != nil {
		return fmt.Errorf("write catalog: %w", err)
	}
	fmt.Fprintf(r.stderr, "catalog version %d written to %s\n", a.CatalogVersion, file)
	return nil
}

// runBackup downloads GET /admin/v1/backup into a temporary file next to
// F, checks it has the announced length, and renames it to F: a partial
// download never replaces a good copy.
func runBackup(r *adminRun) error {
	file := r.opt["file"]
	if file == "" {
		return usageError{"backup save: --file is required"}
	}
	u := r.client.base.String() + "/admin/v1/backup"
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("build request GET %s: %w", u, err)
	}
	req.Header.Set("Authorization", "Bearer "+r.client.token)
	req.Header.Set("User-Agent", "clickedge-admin/"+version)
	// The copy may be large: no overall deadline, only the connection's.
	resp, err := (&http.Client{Transport: r.client.hc.Transport}).Do(req)
	if err != nil {
		return r.client.transportError(r.ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		return errors.New("the admin token was refused: set --token or CLICKEDGE_ADMIN_TOKEN")
	}
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error *struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != nil && e.Error.Code != "" {
			return &adminAPIError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
		}
		return fmt.Errorf("GET %s: the server at %s answered %s: %s (is --url the admin API?)", req.URL.Path, r.client.base, resp.Status, snippet(raw))
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), filepath.Base(file)+".part-*")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("the copy is incomplete: %d of %d bytes", n, resp.ContentLength)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	if err != nil {
		return fmt.Errorf("backup to %s: %w", file, err)
	}
	fmt.Fprintf(r.stderr, "worker store copied to %s (%d bytes)\n", file, n)
	return nil
}

func runCatalogImport(r *adminRun) error {
	file := r.args[0]
	raw, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read catalog: %w", err)
	}
	// The API reads YAML itself, so a YAML file travels as written and its
	// errors are reported by the same parser a --catalog file goes through.
	ct := "application/json"
	if isYAMLFile(file) {
		ct = "application/yaml"
	}
	a, err := r.client.do(r.ctx, http.MethodPut, []string{"catalog"}, nil, raw, ct)
	if err != nil {
		return err
	}
	if r.output == "json" {
		return r.print(a, "catalog")
	}
	var c struct {
		Version   uint64            `json:"version"`
		Merchants []json.RawMessage `json:"merchants"`
		Campaigns []json.RawMessage `json:"campaigns"`
		Partners  []json.RawMessage `json:"partners"`
		Links     []json.RawMessage `json:"links"`
	}
	if err := json.Unmarshal(a.Data, &c); err != nil {
		return fmt.Errorf("decode catalog answer: %w", err)
	}
	fmt.Fprintf(r.stdout, "catalog imported as version %d: %d merchants, %d campaigns, %d partners, %d links\n",
		c.Version, len(c.Merchants), len(c.Campaigns), len(c.Partners), len(c.Links))
	return nil
}

func isYAMLFile(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ---- request bodies ----

// body builds the create or update body: --json or --file, then the flags
// on top.
func (r *adminRun) body() (map[string]any, error) {
	name := "admin " + r.res.name + " " + r.cmd.verb
	body := map[string]any{}
	switch {
	case r.jsonArg != "" && r.file != "":
		return nil, usageError{name + ": give --json or --file, not both"}
	case r.jsonArg != "":
		if err := decodeObject([]byte(r.jsonArg), &body); err != nil {
			return nil, usageError{fmt.Sprintf("%s: --json: %v", name, err)}
		}
	case r.file != "":
		raw, err := os.ReadFile(r.file)
		if err != nil {
			return nil, fmt.Errorf("%s: read --file: %w", name, err)
		}
		if isYAMLFile(r.file) {
			if raw, err = yaml.YAMLToJSON(raw); err != nil {
				return nil, usageError{fmt.Sprintf("%s: --file %s: %v", name, r.file, err)}
			}
		}
		if err := decodeObject(raw, &body); err != nil {
			return nil, usageError{fmt.Sprintf("%s: --file %s: %v", name, r.file, err)}
		}
	}
	var commissions []string
	for _, f := range r.cmd.fields {
		if !r.set[f.flag] {
			continue
		}
		switch f.kind {
		case fString:
			v := *r.fieldVals[f.flag]
			if err := checkEnum(f.flag, v); err != nil {
				return nil, err
			}
			body[f.key] = v
		case fStrings:
			body[f.key] = []string(*r.listVals[f.flag])
		case fBool:
			body[f.key] = *r.boolVals[f.flag]
		case fDuration:
			secs, err := durationSeconds(*r.fieldVals[f.flag])
			if err != nil {
				return nil, usageError{fmt.Sprintf("--%s: %v", f.flag, err)}
			}
			body[f.key] = secs
		case fInt:
			v := *r.fieldVals[f.flag]
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || n < 0 {
				return nil, usageError{fmt.Sprintf("--%s %q: want a non-negative integer", f.flag, v)}
			}
			body[f.key] = n
		case fCommission:
			commissions = *r.listVals[f.flag]
		}
	}
	if len(commissions) > 0 {
		rules, err := r.commissionRules(commissions, body)
		if err != nil {
			return nil, err
		}
		body["commissions"] = rules
	}
	return body, nil
}

// checkEnum refuses, before any request, values the API could only refuse.
func checkEnum(flagName, v string) error {
	var allowed []string
	switch flagName {
	case "attribution":
		allowed = []string{"last_click", "first_click"}
	case "cookie-holds":
		allowed = []string{"click_id", "partner_key"}
	default:
		return nil
	}
	if !contains(allowed, v) {
		return usageError{fmt.Sprintf("--%s %q: want %s", flagName, v, oneOf(allowed))}
	}
	return nil
}

// commissionRules parses --commission specs. A flat amount needs the
// campaign's currency: --currency, else the body's currency, else (update)
// the stored campaign's, else the API's default, USD.
func (r *adminRun) commissionRules(specs []string, body map[string]any) ([]commissionRule, error) {
	code, _ := body["currency"].(string)
	if code == "" && r.cmd.verb == "update" && specsNeedCurrency(specs) {
		a, err := r.client.do(r.ctx, http.MethodGet, []string{"campaigns", r.args[0]}, nil, nil, "")
		if err != nil {
			return nil, fmt.Errorf("look up the campaign's currency for --commission flat=: %w", err)
		}
		var c struct {
			Currency string `json:"currency"`
		}
		if err := json.Unmarshal(a.Data, &c); err != nil {
			return nil, fmt.Errorf("decode campaign %s: %w", r.args[0], err)
		}
		code = c.Currency
	}
	if code == "" {
		code = money.DefaultCurrency
	}
	cur, err := money.LookupCurrency(code)
	if err != nil {
		if specsNeedCurrency(specs) {
			return nil, usageError{fmt.Sprintf("--commission: campaign currency %q: %v", code, err)}
		}
		cur = money.Currency{Code: code, Exponent: 2} // unused: no flat amount
	}
	rules := make([]commissionRule, 0, len(specs))
	for _, s := range specs {
		rule, err := parseCommission(s, cur)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--commission: %v", err)}
		}
		rules = append(rules, rule)
	}
	return rules, nil
}

func specsNeedCurrency(specs []string) bool {
	for _, s := range specs {
		for _, part := range strings.Split(s, ",") {
			if k, _, _ := strings.Cut(part, "="); strings.TrimSpace(k) == "flat" {
				return true
			}
		}
	}
	return false
}

// commissionRule is a campaign's commission rule as the API takes it.
type commissionRule struct {
	Type        string `json:"type,omitempty"`
	ProductID   string `json:"product_id,omitempty"`
	ProductType string `json:"product_type,omitempty"`
	PercentBPS  int64  `json:"percent_bps,omitempty"`
	FlatMinor   int64  `json:"flat_minor,omitempty"`
}

// parseCommission parses a --commission spec: comma-separated key=value
// pairs among type, product_id, product_type, percent (decimal percent,
// exactly into basis points: 12.5 is 1250), flat (a decimal amount of cur,
// exactly into minor units: 5.00 USD is 500), percent_bps and flat_minor
// (the integers themselves). A rule must say what it pays (percent and/or
// flat, which may be 0 to pay nothing for a match).
func parseCommission(spec string, cur money.Currency) (commissionRule, error) {
	var rule commissionRule
	seen := map[string]bool{}
	if strings.TrimSpace(spec) == "" {
		return rule, fmt.Errorf("empty spec: want e.g. type=sale,percent=10")
	}
	for _, part := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return rule, fmt.Errorf("%q: %q is not key=value", spec, strings.TrimSpace(part))
		}
		if v == "" {
			return rule, fmt.Errorf("%q: %s has no value", spec, k)
		}
		if strings.Contains(v, "=") {
			return rule, fmt.Errorf("%q: %s=%s: a value cannot hold '='", spec, k, v)
		}
		group := k
		switch k {
		case "percent_bps":
			group = "percent"
		case "flat_minor":
			group = "flat"
		}
		if seen[group] {
			return rule, fmt.Errorf("%q: %s given twice", spec, group)
		}
		seen[group] = true
		switch k {
		case "type":
			rule.Type = v
		case "product_id":
			rule.ProductID = v
		case "product_type":
			rule.ProductType = v
		case "percent":
			bps, err := money.ParseRate(strings.TrimSuffix(v, "%"))
			if err != nil {
				return rule, fmt.Errorf("%q: percent: %v", spec, err)
			}
			rule.PercentBPS = bps
		case "percent_bps":
			bps, err := strconv.ParseInt(v, 10, 64)
			if err != nil || bps < 0 || bps > money.MaxRate {
				return rule, fmt.Errorf("%q: percent_bps %q: want an integer from 0 to %d", spec, v, money.MaxRate)
			}
			rule.PercentBPS = bps
		case "flat":
			minor, err := money.Parse(v, cur, false)
			if err != nil {
				return rule, fmt.Errorf("%q: flat: %v", spec, err)
			}
			rule.FlatMinor = minor
		case "flat_minor":
			minor, err := strconv.ParseInt(v, 10, 64)
			if err != nil || minor < 0 || minor > money.MaxMinor {
				return rule, fmt.Errorf("%q: flat_minor %q: want an integer from 0 to %d", spec, v, money.MaxMinor)
			}
			rule.FlatMinor = minor
		default:
			return rule, fmt.Errorf("%q: unknown key %q: want type, product_id, product_type, percent, flat, percent_bps or flat_minor", spec, k)
		}
	}
	if !seen["percent"] && !seen["flat"] {
		return rule, fmt.Errorf("%q: say what the rule pays with percent= and/or flat=", spec)
	}
	return rule, nil
}

// formatCommission renders a rule as a --commission spec.
func formatCommission(rule map[string]any, cur money.Currency) string {
	var parts []string
	for _, k := range []string{"type", "product_id", "product_type"} {
		if s, _ := rule[k].(string); s != "" {
			parts = append(parts, k+"="+s)
		}
	}
	bps, hasBPS := jsonInt(rule["percent_bps"])
	flat, hasFlat := jsonInt(rule["flat_minor"])
	if hasBPS || !hasFlat {
		parts = append(parts, "percent="+formatPercent(bps))
	}
	switch {
	case hasFlat && cur.Exponent < 0: // unknown currency: keep the integer
		parts = append(parts, "flat_minor="+strconv.FormatInt(flat, 10))
	case hasFlat:
		parts = append(parts, "flat="+money.Format(flat, cur))
	}
	return strings.Join(parts, ",")
}

// formatPercent renders basis points as a percentage: 1250 is "12.5".
func formatPercent(bps int64) string {
	s := money.Format(bps, money.Currency{Code: "%", Exponent: 2})
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// durationSeconds converts a Go duration to whole seconds.
func durationSeconds(s string) (int64, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q: want a duration such as 720h, 90m or 0s", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q: must not be negative", s)
	}
	if d%time.Second != 0 {
		return 0, fmt.Errorf("%q: want whole seconds", s)
	}
	return int64(d / time.Second), nil
}

// decodeObject decodes one JSON object, keeping numbers exact.
func decodeObject(raw []byte, v *map[string]any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	m, ok := x.(map[string]any)
	if !ok {
		return errors.New("want a JSON object")
	}
	*v = m
	return nil
}

// ---- HTTP ----

// adminClient sends requests to the admin API.
type adminClient struct {
	base    *url.URL
	token   string
	timeout time.Duration
	hc      *http.Client
}

// adminAnswer is a successful answer's envelope.
type adminAnswer struct {
	Status         int             `json:"-"`
	Data           json.RawMessage `json:"data"`
	CatalogVersion uint64          `json:"catalog_version"`
	Total          *int            `json:"total"`
	State          string          `json:"status"`
}

// adminAPIError is an error answer of the admin API.
type adminAPIError struct {
	Status        int
	Code, Message string
}

func (e *adminAPIError) Error() string { return "error: " + e.Code + ": " + e.Message }

// do sends one request to /admin/v1/SEGMENTS (each segment path-escaped).
func (c *adminClient) do(ctx context.Context, method string, segments []string, q url.Values, body []byte, contentType string) (*adminAnswer, error) {
	esc := make([]string, len(segments))
	for i, s := range segments {
		esc[i] = url.PathEscape(s)
	}
	u := c.base.String() + "/admin/v1/" + strings.Join(esc, "/")
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("build request %s %s: %w", method, u, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "clickedge-admin/"+version)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, adminAnswerLimit))
	if err != nil {
		return nil, fmt.Errorf("read answer of %s %s: %w", method, req.URL.Path, c.transportError(ctx, err))
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return nil, errors.New("the admin token was refused: set --token or CLICKEDGE_ADMIN_TOKEN")
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error *struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != nil && e.Error.Code != "" {
			return nil, &adminAPIError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
		}
		return nil, fmt.Errorf("%s %s: the server at %s answered %s: %s (is --url the admin API?)",
			method, req.URL.Path, c.base, resp.Status, snippet(raw))
	}
	a := &adminAnswer{Status: resp.StatusCode}
	if err := json.Unmarshal(raw, a); err != nil || len(a.Data) == 0 {
		return nil, fmt.Errorf("%s %s: the server at %s answered %s without a JSON data field: %s (is --url the admin API?)",
			method, req.URL.Path, c.base, resp.Status, snippet(raw))
	}
	return a, nil
}

func (c *adminClient) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ue *url.Error
	if errors.As(err, &ue) && ue.Timeout() {
		return fmt.Errorf("the admin API at %s did not answer within %s (--timeout)", c.base, c.timeout)
	}
	var op *net.OpError
	if errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &op) && op.Op == "dial") {
		cause := err
		if op != nil || errors.As(err, &op) {
			cause = op.Err // "connect: connection refused", without the repeated URL
		}
		return fmt.Errorf("cannot reach the admin API at %s: is clickedge running with --admin-listen and --admin-token? (%w)", c.base, cause)
	}
	return fmt.Errorf("admin API at %s: %w", c.base, err)
}

func snippet(raw []byte) string {
	s := strings.TrimSpace(string(raw))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return strconvQuoteIfNeeded(s)
}

func strconvQuoteIfNeeded(s string) string {
	for _, c := range s {
		if c < 0x20 {
			return strconv.Quote(s)
		}
	}
	return s
}

// ---- output ----

// print writes an answer's data: pretty JSON, or a table of kind.
func (r *adminRun) print(a *adminAnswer, kind string) error {
	if r.output == "json" {
		_, err := r.stdout.Write(indentJSON(a.Data))
		return err
	}
	d := bytes.TrimSpace(a.Data)
	if len(d) > 0 && d[0] == '[' {
		return r.printList(d, kind)
	}
	return r.printObject(d, kind)
}

func indentJSON(raw json.RawMessage) []byte {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		buf.Reset()
		buf.Write(raw)
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

func compact(raw []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}

// column is a column of a list table.
type column struct {
	head string
	val  func(map[string]any) string
}

func col(head, key string) column {
	return column{head, func(o map[string]any) string { return cell(o[key], key, o) }}
}

var listColumns = map[string][]column{
	"merchants": {col("ID", "id"), col("NAME", "name"), col("COOKIE_DOMAIN", "cookie_domain"), col("ALLOWED_DOMAINS", "allowed_domains"),
		{"KEYS", func(o map[string]any) string {
			n := 0
			if l, ok := o["api_key_hashes"].([]any); ok {
				n += len(l)
			}
			if l, ok := o["api_keys"].([]any); ok {
				for _, k := range l {
					if km, ok := k.(map[string]any); ok && km["revoked_at"] == nil {
						n++
					}
				}
			}
			return strconv.Itoa(n)
		}},
		col("FALLBACK_URL", "fallback_url")},
	"keys": {col("ID", "id"), col("NAME", "name"), col("PREFIX", "prefix"), col("CREATED", "created_at"), col("REVOKED", "revoked_at")},
	"campaigns": {col("ID", "id"), col("MERCHANT", "merchant_id"), col("NAME", "name"), col("CURRENCY", "currency"),
		col("WINDOW", "window_seconds"), col("ATTRIBUTION", "attribution"), col("DESTINATION", "default_destination")},
	"partners": {col("ID", "id"), col("MERCHANT", "merchant_id"), col("KEY", "key"), col("EMAIL", "email"), col("COUPONS", "coupon_codes")},
	"links": {col("CODE", "code"), col("CAMPAIGN", "campaign_id"), col("PARTNER", "partner_id"),
		{"STATUS", func(o map[string]any) string {
			if p, _ := o["paused"].(bool); p {
				return "paused"
			}
			return "active"
		}},
		col("DESTINATION", "destination")},
	"conversions": {col("ID", "id"), col("UNIQUE_ID", "unique_id"), col("TYPE", "type"), col("STATUS", "status"),
		col("AMOUNT", "amount_minor"), col("COMMISSION", "commission_minor"), col("PARTNER", "partner_id"),
		col("CAMPAIGN", "campaign_id"), col("CREATED", "created_at")},
	"ledger": {col("SEQ", "seq"), col("TIME", "ts"), col("KIND", "kind"), col("AMOUNT", "amount_minor"),
		col("CONVERSION", "conversion_id"), col("NOTE", "note")},
}

func decodeAny(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

func (r *adminRun) printList(raw []byte, kind string) error {
	v, err := decodeAny(raw)
	if err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	items, _ := v.([]any)
	if len(items) == 0 {
		fmt.Fprintf(r.stderr, "no %s\n", kind)
		return nil
	}
	return writeTable(r.stdout, listColumns[kind], items)
}

func writeTable(w io.Writer, cols []column, items []any) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if cols == nil { // unknown shape: one compact JSON line per item
		for _, it := range items {
			b, _ := json.Marshal(it)
			fmt.Fprintln(tw, string(b))
		}
		return tw.Flush()
	}
	heads := make([]string, len(cols))
	for i, c := range cols {
		heads[i] = c.head
	}
	fmt.Fprintln(tw, strings.Join(heads, "\t"))
	for _, it := range items {
		o, _ := it.(map[string]any)
		vals := make([]string, len(cols))
		for i, c := range cols {
			vals[i] = c.val(o)
			if vals[i] == "" {
				vals[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(vals, "\t"))
	}
	return tw.Flush()
}

// printObject prints one object as KEY VALUE rows in the API's field order.
func (r *adminRun) printObject(raw []byte, kind string) error {
	fields, err := orderedFields(raw)
	if err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	obj := map[string]any{}
	for _, f := range fields {
		obj[f.key] = f.val
	}
	var ledger []any
	tw := tabwriter.NewWriter(r.stdout, 0, 0, 3, ' ', 0)
	for _, f := range fields {
		if kind == "balance" && f.key == "ledger" {
			ledger, _ = f.val.([]any)
			continue
		}
		if kind == "new key" && f.key == "key" {
			continue // printed on its own above
		}
		for i, v := range objectValues(f.key, f.val, obj) {
			k := f.key
			if i > 0 {
				k = ""
			}
			if v == "" {
				v = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if kind == "balance" {
		fmt.Fprintln(r.stdout)
		if len(ledger) == 0 {
			fmt.Fprintln(r.stdout, "no ledger entries")
			return nil
		}
		for _, e := range ledger {
			// Ledger amounts are in their own currency; default to the balance's.
			if m, ok := e.(map[string]any); ok && m["currency"] == nil {
				m["currency"] = obj["currency"]
			}
		}
		return writeTable(r.stdout, listColumns["ledger"], ledger)
	}
	return nil
}

type orderedField struct {
	key string
	val any
}

func orderedFields(raw []byte) ([]orderedField, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("want a JSON object, got %s", snippet(raw))
	}
	var out []orderedField
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, orderedField{key, v})
	}
	return out, nil
}

// objectValues renders one field of an object as one or more rows.
func objectValues(key string, v any, obj map[string]any) []string {
	list, ok := v.([]any)
	if !ok {
		return []string{cell(v, key, obj)}
	}
	if len(list) == 0 {
		return []string{""}
	}
	if _, nested := list[0].(map[string]any); !nested {
		return []string{cell(v, key, obj)}
	}
	out := make([]string, 0, len(list))
	for _, it := range list {
		m, _ := it.(map[string]any)
		out = append(out, nestedCell(key, m, obj))
	}
	return out
}

// nestedCell renders an element of a list of objects on one row.
func nestedCell(key string, m map[string]any, parent map[string]any) string {
	switch key {
	case "commissions":
		return formatCommission(m, currencyOf(parent))
	case "api_keys":
		s := cell(m["id"], "id", m) + "  " + cell(m["prefix"], "prefix", m)
		if n := cell(m["name"], "name", m); n != "" {
			s += "  " + n
		}
		if m["revoked_at"] != nil {
			s += "  revoked " + cell(m["revoked_at"], "revoked_at", m)
		}
		return s
	case "totals":
		return cell(m["amount_minor"], "amount_minor", m)
	case "rejected":
		return fmt.Sprintf("%s: %s: %s", cell(m["conversion_id"], "", m), cell(m["code"], "", m), cell(m["message"], "", m))
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// currencyOf is the currency of an object's *_minor amounts (the API's
// default, USD, when it names none).
func currencyOf(obj map[string]any) money.Currency {
	code, _ := obj["currency"].(string)
	if code == "" {
		code = money.DefaultCurrency
	}
	cur, err := money.LookupAnyCurrency(code)
	if err != nil {
		return money.Currency{Code: code, Exponent: -1}
	}
	return cur
}

// cell renders a value for a table. Amounts (*_minor) show in their
// currency, Unix-millisecond and RFC 3339 times (*_at, ts) in UTC seconds,
// *_seconds as durations.
func cell(v any, key string, obj map[string]any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		if strings.HasSuffix(key, "_at") {
			if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
				return t.UTC().Format(time.RFC3339)
			}
		}
		return clean(x)
	case bool:
		return strconv.FormatBool(x)
	case json.Number:
		n, err := x.Int64()
		if err != nil {
			return x.String()
		}
		switch {
		case strings.HasSuffix(key, "_minor"):
			cur := currencyOf(obj)
			if cur.Exponent < 0 {
				return x.String() + " (minor units of " + cur.Code + ")"
			}
			return money.Format(n, cur) + " " + cur.Code
		case strings.HasSuffix(key, "_at") || key == "ts":
			if n > 0 {
				return time.UnixMilli(n).UTC().Format(time.RFC3339)
			}
		case strings.HasSuffix(key, "_seconds"):
			return (time.Duration(n) * time.Second).String()
		}
		return x.String()
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			parts = append(parts, cell(e, "", obj))
		}
		return strings.Join(parts, ",")
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// clean keeps one value on one table row.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func jsonInt(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	return i, err == nil
}
