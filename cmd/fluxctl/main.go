// Command fluxctl is the FluxForge operator CLI. It talks to the control
// plane's HTTP API and prints human tables (or the raw JSON with -o json).
//
//	fluxctl snapshot
//	fluxctl mode get
//	fluxctl mode set DRAINING -reason "restart for upgrade"
//	fluxctl submit -sleep 200ms -domain zone-a -priority high -key job-42
//	fluxctl submit -exec -- /bin/echo hi
//	fluxctl submit -f tasks.jsonl -batch 500   (one task JSON a line; -f - reads stdin)
//	fluxctl tasks -state QUEUED -domain zone-a -limit 50
//	fluxctl task t-000042
//	fluxctl cancel t-000042
//	fluxctl agents
//	fluxctl agent edge-7
//	fluxctl quarantine edge-7 -reason "bad disk" | fluxctl release edge-7
//	fluxctl purge -all | -domain zone-a | -older-than 10m
//	fluxctl timeline -since 120 -limit 50
//	fluxctl bench -n 20000 -c 32   (load generator: submissions/s, p50/p99)
//	fluxctl bench disk -dir /var/lib/fluxforge   (the disk's fsync latency: the floor of the cp's tail)
//
// The control plane is -cp (default http://127.0.0.1:8080, env FLUX_CP); the
// admin token comes from FLUX_ADMIN_TOKEN. Global flags go before or after
// the subcommand.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/fluxforge/fluxforge/cp/client"
)

// The commands live by area: tasks.go (submit, tasks, task, cancel),
// agents.go (agents, agent, quarantine, release), admin.go (snapshot, mode,
// purge), timeline.go, bench.go (the load generator), disk.go (bench disk:
// the data dir's fsync latency) and output.go (tables and -o json). The
// HTTP client is package cp/client.

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// stdin is what submit -f - reads (tests replace it).
var stdin io.Reader = os.Stdin

// cli holds the global options and the output streams.
type cli struct {
	cpURL  string
	output string
	token  string
	// TLS: --cacert, --cert, --key (FLUX_CACERT, FLUX_CERT, FLUX_KEY).
	cacert, cert, key string
	tlsDone           bool
	stdout            io.Writer
	stderr            io.Writer
	http              *http.Client
}

// api is a client of the cp named by -cp (known only once the flags are
// parsed), sharing the cli's HTTP client.
func (c *cli) api() *client.Client {
	return &client.Client{BaseURL: c.cpURL, Token: c.token, HTTP: c.http}
}

// ctx is the context of the cli's requests; the HTTP client's timeout bounds
// each one.
func (c *cli) ctx() context.Context { return context.Background() }

const usage = `Usage: fluxctl [-cp URL] [-o table|json] COMMAND [flags] [args]

Commands:
  snapshot                      scheduler snapshot (mode, queue, domains, agents)
  mode get | mode set MODE      read or set the mode (NORMAL, DEGRADED, READ_ONLY, DRAINING) [-reason]
  submit                        submit a task: -sleep DURATION | -exec -- ARGV...; -domain -priority -timeout -max-attempts -key
  submit -f FILE|-              submit one task JSON a line in batches [-batch N, default and at most 1000]
  tasks                         list tasks [-state -domain -limit -after]
  task ID                       one task with its attempts and why it waits
  cancel ID                     cancel a task [-reason]
  agents                        list agents
  agent ID                      one agent with its health score components
  quarantine ID | release ID    operator quarantine [-reason]
  purge                         cancel queued tasks: -all | -domain D | -older-than DURATION
  timeline                      audit events [-since SEQ -limit N | -tail N]
  log export [-since 30m]       the log export (newest snapshot at or before the start, the entries after it) to stdout: backup, replay
  raft members | add ID ADDR | remove ID | transfer
                                the cps of a cluster: list, add a voter, remove one, move leadership
  bench                         load generator: -n -c -sleep; prints submissions/s and latency percentiles
  bench disk -dir DATA_DIR      how long the disk takes to make a log append durable (write + fsync; -dir
                                defaults to the cp's default, fluxforge-data):
                                -n -rate -size; p50/p99/max and a verdict (slow: p99 over 10ms or a sync over 50ms)

Common flags (before or after the command): -cp URL, -o table|json, and for
an https -cp --cacert FILE (the CA of the cp's certificate), --cert FILE and
--key FILE (a client certificate; with submit, whose -key is the idempotency
key, give --key before the command or as FLUX_KEY).

Environment: FLUX_CP (control plane URL), FLUX_ADMIN_TOKEN (the token sent
as Authorization: Bearer), FLUX_CACERT, FLUX_CERT, FLUX_KEY.
`

// run executes one command and returns the exit status: 0 ok, 1 the
// request failed, 2 usage error.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := &cli{cpURL: "http://127.0.0.1:8080", output: "table", token: getenv("FLUX_ADMIN_TOKEN"),
		cacert: getenv("FLUX_CACERT"), cert: getenv("FLUX_CERT"), key: getenv("FLUX_KEY"),
		stdout: stdout, stderr: stderr, http: &http.Client{Timeout: client.DefaultTimeout}}
	defer c.http.CloseIdleConnections()
	if v := getenv("FLUX_CP"); v != "" {
		c.cpURL = v
	}
	fs := flag.NewFlagSet("fluxctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	c.common(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := rest[0], rest[1:]
	err := c.dispatch(cmd, rest)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "fluxctl %s: %v\n", cmd, err)
		return 2
	default:
		fmt.Fprintf(stderr, "fluxctl %s: %v\n", cmd, explain(err))
		return 1
	}
}

// explain adds the CLI's hint to an error: a 401 means FLUX_ADMIN_TOKEN is
// missing or wrong.
func explain(err error) error {
	var ae *client.Error
	if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
		return fmt.Errorf("%w (set FLUX_ADMIN_TOKEN)", err)
	}
	return err
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// common registers the global flags on fs, so they work after the
// subcommand too.
func (c *cli) common(fs *flag.FlagSet) {
	fs.StringVar(&c.cpURL, "cp", c.cpURL, "control plane base URL (env FLUX_CP)")
	fs.StringVar(&c.output, "o", c.output, "output: table or json")
	fs.StringVar(&c.cacert, "cacert", c.cacert, "PEM CA the cp's certificate must chain to, for an https -cp (env FLUX_CACERT); default the system's roots")
	fs.StringVar(&c.cert, "cert", c.cert, "PEM client certificate, for a cp that asks for one (env FLUX_CERT)")
	if fs.Lookup("key") == nil { // submit's -key is the idempotency key: there, --key goes before the command
		fs.StringVar(&c.key, "key", c.key, "PEM key of --cert (env FLUX_KEY)")
	}
}

// parse parses a subcommand's flags, allowing flags and positional
// arguments in any order.
func (c *cli) parse(fs *flag.FlagSet, args []string, positional int) ([]string, error) {
	fs.SetOutput(c.stderr)
	c.common(fs)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if positional >= 0 && len(pos) != positional {
		return nil, usagef("want %d argument(s), got %d: %q", positional, len(pos), pos)
	}
	if c.output != "table" && c.output != "json" {
		return nil, usagef("-o must be table or json, not %q", c.output)
	}
	if err := c.useTLS(); err != nil {
		return nil, err
	}
	return pos, nil
}

func (c *cli) dispatch(cmd string, args []string) error {
	switch cmd {
	case "snapshot":
		return c.snapshot(args)
	case "mode":
		return c.mode(args)
	case "submit":
		return c.submit(args)
	case "tasks":
		return c.tasks(args)
	case "task":
		return c.task(args)
	case "cancel":
		return c.cancel(args)
	case "agents":
		return c.agents(args)
	case "agent":
		return c.agent(args)
	case "quarantine", "release":
		return c.quarantine(cmd, args)
	case "purge":
		return c.purge(args)
	case "timeline":
		return c.timeline(args)
	case "bench":
		return c.bench(args)
	case "log":
		return c.log(args)
	case "raft":
		return c.raft(args)
	case "help":
		fmt.Fprint(c.stdout, usage)
		return nil
	}
	return usagef("unknown command %q (see fluxctl help)", cmd)
}
