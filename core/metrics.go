package core

// The metrics the control plane exports, as one table: the cp registers its
// Prometheus collectors from it and the simulator records its series under
// the same names and labels, so alerts and dashboards proven on simulated
// series hold on scraped ones. Names follow Prometheus conventions (base
// units, _total counters) except the ones RUNBOOK.md names: those are the
// operators' contract and stay exact.

// MetricType is how a metric is exposed.
type MetricType uint8

// Metric types.
const (
	MetricGauge MetricType = iota + 1
	MetricCounter
	MetricHistogram // exposed as <name>_bucket, <name>_sum and <name>_count
)

func (t MetricType) String() string {
	switch t {
	case MetricGauge:
		return "gauge"
	case MetricCounter:
		return "counter"
	case MetricHistogram:
		return "histogram"
	}
	return "untyped"
}

// MetricDesc describes one metric: its name, type, help text and label
// names, in the order label values are given.
type MetricDesc struct {
	Name   string
	Type   MetricType
	Help   string
	Labels []string
}

// Label names.
const (
	LabelAgent   = "agent"
	LabelCode    = "code"
	LabelDomain  = "domain"
	LabelKind    = "kind"
	LabelLock    = "lock"
	LabelMode    = "mode"
	LabelOutcome = "outcome"
	LabelReason  = "reason"
	LabelResult  = "result"
	LabelRoute   = "route"
	LabelState   = "state"
)

// Metric names. (runbook) marks the names RUNBOOK.md gives operators.
const (
	MetricReconcileDuration           = "flux_reconcile_duration_seconds" // (runbook)
	MetricHTTPRequests                = "flux_http_requests_total"
	MetricAPIErrors                   = "flux_api_errors_total" // (runbook)
	MetricHTTPRequestDuration         = "flux_http_request_duration_seconds"
	MetricHTTPPanics                  = "flux_http_panics_total"
	MetricAgentMessages               = "flux_agent_messages_total"
	MetricAgentMessagesDropped        = "flux_agent_messages_dropped_total"
	MetricAgentMessageDuration        = "flux_agent_message_duration_seconds"
	MetricAgentMessagesQueued         = "flux_agent_messages_queued"
	MetricQueueDepth                  = "flux_queue_depth" // (runbook)
	MetricQueueCapacity               = "flux_queue_capacity"
	MetricQueueOldestTaskAge          = "flux_queue_oldest_task_age" // (runbook)
	MetricTasksInFlight               = "flux_tasks_in_flight"
	MetricSchedulerMode               = "flux_scheduler_mode"
	MetricSchedulerModeSelfProtection = "flux_scheduler_mode_self_protection"
	MetricSchedulerReschedulingPaused = "flux_scheduler_rescheduling_paused"
	MetricIsolationPanic              = "flux_isolation_panic"
	MetricSchedulerDrained            = "flux_scheduler_drained"
	MetricSchedulerDecisions          = "flux_scheduler_decisions_total" // (runbook)
	MetricDomainFailureRate           = "flux_domain_failure_rate"       // (runbook)
	MetricDomainState                 = "flux_domain_state"
	MetricDomainActive                = "flux_domain_active"
	MetricDomainQueued                = "flux_domain_queued"
	MetricAgentsKnown                 = "flux_agents_known"
	MetricAgentsConnected             = "flux_agents_connected"
	MetricAgentsQuarantined           = "flux_agents_quarantined"
	MetricAgentConnected              = "flux_agent_connected" // (runbook)
	MetricAgentQuarantined            = "flux_agent_quarantined"
	MetricAgentHealthScore            = "flux_agent_health_score"
	MetricAgentRunningTasks           = "flux_agent_running_tasks"
	MetricAgentSlots                  = "flux_agent_slots"
	MetricTasksSubmitted              = "flux_tasks_submitted_total"
	MetricTasksReplayed               = "flux_tasks_replayed_total"
	MetricTasksRefused                = "flux_tasks_refused_total"
	MetricTasksFinished               = "flux_tasks_finished_total"
	MetricTasksPurged                 = "flux_tasks_purged_total"
	MetricRequeues                    = "flux_requeues_total"
	MetricLostLeases                  = "flux_lost_leases_total"
	MetricStuckLeases                 = "flux_stuck_leases_total"
	MetricStaleReportsIgnored         = "flux_stale_reports_ignored_total"
	MetricPoisonTasks                 = "flux_poison_tasks_total"
	MetricQuarantines                 = "flux_quarantines_total"
	MetricQuarantinesCapped           = "flux_quarantines_capped_total"
	MetricModeChanges                 = "flux_mode_changes_total"
	MetricAgentConnects               = "flux_agent_connects_total"
	MetricAgentDisconnects            = "flux_agent_disconnects_total"
	MetricReconciles                  = "flux_reconciles_total"
	MetricTimelineLastSeq             = "flux_timeline_last_seq"
	MetricLogAppliedIndex             = "flux_log_applied_index"
	MetricLogProposalDuration         = "flux_log_proposal_duration_seconds"
	MetricLogSnapshotDuration         = "flux_log_snapshot_duration_seconds"
	MetricLogSnapshotBytes            = "flux_log_snapshot_bytes"
	MetricLogRestoreDuration          = "flux_log_restore_duration_seconds"
	MetricDataDirBytes                = "flux_data_dir_bytes"
	MetricLogBatchInputs              = "flux_log_batch_inputs"
	MetricLogAppends                  = "flux_log_appends_total"
	MetricLogEntries                  = "flux_log_entries_total"
	MetricLogEntryBytes               = "flux_log_entry_bytes_total"
	MetricLogAppendDuration           = "flux_log_append_duration_seconds"
	MetricRaftCommitDuration          = "flux_raft_commit_duration_seconds"
	MetricRaftFSMApplyDuration        = "flux_raft_fsm_apply_duration_seconds"
	MetricRaftSnapshotDuration        = "flux_raft_snapshot_duration_seconds"
	MetricRaftStateTransitions        = "flux_raft_state_transitions_total"
	MetricRaftLeader                  = "flux_raft_leader"
	MetricRaftTerm                    = "flux_raft_term"
	MetricRaftCommitIndex             = "flux_raft_commit_index"
	MetricRaftPeers                   = "flux_raft_peers"
	MetricRaftLastContact             = "flux_raft_last_contact_seconds"
	MetricRaftForwarded               = "flux_raft_forwarded_requests_total"
	MetricAuthRefusals                = "flux_auth_refusals_total"
	MetricTLSHandshakeErrors          = "flux_tls_handshake_errors_total"
	MetricTLSCertExpiry               = "flux_tls_cert_expiry_seconds"
	MetricCoreLockHold                = "flux_core_lock_hold_seconds"
	MetricGoGCPause                   = "flux_go_gc_pause_seconds"
)

// Metrics returns the table, a fresh copy each call: the cp's HTTP and
// delivery instruments first, then what it reads from the core at scrape
// time.
func Metrics() []MetricDesc {
	return []MetricDesc{
		{MetricReconcileDuration, MetricHistogram, "Wall-clock duration of one reconcile pass (core Tick under the lock).", nil},
		{MetricHTTPRequests, MetricCounter, "HTTP requests served, by route and status code.", []string{LabelRoute, LabelCode}},
		{MetricAPIErrors, MetricCounter, "HTTP requests answered with a 4xx or 5xx status, by route and code; the error rate is this over flux_http_requests_total.", []string{LabelRoute, LabelCode}},
		{MetricHTTPRequestDuration, MetricHistogram, "HTTP request latency by route.", []string{LabelRoute}},
		{MetricHTTPPanics, MetricCounter, "Handler panics recovered at the request boundary (answered 500).", nil},
		{MetricAgentMessages, MetricCounter, "Messages handed to agents in poll replies, by kind (assign, cancel) and result (ok: the first time, resent: again after a lost reply).", []string{LabelKind, LabelResult}},
		{MetricAgentMessagesDropped, MetricCounter, "Messages to agents dropped because their mailbox (or all mailboxes) was full.", []string{LabelKind}},
		{MetricAgentMessageDuration, MetricHistogram, "Time a message waited in its agent's mailbox until a poll took it.", []string{LabelKind}},
		{MetricAgentMessagesQueued, MetricGauge, "Messages held in the agents' mailboxes until their polls take them.", nil},
		{MetricQueueDepth, MetricGauge, "Tasks QUEUED now.", nil},
		{MetricQueueCapacity, MetricGauge, "Bound of the queue; submissions beyond it are refused with 429.", nil},
		{MetricQueueOldestTaskAge, MetricGauge, "Seconds the oldest QUEUED task has waited (0 when the queue is empty).", nil},
		{MetricTasksInFlight, MetricGauge, "Tasks ASSIGNED or RUNNING.", nil},
		{MetricSchedulerMode, MetricGauge, "1 for the scheduler's current mode, 0 for the others.", []string{LabelMode}},
		{MetricSchedulerModeSelfProtection, MetricGauge, "1 when the current mode was set by self-protection.", nil},
		{MetricSchedulerReschedulingPaused, MetricGauge, "1 while mass-disconnect protection pauses rescheduling.", nil},
		{MetricIsolationPanic, MetricGauge, "1 while the panic threshold (-min-open-capacity) holds domains out of isolation.", nil},
		{MetricSchedulerDrained, MetricGauge, "1 when DRAINING and nothing is queued or in flight.", nil},
		{MetricSchedulerDecisions, MetricCounter, "Placement decisions, by outcome (assigned, no_capacity, domain_isolated, ...).", []string{LabelOutcome}},
		{MetricDomainFailureRate, MetricGauge, "Failure rate of a failure domain over its sliding window.", []string{LabelDomain}},
		{MetricDomainState, MetricGauge, "1 for the domain's isolation state, 0 for the others.", []string{LabelDomain, LabelState}},
		{MetricDomainActive, MetricGauge, "Tasks ASSIGNED or RUNNING in a domain.", []string{LabelDomain}},
		{MetricDomainQueued, MetricGauge, "Tasks QUEUED with this domain constraint.", []string{LabelDomain}},
		{MetricAgentsKnown, MetricGauge, "Registered agents per domain.", []string{LabelDomain}},
		{MetricAgentsConnected, MetricGauge, "Connected agents per domain.", []string{LabelDomain}},
		{MetricAgentsQuarantined, MetricGauge, "Quarantined agents per domain.", []string{LabelDomain}},
		{MetricAgentConnected, MetricGauge, "1 when the agent is connected (heartbeating), 0 otherwise.", []string{LabelAgent, LabelDomain}},
		{MetricAgentQuarantined, MetricGauge, "1 when the agent is quarantined.", []string{LabelAgent, LabelDomain}},
		{MetricAgentHealthScore, MetricGauge, "The agent's CompositeHealthScore in [0,1].", []string{LabelAgent, LabelDomain}},
		{MetricAgentRunningTasks, MetricGauge, "Attempts leased to the agent.", []string{LabelAgent, LabelDomain}},
		{MetricAgentSlots, MetricGauge, "Slots the agent advertises.", []string{LabelAgent, LabelDomain}},
		{MetricTasksSubmitted, MetricCounter, "Submissions accepted (new tasks).", nil},
		{MetricTasksReplayed, MetricCounter, "Submissions answered from the idempotency cache.", nil},
		{MetricTasksRefused, MetricCounter, "Submissions refused, by reason.", []string{LabelReason}},
		{MetricTasksFinished, MetricCounter, "Tasks that reached a terminal state, by state.", []string{LabelState}},
		{MetricTasksPurged, MetricCounter, "Queued tasks cancelled by a queue purge.", nil},
		{MetricRequeues, MetricCounter, "Tasks put back in the queue for another attempt.", nil},
		{MetricLostLeases, MetricCounter, "Attempts given up because the agent was lost or never confirmed them.", nil},
		{MetricStuckLeases, MetricCounter, "Attempts given up as stuck (past timeout plus grace).", nil},
		{MetricStaleReportsIgnored, MetricCounter, "Results or acks of superseded attempts, ignored (fencing).", nil},
		{MetricPoisonTasks, MetricCounter, "Tasks declared DEAD as poison.", nil},
		{MetricQuarantines, MetricCounter, "Agent quarantines (health and operator).", nil},
		{MetricQuarantinesCapped, MetricCounter, "Health quarantines withheld by the per-domain cap.", nil},
		{MetricModeChanges, MetricCounter, "Scheduler mode changes.", nil},
		{MetricAgentConnects, MetricCounter, "Agent connections (registrations and reconnections).", nil},
		{MetricAgentDisconnects, MetricCounter, "Agent disconnections.", nil},
		{MetricReconciles, MetricCounter, "Reconcile passes run.", nil},
		{MetricTimelineLastSeq, MetricGauge, "Sequence number of the newest timeline event.", nil},
		{MetricLogAppliedIndex, MetricGauge, "Raft index of the last log entry applied to the cp's state.", nil},
		{MetricLogProposalDuration, MetricHistogram, "Duration of one proposal to the cp's log: append, fsync and apply (failed ones included).", nil},
		{MetricLogSnapshotDuration, MetricHistogram, "Duration of exporting the cp's state for a log snapshot.", nil},
		{MetricLogSnapshotBytes, MetricGauge, "Size of the newest log snapshot's state export.", nil},
		{MetricLogRestoreDuration, MetricGauge, "Duration of this start's restore: opening the log, loading the newest snapshot and replaying the entries after it.", nil},
		{MetricDataDirBytes, MetricGauge, "Bytes the cp's data dir holds on disk (0 with -in-memory).", nil},
		{MetricLogBatchInputs, MetricHistogram, "Inputs per proposed log entry: the inputs that arrived while the previous entry was being made durable go to the log as one entry (group commit).", nil},
		{MetricLogAppends, MetricCounter, "Writes to the log store since start, each one fsync on disk (entries proposed meanwhile are written together).", nil},
		{MetricLogEntries, MetricCounter, "Entries written to the log store since start, raft's own included.", nil},
		{MetricLogEntryBytes, MetricCounter, "Bytes of the entries written to the log store since start (entry data, without the store's framing).", nil},
		{MetricLogAppendDuration, MetricHistogram, "Duration of one write of entries to the log store, fsync included (raft's leader.dispatchLog on the leader, rpc.appendEntries.storeLogs on a follower).", nil},
		{MetricRaftCommitDuration, MetricHistogram, "Duration from an entry's dispatch to its commit (raft's commitTime).", nil},
		{MetricRaftFSMApplyDuration, MetricHistogram, "Duration of applying one committed entry to the cp's state (raft's fsm.apply).", nil},
		{MetricRaftSnapshotDuration, MetricHistogram, "Duration of a phase of raft's snapshots: take (all), fsm_snapshot, create, persist, fsm_restore, compact_logs.", []string{"phase"}},
		{MetricRaftStateTransitions, MetricCounter, "Transitions of the log node to a raft state (follower, candidate, leader).", []string{"state"}},
		{MetricRaftLeader, MetricGauge, "1 while this cp's log node is the raft leader (takes writes), else 0.", nil},
		{MetricRaftTerm, MetricGauge, "The raft term this cp's log node is in.", nil},
		{MetricRaftCommitIndex, MetricGauge, "Raft index of the newest log entry this cp knows to be committed (flux_log_applied_index trails it while entries are applied).", nil},
		{MetricRaftPeers, MetricGauge, "Voters in the raft configuration this cp knows, itself included.", nil},
		{MetricRaftLastContact, MetricGauge, "Seconds since a follower last heard from the leader (0 on the leader).", nil},
		{MetricRaftForwarded, MetricCounter, "Requests a follower forwarded to the leader, by result (ok, no_leader, error).", []string{LabelResult}},
		{MetricAuthRefusals, MetricCounter, "Requests refused for their credentials, by reason: no_token, unknown_token (401); wrong_role, wrong_agent (403); no_client_cert (401, the agent protocol with -tls-client-ca).", []string{LabelReason}},
		{MetricTLSHandshakeErrors, MetricCounter, "TLS handshakes of the API port that failed, by reason: unknown_ca, expired, plain_http (an HTTP request to the TLS port), other.", []string{LabelReason}},
		{MetricTLSCertExpiry, MetricGauge, "When the API port's serving certificate expires, as Unix seconds (0 without TLS); re-read on SIGHUP.", nil},
		{MetricCoreLockHold, MetricHistogram, "How long one holder held the lock of the cp's state, by lock: write (applying a log entry, a restore), read (an API read, a scrape, a state export for a snapshot or the state hash). Every write waits for the holders before it.", []string{LabelLock}},
		{MetricGoGCPause, MetricHistogram, "The Go runtime's stop-the-world pauses for garbage collection since start (runtime/metrics /sched/pauses/total/gc:seconds, its buckets merged into these).", nil},
	}
}

// MetricByName returns the table's entry for name.
func MetricByName(name string) (MetricDesc, bool) {
	for _, d := range Metrics() {
		if d.Name == name {
			return d, true
		}
	}
	return MetricDesc{}, false
}
