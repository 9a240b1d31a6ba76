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
//     (net.PathHeartbeat, net.PathPoll);
//   - a reconcile loop that applies core.TickInput every ReconcileInterval on the
//     injected benbjohnson/clock Clock and times it into
//     flux_reconcile_duration_seconds;
//   - one net.Mailbox per agent (mailbox.go) that holds the core's outbox
//     (Assign and Cancel, in order) until the agent's long poll takes it:
//     agents dial in, the cp never opens a connection to one. A poll
//     carries the acks of the assignments it processed, which go through
//     the log into the core;
//   - the Prometheus metrics, exported by a Collector that reads the core's
//     Snapshot and Stats under the lock at scrape time, so gauges of
//     forgotten agents disappear with them;
//   - structured logs (log/slog) of every timeline event.
//
// # HTTP API
//
// Bodies are JSON, bounded (1 MiB for the API, net.BodyMax for the agent
// protocol: a Content-Length over the bound is 413 before the body is read,
// a chunked body 413 once reading passes it) and decoded strictly (unknown
// fields, wrong types and trailing data are 400; 16 MiB for a batch
// submit). Every error is
// {"error":"<code>","message":"<what was wrong>"}, 404 and 405 included.
//
//	POST /v1/tasks                  submit; header Idempotency-Key; 201 new, 200 replay
//	                                (Idempotent-Replayed: true), 422 key reused with
//	                                another body, 429 + Retry-After queue full or
//	                                DEGRADED shedding low priority, 503 READ_ONLY or
//	                                DRAINING, 400 bad input, 413 body over 1 MiB
//	POST /v1/batch/tasks            batch submit: {"tasks":[{...,"idempotency_key":"k"},...]},
//	                                1-1000 tasks, body up to 16 MiB (413 over it). 200 with
//	                                {"results":[...]}, one per task in order: {"status":201,
//	                                "task":{...}}, {"status":200,"task":{...}} for a replay,
//	                                or {"status":4xx/429,"error":"...","message":"..."} as a
//	                                single submit of that task would be refused (Retry-After
//	                                set when any task got 429). A malformed body, a missing tasks list or
//	                                more than 1000 (400), READ_ONLY or DRAINING (503) refuse
//	                                the whole batch. The batch is one log entry; a key
//	                                repeated in it creates at its first use, replays after.
//	GET  /v1/tasks?state=&domain=&limit=&after=   list (limit 1-1000, default 100)
//	GET  /v1/tasks/{id}             task with attempts, agent, outcome, waiting_reason
//	POST /v1/tasks/{id}/cancel      optional {"reason":"..."}; 409 if already finished
//	GET  /v1/agents, /v1/agents/{id}                agents, health score components,
//	                                heartbeat_interval_ms each agent reports
//	POST /v1/agents/{id}/quarantine, .../release    admin token; optional {"reason"}
//	GET  /scheduler/debug/snapshot  core.Snapshot (mode, queue_depth, domain_failures, isolation_panic, ...)
//	                                plus applied_index, state_hash (of state_hash_index; a costly
//	                                state is rehashed only when quiet, or with ?fresh_hash=true),
//	                                node_id, role, leader, members: always this cp's own view
//	GET  /admin/raft/members        the raft configuration: id, raft_addr, api_url, voter, leader
//	POST /admin/raft/members        admin token; {"id","raft_addr"}: add a voter
//	DELETE /admin/raft/members/{id} admin token; remove a member
//	POST /admin/raft/transfer-leadership   admin token; the leader hands over
//	POST /admin/raft/announce       admin token; a follower publishes its API URL (internal)
//	GET  /admin/mode                admin token
//	POST /admin/mode                admin token; {"mode":"DRAINING","reason":"..."}
//	POST /scheduler/queue/purge     admin token; {"all":true} | {"domain":"z"} |
//	                                {"older_than_seconds":N}
//	GET  /timeline?since=SEQ&limit=N                audit events after SEQ (limit 1-10000), from the
//	                                                on-disk store beyond the in-memory ring (Options.TimelineRetention)
//	GET  /metrics, /healthz, /readyz
//	POST /v1/agent/heartbeat        agent protocol (net.PathHeartbeat), agent token;
//	                                the reply names the cp's heartbeat_interval_ms to
//	                                agents that report theirs
//	POST /v1/agent/poll             agent protocol (net.PathPoll), agent token: the
//	                                poll's acks are queued for the log (not waited
//	                                for), then the agent's
//	                                mailbox answers at once or holds the request up to
//	                                wait_ms (60s at most) until a message arrives;
//	                                empty when the wait ends or the cp shuts down.
//	                                Only a poll of the incarnation the agent last
//	                                heartbeated with gets its messages
//
// With an admin token configured, the admin routes answer 401 without
// "Authorization: Bearer <token>"; with an agent token, so do the heartbeat
// and the poll.
//
// Named tokens (Options.TokensFile, see ParseTokens; re-read by
// ReloadTokens on SIGHUP) have roles admin ⊃ submit ⊃ read, and agent.
// Admin routes need admin once any operator token exists; submit, batch
// submit and cancel need submit once the tokens file names operators;
// reads (tasks, agents, the snapshot, the timeline, /metrics) need read
// only with Options.RequireReadToken. An agent-role token named by an
// agent id speaks only for that agent, the one named "agent" for any; with
// Options.AgentCertRequired the agent protocol also needs a verified
// client certificate naming the agent (CN or DNS SAN). All agent routes
// check this in one place, Server.authAgent. No or unknown credentials
// answer 401, known ones that may not 403, with the JSON error body,
// counted in flux_auth_refusals_total{reason}. What a named token changes
// records its name as the events' `by` (and the snapshot's
// mode_set_by_name).
//
// # Usage
//
//	s, err := cp.New(cp.Options{Clock: clock.New(), Logger: logger, Core: core.DefaultConfig(),
//		DataDir: "fluxforge-data"})          // the durable log; empty: in memory
//	defer s.Close()                           // after Run returns: releases the data dir
//	go s.Run(ctx)                             // reconcile loop
//	srv := &http.Server{Addr: ":8080", Handler: s.Handler()}
//	srv.ListenAndServe()
//
// # Durability
//
// Every change to the core (submissions, cancels, heartbeats, assignment
// acks and refusals, operator actions, reconcile ticks, the task id prefix
// of a start) is a core.Input proposed to a raft log (cp/raftlog) as a
// versioned JSON entry around a core.Envelope, stamped with the leader's
// clock but never before the last applied input's. A request is answered
// only once its entry is fsynced and applied; a write the log cannot make
// durable is answered 503 not_durable and changes nothing, and /readyz says
// why until a write succeeds again. Reads use the applied state under a
// read lock and never go through the log. Inputs that wait while an entry
// is in flight go to the next entry together (group commit, batch.go); the
// tasks of one batch submit always share one entry, side by side. Snapshots are core.Export; the
// first entry of a new data dir holds the core config, so on a restart the
// persisted config and mode stand.
//
// # Clusters
//
// With Options.Cluster.RaftAddr, three (or five) cps share the log over a
// network transport (TCP, or TLS naming each cp's node id): see cluster.go.
// The leader alone proposes, reconciles, sends agents their messages and
// logs events; a follower forwards every request to the leader (answers
// carry Flux-Leader) except its own /healthz, /readyz, /metrics, debug
// snapshot, GET /admin/raft/members and reads with ?stale=true, and answers
// the agent protocol 503 not_leader with the leader's URL. Without a leader
// writes get 503 no_leader with Retry-After.
//
// Tests pass clock.NewMock() and drive the reconcile loop by advancing it.
package cp
