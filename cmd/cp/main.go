// Command cp runs the FluxForge control plane: the task API, the scheduler
// and the agent protocol on one port (default :8080), with Prometheus
// metrics at /metrics.
//
// Every flag has an environment twin FLUX_<FLAG> (dashes become
// underscores); a flag on the command line wins over its variable:
//
//	FLUX_LOG_LEVEL=info FLUX_SCHEDULER_MODE=NORMAL cp -listen :8080 -queue-capacity 1000
//
// The cp's -heartbeat-interval is the one agents use (they adopt it when
// they register, unless given their own); -heartbeat-timeout alone makes it
// a third of the timeout. A bad flag exits 2 with a message naming the flag
// or variable and the value as typed.
//
// SIGTERM or SIGINT stops it gracefully: /readyz turns 503, the listener
// closes, in-flight requests finish (up to -shutdown-timeout), then the
// reconcile loop stops. Agents long-poll the cp (they dial in; the cp
// never connects to an agent); held polls are answered empty at shutdown.
//
// State is durable: every change is written to a raft log in -data-dir
// (FLUX_DATA_DIR, default fluxforge-data in the working directory) and
// fsynced before it is acknowledged, so a restart (or kill -9) keeps the
// queue, the timeline, the idempotency keys, quarantines and the mode. The
// config flags and -scheduler-mode take effect on a new data dir only; on a
// restart the persisted config and mode stand and differing flags are logged
// as warnings. -in-memory runs the same log in memory (nothing survives a
// restart). A second cp on the same data dir is refused at start.
//
// -pprof ADDR (off by default) serves Go's net/http/pprof profiles
// (/debug/pprof/...) on a listener of its own at ADDR, never on the API
// port: for profiling a cp under load, e.g. -pprof 127.0.0.1:6060 and
// go tool pprof http://127.0.0.1:6060/debug/pprof/profile?seconds=10.
// Profiles expose the process's internals; bind it to loopback.
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
	"net/http"
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
	"github.com/fluxforge/fluxforge/cp/raftlog"
	"github.com/fluxforge/fluxforge/cp/timelinestore"
	"github.com/fluxforge/fluxforge/net/tlsconf"
)

// config is everything main needs, parsed from flags and environment.
type config struct {
	Listen            string
	LogLevel          slog.Level
	Core              core.Config
	AdminToken        string
	AgentToken        string
	TokensFile        string
	RequireReadToken  bool
	TLSCert           string
	TLSKey            string
	TLSClientCA       string
	ReconcileInterval time.Duration
	ShutdownTimeout   time.Duration
	DataDir           string
	InMemory          bool
	Restore           string
	TimelineRetention time.Duration
	TimelineEventsMax int
	Cluster           cp.ClusterOptions
	PprofAddr         string // "" off
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
	tokensFile := fs.String("tokens-file", "", "named tokens, one \"name role token\" a line (roles admin, submit, read, agent; # comments), re-read on SIGHUP; with operator lines, submit and cancel need a submit token")
	requireRead := fs.Bool("require-read-token", false, "reads (tasks, agents, snapshot, timeline, /metrics) need a read token too; /healthz and /readyz stay open")
	tlsCert := fs.String("tls-cert", "", "PEM certificate (chain) of the API port: with -tls-key the port serves TLS 1.2+ only; re-read on SIGHUP")
	tlsKey := fs.String("tls-key", "", "PEM private key of -tls-cert; re-read on SIGHUP")
	tlsClientCA := fs.String("tls-client-ca", "", "PEM CA of client certificates: one given is verified against it, and the agent protocol requires one whose CN or a DNS SAN is the agent id (needs -tls-cert)")
	hbInterval := fs.Duration("heartbeat-interval", def.HeartbeatInterval, "heartbeat interval the cp tells agents to keep (an agent's own -heartbeat-interval overrides it); default a third of -heartbeat-timeout when only that is given")
	hbTimeout := fs.Duration("heartbeat-timeout", def.HeartbeatTimeout, "an agent silent this long is disconnected; default 3x -heartbeat-interval when only that is given and it is not below "+def.HeartbeatTimeout.String())
	lostAfter := fs.Duration("lost-after", def.LostAfter, "a disconnected agent's tasks are rescheduled after this")
	assignTimeout := fs.Duration("assign-timeout", def.AssignTimeout, "an assignment the agent never confirms is requeued after this")
	minOpen := fs.Float64("min-open-capacity", def.Domains.MinOpenCapacity, "panic threshold: isolating failure domains never leaves less than this share (0 to 1) of the fleet's connected, unquarantined slots open; past it a failing domain is throttled instead (0 turns panic off)")
	outageFraction := fs.Float64("zone-outage-fraction", def.Domains.OutageFraction, "a zone is out (isolated as a whole) when all its agents are disconnected, or more than -zone-outage-min-agents and at least this share (0 to 1] of them")
	outageMin := fs.Int("zone-outage-min-agents", def.Domains.OutageMinAgents, "below this many disconnected agents (and short of all of them) a zone is never out: its nodes are dealt with one by one")
	reconcile := fs.Duration("reconcile-interval", cp.DefaultReconcileInterval, "how often the reconcile pass runs")
	shutdown := fs.Duration("shutdown-timeout", 15*time.Second, "how long SIGTERM waits for in-flight requests")
	dataDir := fs.String("data-dir", defaultDataDir, "directory of the durable state (the raft log and its snapshots), created if missing; one cp at a time")
	inMemory := fs.Bool("in-memory", false, "keep the state in memory only (nothing survives a restart); exclusive with -data-dir")
	restore := fs.String("restore", "", "start a new, empty -data-dir from this export file (fluxctl log export > FILE); refused if the data dir is not empty")
	tlRetention := fs.Duration("timeline-retention", timelinestore.DefaultRetention, "/timeline pages over the events of this long (kept on disk under the data dir), or the last -timeline-events-max events, whichever are fewer")
	tlMax := fs.Int("timeline-events-max", timelinestore.DefaultEventsMax, "most events kept on disk for /timeline (see -timeline-retention)")
	nodeID := fs.String("node-id", "", "this cp's id in its cluster; default the id its data dir was first started with, else the hostname (a later mismatch is a start-up error)")
	raftAddr := fs.String("raft-addr", "", "host:port raft listens on for the other cps; without it the cp is a single node with no raft network (it cannot grow)")
	raftAdvertise := fs.String("raft-advertise", "", "host:port the other cps reach this one's raft at (default -raft-addr when it names a host)")
	advertise := fs.String("advertise", "", "the API URL other cps and agents use for this cp (default http://<host of -listen, or the hostname>:<port>)")
	peers := fs.String("peers", "", "raft addresses of the initial voters, the same list on every cp: 'cp1=host:port,cp2=host:port,cp3=host:port'; a cp with an empty data dir whose -node-id is listed bootstraps the cluster with it")
	recoverCluster := fs.Bool("recover", false, "rebuild a cluster that lost its quorum for good from this node's data, as exactly -peers (the surviving nodes; see deploy/README.md), then run")
	raftTiming := fs.Float64("raft-timing", 1, "scale raft's timeouts (heartbeat 1s, election 1s, leader lease 500ms) by this factor; below 1 only for tests")
	pprofAddr := fs.String("pprof", "", "host:port to serve Go's profiles (/debug/pprof/) on, a listener apart from the API's; off when empty (bind it to loopback: profiles expose the process)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cp [flags]\n\nEvery flag has an environment twin FLUX_<FLAG> (e.g. FLUX_QUEUE_CAPACITY); the flag wins.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	given, err := envflag.Parse(fs, args, getenv)
	if err != nil {
		return config{}, err
	}

	cfg := config{Listen: *listen, AdminToken: *adminToken, AgentToken: *agentToken, TokensFile: *tokensFile, RequireReadToken: *requireRead,
		TLSCert: *tlsCert, TLSKey: *tlsKey, TLSClientCA: *tlsClientCA,
		ReconcileInterval: *reconcile, ShutdownTimeout: *shutdown, DataDir: *dataDir, InMemory: *inMemory, Restore: *restore,
		TimelineRetention: *tlRetention, TimelineEventsMax: *tlMax, PprofAddr: *pprofAddr}
	if cfg.PprofAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.PprofAddr); err != nil {
			return config{}, fmt.Errorf("%w: %s is not host:port: %v", errUsage, given.Describe("pprof"), err)
		}
	}
	if cfg.InMemory && cfg.Restore != "" {
		return config{}, fmt.Errorf("%w: %s needs a data dir, not %s", errUsage, given.Describe("restore"), given.Describe("in-memory"))
	}
	if cfg.InMemory {
		if given.Given("data-dir") {
			return config{}, fmt.Errorf("%w: %s and %s are exclusive: give one", errUsage,
				given.Describe("in-memory"), given.Describe("data-dir"))
		}
		cfg.DataDir = ""
	} else if strings.TrimSpace(cfg.DataDir) == "" {
		return config{}, fmt.Errorf("%w: %s must name a directory", errUsage, given.Describe("data-dir"))
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return config{}, fmt.Errorf("%w: %s and %s go together: give both for TLS, or neither", errUsage, given.Describe("tls-cert"), given.Describe("tls-key"))
	}
	if cfg.TLSClientCA != "" && cfg.TLSCert == "" {
		return config{}, fmt.Errorf("%w: %s needs -tls-cert and -tls-key (client certificates are a TLS matter)", errUsage, given.Describe("tls-client-ca"))
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return config{}, fmt.Errorf("%w: %s is not one of debug, info, warn, error", errUsage, given.Describe("log-level"))
	}
	m, err := core.ParseMode(strings.TrimSpace(*mode))
	if err != nil {
		return config{}, fmt.Errorf("%w: %s is not one of NORMAL, DEGRADED, READ_ONLY, DRAINING", errUsage, given.Describe("scheduler-mode"))
	}
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		return config{}, fmt.Errorf("%w: %s is not host:port: %v", errUsage, given.Describe("listen"), err)
	}
	c := def
	c.InitialMode = m
	c.QueueCapacity = *queueCap
	c.TasksMax = max(c.TasksMax, 2*c.QueueCapacity)
	c.HeartbeatInterval, c.HeartbeatTimeout, err = heartbeatTimes(given, *hbInterval, *hbTimeout)
	if err != nil {
		return config{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	c.LostAfter, c.AssignTimeout = *lostAfter, *assignTimeout
	c.Domains.MinOpenCapacity, c.Domains.OutageFraction, c.Domains.OutageMinAgents = *minOpen, *outageFraction, *outageMin
	// Each check names the flag (or FLUX_ variable) and the value as the
	// user gave it; core's Validate below only backs them up.
	for _, ch := range []struct {
		ok       bool
		flag, is string
	}{
		{c.QueueCapacity >= 1, "queue-capacity", "must be at least 1"},
		{c.LostAfter >= 0, "lost-after", "must not be negative"},
		{c.AssignTimeout > 0, "assign-timeout", "must be > 0"},
		{cfg.ReconcileInterval >= time.Millisecond, "reconcile-interval", "must be at least 1ms"},
		{cfg.ShutdownTimeout > 0, "shutdown-timeout", "must be > 0"},
		{cfg.TimelineRetention > 0, "timeline-retention", "must be > 0"},
		{cfg.TimelineEventsMax >= 1, "timeline-events-max", "must be at least 1"},
		{*minOpen >= 0 && *minOpen <= 1, "min-open-capacity", "must be between 0 and 1"},
		{*outageFraction > 0 && *outageFraction <= 1, "zone-outage-fraction", "must be above 0 and at most 1"},
		{*outageMin >= 0 && *outageMin <= 1<<16, "zone-outage-min-agents", "must be between 0 and 65536"},
	} {
		if !ch.ok {
			return config{}, fmt.Errorf("%w: %s %s", errUsage, given.Describe(ch.flag), ch.is)
		}
	}
	if err := c.Validate(); err != nil {
		return config{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	cfg.Core = c
	if cfg.Cluster, err = clusterConfig(given, cfg, *nodeID, *raftAddr, *raftAdvertise, *advertise, *peers, *recoverCluster, *raftTiming); err != nil {
		return config{}, err
	}
	return cfg, nil
}

// clusterConfig resolves the cluster flags; every error names the flag as
// the user gave it.
func clusterConfig(given envflag.Origins, cfg config, nodeID, raftAddr, raftAdvertise, advertise, peers string, recoverCluster bool, timing float64) (cp.ClusterOptions, error) {
	c := cp.ClusterOptions{NodeID: strings.TrimSpace(nodeID), RaftAddr: raftAddr, RaftAdvertise: raftAdvertise, Recover: recoverCluster, RaftTiming: timing}
	if c.NodeID == "" && cfg.Restore == "" {
		c.NodeID = cp.DefaultNodeID(cfg.DataDir) // after -restore: the restored dir's, in run
	}
	if timing <= 0 || timing > 100 {
		return c, fmt.Errorf("%w: %s must be above 0 and at most 100", errUsage, given.Describe("raft-timing"))
	}
	if peers != "" {
		ps, err := raftlog.ParsePeers(peers)
		if err != nil {
			return c, fmt.Errorf("%w: %s: %v", errUsage, given.Describe("peers"), err)
		}
		c.Peers = ps
	}
	if advertise == "" {
		host, port, _ := net.SplitHostPort(cfg.Listen)
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			if h, err := os.Hostname(); err == nil && h != "" {
				host = h
			} else {
				host = "127.0.0.1"
			}
		}
		advertise = "http://" + net.JoinHostPort(host, port)
	} else if !strings.Contains(advertise, "://") {
		return c, fmt.Errorf("%w: %s must be a URL such as http://cp1.example:8080", errUsage, given.Describe("advertise"))
	}
	c.AdvertiseURL = strings.TrimRight(advertise, "/")
	switch {
	case (len(c.Peers) > 0 || c.Recover) && c.RaftAddr == "":
		return c, fmt.Errorf("%w: %s and -recover need -raft-addr", errUsage, given.Describe("peers"))
	case cfg.InMemory && c.RaftAddr != "":
		return c, fmt.Errorf("%w: %s needs a data dir, not %s", errUsage, given.Describe("raft-addr"), given.Describe("in-memory"))
	}
	if c.RaftAddr == "" {
		c.AdvertiseURL = "" // a single node: nobody forwards to it
	}
	return c, nil
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
	if cfg.Restore != "" {
		if code := restoreDataDir(cfg, logger); code != 0 {
			return code
		}
		if cfg.Cluster.NodeID == "" {
			cfg.Cluster.NodeID = cp.DefaultNodeID(cfg.DataDir)
		}
	}
	rl := &reloader{log: logger}
	var httpClient *http.Client
	if cfg.TLSCert != "" {
		if rl.srv, err = tlsconf.NewServer(cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA); err == nil {
			// To agents: trust the CA of their certificates, present ours.
			rl.cli, err = tlsconf.NewClient(cfg.TLSClientCA, cfg.TLSCert, cfg.TLSKey)
		}
		if err != nil {
			logger.Error("cannot start", "error", err.Error())
			return 2
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.IdleConnTimeout = 1024, 16, 90*time.Second
		tr.TLSClientConfig = rl.cli.Config()
		httpClient = &http.Client{Transport: tr}
		if cfg.Cluster.RaftAddr != "" {
			if cfg.TLSClientCA == "" {
				logger.Error("cannot start: raft over TLS needs -tls-client-ca, the CA the cps' certificates chain to (each cp's names its -node-id)")
				return 2
			}
			cfg.Cluster.RaftTLS = &raftlog.TLSConfigs{Server: rl.srv.Config, Client: rl.cli.Config}
		}
	}
	cfg.Cluster.HTTPClient = httpClient
	s, err := cp.New(cp.Options{Clock: clock.New(), Logger: logger, Core: cfg.Core, TaskIDPrefix: startTaskIDPrefix(),
		AdminToken: cfg.AdminToken, AgentToken: cfg.AgentToken, TokensFile: cfg.TokensFile, RequireReadToken: cfg.RequireReadToken,
		AgentCertRequired: cfg.TLSClientCA != "",
		ReconcileInterval: cfg.ReconcileInterval,
		DataDir:           cfg.DataDir, InMemory: cfg.InMemory, TimelineRetention: cfg.TimelineRetention, TimelineEventsMax: cfg.TimelineEventsMax,
		Cluster: cfg.Cluster})
	if err != nil {
		logger.Error("cannot start", "data_dir", cfg.DataDir, "in_memory", cfg.InMemory, "error", err.Error())
		if errors.Is(err, raftlog.ErrDirLocked) {
			return 1
		}
		return 2
	}
	defer func() {
		if err := s.Close(); err != nil {
			logger.Error("closing the log", "error", err.Error())
		}
	}()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		logger.Error("cannot listen", "listen", cfg.Listen, "error", err.Error())
		return 1
	}
	rl.s = s
	stopPprof, err := serve.Pprof(cfg.PprofAddr, logger)
	if err != nil {
		return 1
	}
	defer stopPprof()
	srv := serve.HTTPServer(s.Handler(), logger)
	if rl.srv != nil {
		s.SetTLSCertExpiry(rl.srv.NotAfter())
		ln = tlsconf.Listen(ln, rl.srv.Config())
		srv.ErrorLog = tlsconf.ErrorLog(logger, s.TLSHandshakeError)
	}
	loopCtx, stopLoops := context.WithCancel(context.Background())
	loopsDone := make(chan struct{})
	go func() {
		defer close(loopsDone)
		_ = s.Run(loopCtx)
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("listening", "listen", ln.Addr().String(), "data_dir", cfg.DataDir, "in_memory", cfg.InMemory, "mode", string(s.Mode()),
		"queue_capacity", cfg.Core.QueueCapacity, "heartbeat_interval", cfg.Core.HeartbeatInterval.String(),
		"heartbeat_timeout", cfg.Core.HeartbeatTimeout.String(), "min_open_capacity", cfg.Core.Domains.MinOpenCapacity, "admin_token", cfg.AdminToken != "", "agent_token", cfg.AgentToken != "",
		"tokens_file", cfg.TokensFile, "tls", cfg.TLSCert != "", "tls_client_ca", cfg.TLSClientCA != "")
	if ready != nil {
		ready <- ln.Addr().String()
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	status := 0
wait:
	for {
		select {
		case <-ctx.Done():
			logger.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
			break wait
		case err := <-serveErr:
			logger.Error("server failed", "error", err.Error())
			status = 1
			break wait
		case <-hup:
			rl.reload()
		}
	}
	// A leader hands over first, so a rolling restart is no failover.
	s.HandOff()
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

// pprofMux serves net/http/pprof's handlers (on -pprof's listener only:
// the API's mux never has them).
// reloader re-reads what SIGHUP re-reads: the tokens file, and the TLS
// certificates and keys. Each keeps what it had when its files do not
// load, and says why in the log; open connections and work go on.
type reloader struct {
	s   *cp.Server
	srv *tlsconf.Server // nil without TLS
	cli *tlsconf.Client
	log *slog.Logger
}

func (r *reloader) reload() {
	r.log.Info("SIGHUP: reloading the tokens file and the TLS files")
	_ = r.s.ReloadTokens()
	if r.srv == nil {
		return
	}
	for _, f := range []interface{ Reload() error }{r.srv, r.cli} {
		if err := f.Reload(); err != nil {
			r.log.Error("TLS files not reloaded: the previous ones stay in force", "error", err.Error())
			return
		}
	}
	r.s.SetTLSCertExpiry(r.srv.NotAfter())
	r.log.Info("TLS files reloaded", "cert_not_after", r.srv.NotAfter().UTC().Format(time.RFC3339))
}

// defaultDataDir is -data-dir's default, relative to the working directory
// (as etcd's default.etcd).
const defaultDataDir = "fluxforge-data"

// heartbeatIntervalMin is the shortest heartbeat interval the cp hands to
// agents: an agent's own -heartbeat-interval has the same floor.
const heartbeatIntervalMin = 10 * time.Millisecond

// heartbeatTimes resolves -heartbeat-interval and -heartbeat-timeout from
// what the user gave: only the timeout, and the interval is a third of it;
// only the interval, and the timeout keeps its default unless that is not
// larger, then it is three intervals; both, and the timeout must exceed the
// interval. Errors name the flags and values as the user gave them.
func heartbeatTimes(given envflag.Origins, interval, timeout time.Duration) (time.Duration, time.Duration, error) {
	const iv, to = "heartbeat-interval", "heartbeat-timeout"
	switch {
	case given.Given(to) && !given.Given(iv):
		// Whole milliseconds: agents hear the interval in ms.
		interval = (timeout / 3).Truncate(time.Millisecond)
		if interval < heartbeatIntervalMin {
			return 0, 0, fmt.Errorf("%s is too short: the heartbeat interval, a third of it, must be at least %v",
				given.Describe(to), heartbeatIntervalMin)
		}
	case given.Given(iv) && !given.Given(to):
		if interval >= timeout {
			timeout = 3 * interval
		}
	}
	if interval < heartbeatIntervalMin {
		return 0, 0, fmt.Errorf("%s must be at least %v", given.Describe(iv), heartbeatIntervalMin)
	}
	if timeout <= interval {
		return 0, 0, fmt.Errorf("%s must exceed %s", given.Describe(to), given.Describe(iv))
	}
	return interval, timeout, nil
}

// startTaskIDPrefix makes task ids unique per start: the id counter begins
// again after a restart while agents may still run the previous start's
// tasks, and an agent must never mistake a new task for an old one.
func startTaskIDPrefix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("t-%x-", b)
}

// restoreDataDir makes cfg.DataDir from the export file cfg.Restore.
func restoreDataDir(cfg config, logger *slog.Logger) int {
	f, err := os.Open(cfg.Restore)
	if err != nil {
		logger.Error("cannot restore", "file", cfg.Restore, "error", err.Error())
		return 2
	}
	defer f.Close()
	start := time.Now()
	res, err := cp.RestoreDataDir(cfg.DataDir, f)
	if err != nil {
		logger.Error("cannot restore", "file", cfg.Restore, "data_dir", cfg.DataDir, "error", err.Error())
		return 2
	}
	logger.Info("restored", "file", cfg.Restore, "data_dir", cfg.DataDir, "applied_index", res.AppliedIndex,
		"state_hash", res.StateHash, "duration", time.Since(start))
	return 0
}
