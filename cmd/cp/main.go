// Command cp runs the FluxForge control plane: the task API, the scheduler
// and the agent protocol on one port (default :8080), with Prometheus
// metrics at /metrics.
//
// Every flag has an environment twin FLUX_<FLAG> (dashes become
// underscores); a flag on the command line wins over its variable:
//
//	FLUX_LOG_LEVEL=info FLUX_SCHEDULER_MODE=NORMAL cp -listen :8080 -queue-capacity 1000
//
// SIGTERM or SIGINT stops it gracefully: /readyz turns 503, the listener
// closes, in-flight requests finish (up to -shutdown-timeout), then the
// reconcile loop and the delivery workers stop. State is in memory: a
// restart clears the queue, the timeline and the idempotency cache (drain
// first: POST /admin/mode {"mode":"DRAINING"}).
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/fluxforge/fluxforge/cmd/internal/envflag"
	"github.com/fluxforge/fluxforge/cmd/internal/serve"
	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp"
)

// config is everything main needs, parsed from flags and environment.
type config struct {
	Listen            string
	LogLevel          slog.Level
	Core              core.Config
	AdminToken        string
	AgentToken        string
	ReconcileInterval time.Duration
	ShutdownTimeout   time.Duration
}

// errUsage marks a configuration error: exit status 2.
var errUsage = envflag.ErrUsage

// parseConfig reads flags from args, falling back to FLUX_<FLAG> variables
// from getenv for flags not given on the command line.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	def := core.DefaultConfig()
	fs := flag.NewFlagSet("cp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", ":8080", "address to serve the API, the agent protocol and /metrics on")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error (JSON logs on stderr)")
	mode := fs.String("scheduler-mode", string(core.ModeNormal), "initial scheduler mode: NORMAL, DEGRADED, READ_ONLY or DRAINING")
	queueCap := fs.Int("queue-capacity", def.QueueCapacity, "maximum QUEUED tasks; submissions beyond it get 429")
	adminToken := fs.String("admin-token", "", "when set, /admin/*, queue purge and agent quarantine/release require Authorization: Bearer <token> (prefer FLUX_ADMIN_TOKEN)")
	agentToken := fs.String("agent-token", "", "when set, agents must present it and the cp sends it to them (prefer FLUX_AGENT_TOKEN)")
	hbInterval := fs.Duration("heartbeat-interval", def.HeartbeatInterval, "heartbeat interval agents are expected to keep (health scoring)")
	hbTimeout := fs.Duration("heartbeat-timeout", def.HeartbeatTimeout, "an agent silent this long is disconnected")
	lostAfter := fs.Duration("lost-after", def.LostAfter, "a disconnected agent's tasks are rescheduled after this")
	assignTimeout := fs.Duration("assign-timeout", def.AssignTimeout, "an assignment the agent never confirms is requeued after this")
	reconcile := fs.Duration("reconcile-interval", cp.DefaultReconcileInterval, "how often the reconcile pass runs")
	shutdown := fs.Duration("shutdown-timeout", 15*time.Second, "how long SIGTERM waits for in-flight requests")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cp [flags]\n\nEvery flag has an environment twin FLUX_<FLAG> (e.g. FLUX_QUEUE_CAPACITY); the flag wins.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := envflag.Parse(fs, args, getenv); err != nil {
		return config{}, err
	}

	cfg := config{Listen: *listen, AdminToken: *adminToken, AgentToken: *agentToken,
		ReconcileInterval: *reconcile, ShutdownTimeout: *shutdown}
	if err := cfg.LogLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return config{}, fmt.Errorf("%w: log level (-log-level / FLUX_LOG_LEVEL) %q is not one of debug, info, warn, error", errUsage, *logLevel)
	}
	m, err := core.ParseMode(strings.TrimSpace(*mode))
	if err != nil {
		return config{}, fmt.Errorf("%w: scheduler mode (-scheduler-mode / FLUX_SCHEDULER_MODE) %q is not one of NORMAL, DEGRADED, READ_ONLY, DRAINING", errUsage, *mode)
	}
	c := def
	c.InitialMode = m
	c.QueueCapacity = *queueCap
	c.TasksMax = max(c.TasksMax, 2*c.QueueCapacity)
	c.HeartbeatInterval, c.HeartbeatTimeout = *hbInterval, *hbTimeout
	c.LostAfter, c.AssignTimeout = *lostAfter, *assignTimeout
	if err := c.Validate(); err != nil {
		return config{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	if cfg.ReconcileInterval < time.Millisecond {
		return config{}, fmt.Errorf("%w: -reconcile-interval %v must be at least 1ms", errUsage, cfg.ReconcileInterval)
	}
	if cfg.ShutdownTimeout <= 0 {
		return config{}, fmt.Errorf("%w: -shutdown-timeout must be > 0", errUsage)
	}
	cfg.Core = c
	return cfg, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil))
}

// run starts the control plane and blocks until ctx is done (a signal in
// main), then shuts down gracefully. It sends the listening address on ready
// (tests use it) and returns the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, ready chan<- string) int {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "cp: %v\n", strings.TrimPrefix(err.Error(), "usage: "))
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	cfg.Core.TaskIDPrefix = startTaskIDPrefix()
	s, err := cp.New(cp.Options{Clock: clock.New(), Logger: logger, Core: cfg.Core,
		AdminToken: cfg.AdminToken, AgentToken: cfg.AgentToken, ReconcileInterval: cfg.ReconcileInterval})
	if err != nil {
		logger.Error("cannot start", "error", err.Error())
		return 2
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		logger.Error("cannot listen", "listen", cfg.Listen, "error", err.Error())
		return 1
	}
	srv := serve.HTTPServer(s.Handler(), logger)
	loopCtx, stopLoops := context.WithCancel(context.Background())
	loopsDone := make(chan struct{})
	go func() {
		defer close(loopsDone)
		_ = s.Run(loopCtx)
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("listening", "listen", ln.Addr().String(), "mode", string(cfg.Core.InitialMode),
		"queue_capacity", cfg.Core.QueueCapacity, "admin_token", cfg.AdminToken != "", "agent_token", cfg.AgentToken != "")
	if ready != nil {
		ready <- ln.Addr().String()
	}

	status := 0
	select {
	case <-ctx.Done():
		logger.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	case err := <-serveErr:
		logger.Error("server failed", "error", err.Error())
		status = 1
	}
	s.BeginShutdown()
	shCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shCtx); err != nil {
		logger.Warn("in-flight requests did not finish in time", "error", err.Error())
		status = 1
	}
	stopLoops()
	<-loopsDone
	logger.Info("stopped")
	return status
}

// startTaskIDPrefix makes task ids unique per start: the id counter begins
// again after a restart while agents may still run the previous start's
// tasks, and an agent must never mistake a new task for an old one.
func startTaskIDPrefix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("t-%x-", b)
}
