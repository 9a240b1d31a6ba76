// Package cp is the FluxForge control-plane daemon as a library: it wraps one
// deterministic *core.ControlPlane behind a mutex and drives it from the
// outside world.
//
// A Server owns:
//
//   - the HTTP API (julienschmidt/httprouter): task submission and queries,
//     agents, the operator surfaces named by RUNBOOK.md
//     (/scheduler/debug/snapshot, /admin/mode, /scheduler/queue/purge), the
//     timeline, /metrics, /healthz, /readyz, and the agent protocol
//     (net.PathHeartbeat);
//   - a reconcile loop that calls core's Tick every ReconcileInterval on the
//     injected benbjohnson/clock Clock and times it into
//     flux_reconcile_duration_seconds;
//   - a bounded pool of delivery workers that take the core's outbox after
//     every call and send each Assign or Cancel to its agent over
//     net.HTTPClient, feeding assignment acks back into the core;
//   - the Prometheus metrics, exported by a Collector that reads the core's
//     Snapshot and Stats under the lock at scrape time, so gauges of
//     forgotten agents disappear with them;
//   - structured logs (log/slog) of every timeline event.
//
// # Usage
//
//	s, err := cp.New(cp.Options{Clock: clock.New(), Logger: logger, Core: core.DefaultConfig()})
//	go s.Run(ctx)                             // reconcile loop and delivery workers
//	srv := &http.Server{Addr: ":8080", Handler: s.Handler()}
//	srv.ListenAndServe()
//
// Tests pass clock.NewMock() and drive the reconcile loop by advancing it.
package cp
