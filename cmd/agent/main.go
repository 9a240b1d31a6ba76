// Command agent runs a FluxForge agent: it registers with the control plane
// by heartbeating to it, long-polls it for assignments and cancels, and runs
// them (kind sleep always, kind exec only with -allow-exec). The agent dials
// in: the cp never connects to it, so it works behind NAT and firewalls.
// It talks HTTP/1.1 to the cp over two connections (the long poll, the
// heartbeats); -cp-http1=false puts both on one HTTP/2 connection
// (cleartext h2c for an http:// -cp, ALPN for https://), which halves the
// cp's file descriptors for a large fleet but costs both sides more CPU
// per message.
//
// -listen (default :9090) serves /metrics, /healthz, /readyz and /v1/status
// only, for scraping and probes; -listen none opens no port at all.
//
// Every flag has an environment twin FLUX_<FLAG> (e.g. FLUX_AGENT_TOKEN for
// -agent-token); the flag wins. FLUX_LOG_LEVEL (debug|info|warn|error) sets
// the level of the JSON logs on stderr. SIGTERM or SIGINT stops the agent
// gracefully: no new work, running tasks get -shutdown-grace to finish, and
// their results are reported before it exits.
//
// The cp sets the heartbeat interval: the agent adopts the cp's when it
// registers, unless -heartbeat-interval (or FLUX_HEARTBEAT_INTERVAL) is
// given, which then wins for this agent.
//
// The cp takes heartbeats and polls only with its agent token: set the same
// -agent-token on both (prefer FLUX_AGENT_TOKEN: flags show in ps).
//
// -advertise and FLUX_ADVERTISE are gone (the cp no longer pushes to
// agents): the flag is refused with a message saying so, the variable is
// ignored with a warning.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fluxforge/fluxforge/agent"
	"github.com/fluxforge/fluxforge/cmd/internal/envflag"
	"github.com/fluxforge/fluxforge/cmd/internal/serve"
	"github.com/fluxforge/fluxforge/core"
)

type config struct {
	Listen            string
	CPURL             string
	ID                string
	Domain            string
	Slots             int
	CPHTTP1           bool
	AgentToken        string
	HeartbeatInterval time.Duration
	// HeartbeatIntervalSet: the user gave -heartbeat-interval (or its
	// twin), so the agent keeps it instead of the cp's.
	HeartbeatIntervalSet bool
	AllowExec            bool
	ShutdownGrace        time.Duration
	LogLevel             slog.Level
	TLSCA                string
	TLSCert              string
	TLSKey               string
	PprofAddr            string
}

var errUsage = envflag.ErrUsage

// parseConfig reads flags from args, falling back to FLUX_<FLAG> variables
// from getenv for flags not given on the command line.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.Listen, "listen", ":9090", "address to serve /metrics, /healthz, /readyz and /v1/status on; none: no port at all")
	fs.StringVar(&c.CPURL, "cp", "http://127.0.0.1:8080", "base URL of the control plane, or of every cp of a cluster comma-separated (the agent follows the leader)")
	fs.StringVar(&c.ID, "id", host, "agent id (letters, digits, '-', '_', '.'); default the hostname")
	fs.StringVar(&c.Domain, "domain", "default", "failure domain (zone) of this agent")
	fs.IntVar(&c.Slots, "slots", 4, "tasks run at once at most")
	fs.BoolVar(&c.CPHTTP1, "cp-http1", true, "talk HTTP/1.1 to the cp (two connections: the long poll, the heartbeats); false: HTTP/2 over one connection (h2c for http://), half the cp's file descriptors for more CPU per message")
	fs.StringVar(&c.AgentToken, "agent-token", "", "shared token: sent to the cp and required on /v1/status (prefer FLUX_AGENT_TOKEN)")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", agent.HeartbeatIntervalDefault, "interval between heartbeats to the cp; when not given, the agent adopts the cp's once registered (this default until then)")
	fs.BoolVar(&c.AllowExec, "allow-exec", false, "run kind exec tasks (argv, no shell, PATH-only environment)")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", agent.ShutdownGraceDefault, "on SIGTERM, how long running tasks may finish before they are cancelled")
	fs.StringVar(&c.TLSCA, "tls-ca", "", "PEM CA the cp's certificate must chain to (an https -cp); default the system's roots")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate naming this agent (CN or DNS SAN = -id): its client certificate to the cp, and its own port serves TLS with it; re-read on SIGHUP")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key of -tls-cert; re-read on SIGHUP")
	fs.StringVar(&c.PprofAddr, "pprof", "", "host:port to serve Go's profiles (/debug/pprof/) on, a listener apart from -listen; off when empty (bind it to loopback: profiles expose the process)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: agent [flags]\n\nEvery flag has an environment twin FLUX_<FLAG> (e.g. FLUX_AGENT_TOKEN); the flag wins.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "="); strings.HasPrefix(a, "-") && name == "advertise" {
			return config{}, fmt.Errorf("%w: -advertise is gone: agents dial in to the cp, which never connects to them; remove it", errUsage)
		}
	}
	given, err := envflag.Parse(fs, args, getenv)
	if err != nil {
		return config{}, err
	}
	// The cp sets the heartbeat interval unless the user did.
	c.HeartbeatIntervalSet = given.Given("heartbeat-interval")
	if err := c.LogLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return config{}, fmt.Errorf("%w: %s is not one of debug, info, warn, error", errUsage, given.Describe("log-level"))
	}
	if err := core.ValidateAgentID(core.AgentID(c.ID)); err != nil {
		return config{}, fmt.Errorf("%w: %s: %v", errUsage, given.Describe("id"), reason(err))
	}
	if err := core.ValidateDomain(c.Domain); err != nil {
		return config{}, fmt.Errorf("%w: %s: %v", errUsage, given.Describe("domain"), reason(err))
	}
	for _, ch := range []struct {
		ok       bool
		flag, is string
	}{
		{c.Slots >= 1 && c.Slots <= 1024, "slots", "must be between 1 and 1024"},
		{c.HeartbeatInterval >= 10*time.Millisecond, "heartbeat-interval", "must be at least 10ms"},
		{c.ShutdownGrace >= 0, "shutdown-grace", "must not be negative"},
		{httpURLs(c.CPURL), "cp", "must be an http(s) URL with a host, or several comma-separated"},
	} {
		if !ch.ok {
			return config{}, fmt.Errorf("%w: %s %s", errUsage, given.Describe(ch.flag), ch.is)
		}
	}
	if c.PprofAddr != "" {
		if _, _, err := net.SplitHostPort(c.PprofAddr); err != nil {
			return config{}, fmt.Errorf("%w: %s is not host:port: %v", errUsage, given.Describe("pprof"), err)
		}
	}
	if c.Listen != listenNone {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return config{}, fmt.Errorf("%w: %s is not host:port or none: %v", errUsage, given.Describe("listen"), err)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return config{}, fmt.Errorf("%w: %s and %s go together: give both, or neither", errUsage, given.Describe("tls-cert"), given.Describe("tls-key"))
	}
	return c, nil
}

// reason is a core validation error without its "core: invalid request: "
// prefix: the flag named before it is the context.
func reason(err error) string {
	return strings.TrimPrefix(err.Error(), core.ErrInvalid.Error()+": ")
}

// httpURLs reports whether s is a comma-separated list of http(s) URLs
// with a host, as agent.New requires of -cp.
func httpURLs(s string) bool {
	n := 0
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		if !httpURL(u) {
			return false
		}
		n++
	}
	return n > 0
}

// httpURL reports whether s is an http(s) URL with a host.
func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// listenNone as -listen opens no port.
const listenNone = "none"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stderr))
}

// run starts the agent and blocks until ctx is done, then stops it
// gracefully. It returns the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "agent: %v\n", strings.TrimPrefix(err.Error(), "usage: "))
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	tlsc, err := newAgentTLS(cfg, logger)
	if err != nil {
		logger.Error("cannot start", "error", err.Error())
		return 2
	}
	if getenv("FLUX_ADVERTISE") != "" {
		logger.Warn("FLUX_ADVERTISE is ignored: agents dial in to the cp, which never connects to them; remove it")
	}
	var ln net.Listener
	if cfg.Listen != listenNone {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			logger.Error("cannot listen", "listen", cfg.Listen, "error", err.Error())
			return 1
		}
		ln = tlsc.listen(ln)
	}
	stopPprof, err := serve.Pprof(cfg.PprofAddr, logger)
	if err != nil {
		return 1
	}
	defer stopPprof()
	var httpClient *http.Client
	if tlsc != nil {
		httpClient = tlsc.httpClient()
		stopHUP := make(chan struct{})
		defer close(stopHUP)
		tlsc.reloadOnHUP(stopHUP)
	}
	interval := cfg.HeartbeatInterval
	if !cfg.HeartbeatIntervalSet {
		interval = 0 // the cp's, once registered
	}
	d, err := agent.New(agent.Options{
		ID: core.AgentID(cfg.ID), Domain: cfg.Domain, Slots: cfg.Slots, CPURL: cfg.CPURL, CPHTTP1: cfg.CPHTTP1,
		Token: cfg.AgentToken, HeartbeatInterval: interval, AllowExec: cfg.AllowExec,
		ShutdownGrace: cfg.ShutdownGrace, Logger: logger, HTTPClient: httpClient,
	})
	if err != nil {
		if ln != nil {
			_ = ln.Close()
		}
		logger.Error("cannot start", "error", err.Error())
		return 2
	}
	serveErr := make(chan error, 1)
	var srv *http.Server
	if ln != nil {
		srv = serve.HTTPServer(d.Handler(), logger)
		go func() { serveErr <- srv.Serve(ln) }()
		logger.Info("listening", "listen", ln.Addr().String())
	} else {
		logger.Info("no local port (-listen none): metrics and probes only through the cp")
	}

	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		_ = d.Run(runCtx)
	}()
	status := 0
	select {
	case <-runDone:
	case err := <-serveErr:
		logger.Error("server failed", "error", err.Error())
		status = 1
	}
	// Run drains (heartbeats go on, the cp may still cancel) while the
	// server keeps serving; then the server goes.
	stopRun()
	<-runDone
	if srv != nil {
		shCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shCtx)
	}
	logger.Info("stopped")
	return status
}
