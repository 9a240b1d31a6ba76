package raftlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Errors a Node returns. Callers match them with errors.Is; the messages
// carry the cause.
var (
	// ErrNotLeader: this node cannot accept writes now (for a single node:
	// between a failed log write and its re-election). Nothing was written.
	ErrNotLeader = errors.New("raftlog: this node is not the leader")
	// ErrNotDurable: the entry was not made durable (the log store failed,
	// or leadership was lost while committing), so it must not be
	// acknowledged. The wrapped error says why.
	ErrNotDurable = errors.New("raftlog: entry was not made durable")
	// ErrClosed: the Node is closed or closing.
	ErrClosed = errors.New("raftlog: node is closed")
	// ErrDirLocked: another Node (in this or another process) has the data
	// dir open.
	ErrDirLocked = errors.New("raftlog: data dir is in use")
	// ErrUnknownFormat: a snapshot was written in a format this build does
	// not know.
	ErrUnknownFormat = errors.New("raftlog: unknown format version")
)

// Defaults for Options. They follow raft's own defaults, which Consul and
// Nomad run with: a snapshot once 8192 entries have been applied since the
// last one (checked every 2 minutes), and 10240 entries kept in the log
// behind a snapshot so that a restore can fall back to an older snapshot and
// a lagging follower can catch up from the log.
const (
	DefaultNodeID            = "node-1"
	DefaultSnapshotThreshold = 8192
	DefaultSnapshotInterval  = 2 * time.Minute
	DefaultTrailingLogs      = 10240
	DefaultSnapshotsRetained = 2
	DefaultStartTimeout      = time.Minute
)

// Options configure a Node. The zero value of each optional field picks its
// default.
type Options struct {
	// Dir is the data dir, created if missing. It holds LOCK, wal/ (the raft
	// log and stable store) and snapshots/. Required unless InMemory.
	Dir string
	// InMemory runs the same raft path on raft's in-memory stores: nothing
	// survives Close. Dir must be empty then.
	InMemory bool
	// Logger receives the Node's and raft's log lines; discard by default.
	Logger *slog.Logger
	// FSM is the state machine. Required.
	FSM FSM
	// NodeID is this server's raft ID. It must stay the same for a data dir:
	// the dir's raft configuration names it.
	NodeID string
	// SnapshotThreshold is how many log entries since the last snapshot make
	// raft take a new one.
	SnapshotThreshold uint64
	// SnapshotInterval is how often raft checks SnapshotThreshold (raft adds
	// a random jitter of up to one interval).
	SnapshotInterval time.Duration
	// TrailingLogs is how many entries stay in the log behind a snapshot.
	TrailingLogs uint64
	// SnapshotsRetained is how many snapshot files are kept on disk; more
	// than one lets start-up fall back to an older one if the newest is
	// unreadable.
	SnapshotsRetained int
	// StartTimeout bounds Open's wait for this node to become leader and to
	// apply every committed entry (the replay after a restart).
	StartTimeout time.Duration

	// WrapLogStore, when set, wraps the log store: tests (here and in the
	// packages built on a Node) inject log store faults with it.
	WrapLogStore func(raft.LogStore) raft.LogStore

	// Cluster makes the Node a member of a replicated cluster (see
	// cluster.go). Zero: a single node on an in-process transport, leader
	// as soon as it starts, which cannot grow.
	Cluster ClusterOptions
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.NodeID == "" {
		o.NodeID = DefaultNodeID
	}
	if o.SnapshotThreshold == 0 {
		o.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if o.SnapshotInterval == 0 {
		o.SnapshotInterval = DefaultSnapshotInterval
	}
	if o.TrailingLogs == 0 {
		o.TrailingLogs = DefaultTrailingLogs
	}
	if o.SnapshotsRetained == 0 {
		o.SnapshotsRetained = DefaultSnapshotsRetained
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = DefaultStartTimeout
	}
}

func (o *Options) validate() error {
	switch {
	case o.FSM == nil:
		return errors.New("raftlog: Options.FSM is required")
	case o.InMemory && o.Dir != "":
		return errors.New("raftlog: Options.InMemory and Options.Dir are exclusive")
	case !o.InMemory && o.Dir == "":
		return errors.New("raftlog: Options.Dir is required unless InMemory")
	case o.SnapshotInterval < 5*time.Millisecond:
		return fmt.Errorf("raftlog: Options.SnapshotInterval %s is below raft's minimum of 5ms", o.SnapshotInterval)
	case o.SnapshotsRetained < 1:
		return fmt.Errorf("raftlog: Options.SnapshotsRetained %d must be at least 1", o.SnapshotsRetained)
	case o.StartTimeout < 0:
		return fmt.Errorf("raftlog: Options.StartTimeout %s is negative", o.StartTimeout)
	}
	return o.Cluster.validate(o.NodeID)
}

// Node is a single-node raft log over a data dir. Its methods are safe for
// concurrent use.
type Node struct {
	raft    *raft.Raft
	fsm     *fsmAdapter
	logger  *slog.Logger
	closers []io.Closer // stores and transport, closed after raft stops
	lock    *dirLock
	logs    raft.LogStore      // read by Record
	counts  *countingStore     // LogStats
	snaps   raft.SnapshotStore // read by Record

	id string
	// transport and leaderCh are set for a member of a cluster only.
	transport   *raft.NetworkTransport
	leaderCh    chan bool
	memberAddrs *memberAddrs
	tlsLayer    *tlsLayer

	closed    atomic.Bool
	closing   chan struct{} // closed when Close begins: proposals stop waiting
	closeOnce sync.Once
	closeErr  error
}

// Open starts a Node: it locks the data dir, opens the stores, bootstraps a
// one-server cluster if the dir is new, and returns once this node is the
// leader and has applied every committed entry (the FSM got Restore with the
// newest snapshot, then the entries after it).
func Open(opts Options) (*Node, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	n := &Node{fsm: &fsmAdapter{fsm: opts.FSM}, logger: opts.Logger, id: opts.NodeID, closing: make(chan struct{})}
	if err := n.open(opts); err != nil {
		n.cleanup()
		return nil, err
	}
	n.logger.Info("raftlog.opened", "store", n.storeName(opts), "applied_index", n.AppliedIndex(),
		"last_index", n.raft.LastIndex(), "duration", time.Since(start))
	return n, nil
}

func (n *Node) storeName(opts Options) string {
	if opts.InMemory {
		return "inmem"
	}
	return storeName
}

func (n *Node) open(opts Options) error {
	hlog := newHclogAdapter(opts.Logger, "")
	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if opts.InMemory {
		mem := raft.NewInmemStore()
		logs, stable, snaps = copyingStore{mem}, mem, raft.NewInmemSnapshotStore()
	} else {
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			return fmt.Errorf("raftlog: create data dir: %w", err)
		}
		lock, err := lockDir(opts.Dir)
		if err != nil {
			return err
		}
		n.lock = lock
		l, s, closer, err := openDiskStores(opts.Dir, hlog)
		if err != nil {
			return err
		}
		n.closers = append(n.closers, closer)
		logs, stable = l, s
		fss, err := raft.NewFileSnapshotStoreWithLogger(opts.Dir, opts.SnapshotsRetained, hlog.Named("snapshot"))
		if err != nil {
			return fmt.Errorf("raftlog: open snapshot store %s: %w", filepath.Join(opts.Dir, "snapshots"), err)
		}
		snaps = fss
	}
	n.counts = &countingStore{LogStore: logs}
	logs = n.counts
	if opts.WrapLogStore != nil {
		logs = opts.WrapLogStore(logs)
	}
	safeSnaps := &safeSnapshotStore{SnapshotStore: snaps, logs: logs}
	snaps = safeSnaps

	clustered := opts.Cluster.BindAddr != ""
	if !opts.InMemory {
		if err := checkNodeID(opts.Dir, opts.NodeID); err != nil {
			return err
		}
	}
	var (
		addr  raft.ServerAddress
		trans raft.Transport
	)
	if clustered {
		ma := &memberAddrs{peers: opts.Cluster.Peers}
		n.memberAddrs = ma
		t, tl, err := newNetworkTransport(opts.Cluster, hlog.Named("transport"), ma.get)
		if err != nil {
			return err
		}
		addr, trans = t.LocalAddr(), t
		n.closers = append(n.closers, t)
		n.transport, n.tlsLayer = t, tl
	} else {
		a, t := raft.NewInmemTransport(raft.ServerAddress(opts.NodeID))
		addr, trans = a, t
		n.closers = append(n.closers, t)
	}

	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(opts.NodeID)
	conf.Logger = hlog.Named("raft")
	conf.SnapshotThreshold = opts.SnapshotThreshold
	conf.SnapshotInterval = opts.SnapshotInterval
	conf.TrailingLogs = opts.TrailingLogs
	// Proposals queue while the leader writes (Enqueue): the next append
	// takes every one queued, up to MaxAppendEntries, in one fsync.
	conf.BatchApplyCh = true
	if clustered {
		opts.Cluster.timing(conf)
		n.leaderCh = make(chan bool, 16)
		conf.NotifyCh = n.leaderCh
	} else {
		// One server: no peers to wait for, so short timeouts only shorten
		// the election at start and the re-election after a failed log
		// write. The leader lease never expires with one voter (it counts
		// itself).
		conf.HeartbeatTimeout = 100 * time.Millisecond
		conf.ElectionTimeout = 100 * time.Millisecond
		conf.LeaderLeaseTimeout = 100 * time.Millisecond
	}
	if err := raft.ValidateConfig(conf); err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}

	hasState, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fmt.Errorf("raftlog: read existing state: %w", err)
	}
	if opts.Cluster.Recover {
		if !hasState {
			return errors.New("raftlog: recover: this data dir holds no raft state to recover from")
		}
		cfg := opts.Cluster.configuration()
		if err := raft.RecoverCluster(conf, n.fsm, logs, stable, snaps, trans, cfg); err != nil {
			return fmt.Errorf("raftlog: recover the cluster: %w", err)
		}
		n.logger.Warn("raftlog.recovered", "servers", fmt.Sprint(cfg.Servers))
		hasState = true
	}
	if !hasState {
		cfg := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: conf.LocalID, Address: addr}}}
		bootstrap := true
		if len(opts.Cluster.Peers) > 0 {
			cfg = opts.Cluster.configuration()
			// A node not among the initial voters joins later, when a
			// member adds it (POST /admin/raft/members).
			bootstrap = opts.Cluster.hasPeer(opts.NodeID)
		}
		if bootstrap {
			if err := raft.BootstrapCluster(conf, logs, stable, snaps, trans, cfg); err != nil {
				return fmt.Errorf("raftlog: bootstrap: %w", err)
			}
		}
	}
	// NewRaft restores the newest readable snapshot into the FSM.
	r, err := raft.NewRaft(conf, n.fsm, logs, stable, snaps, trans)
	if err != nil {
		if f, ok := safeSnaps.firstFailure(); ok {
			where := f.id
			if !opts.InMemory {
				where = filepath.Join(opts.Dir, "snapshots", f.id)
			}
			return fmt.Errorf("raftlog: snapshot %s cannot be restored (%w) and the log does not hold every entry after an older snapshot; "+
				"start from a backup in a new data dir", where, f.err)
		}
		return fmt.Errorf("raftlog: start raft: %w", err)
	}
	n.raft = r
	n.logs, n.snaps = logs, snaps
	if n.memberAddrs != nil {
		n.memberAddrs.node.Store(n)
	}
	if clustered {
		// A member of a cluster starts as a follower and catches up by
		// replication; the cp's leader loop takes over when it is elected.
		return nil
	}
	if err := n.checkMember(conf.LocalID); err != nil {
		return err
	}
	return n.awaitLeaderAndReplay(opts.StartTimeout)
}

// checkMember refuses a data dir whose raft configuration does not name this
// node: it would never become leader.
func (n *Node) checkMember(id raft.ServerID) error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("raftlog: read configuration: %w", err)
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == id && s.Suffrage == raft.Voter {
			return nil
		}
	}
	return fmt.Errorf("raftlog: this data dir's raft configuration %v does not name node %q as a voter", f.Configuration().Servers, id)
}

func (n *Node) awaitLeaderAndReplay(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for n.raft.State() != raft.Leader {
		select {
		case <-n.raft.LeaderCh():
		case <-timer.C:
			return fmt.Errorf("raftlog: not leader after %s (state %s)", timeout, n.raft.State())
		}
	}
	// A barrier is applied after every entry before it, so once it returns
	// the FSM has replayed the whole committed log.
	if err := n.raft.Barrier(time.Until(deadline)).Error(); err != nil {
		return fmt.Errorf("raftlog: replay the log: %w", err)
	}
	return nil
}

// Propose appends entry to the log and waits until it is durable and applied
// to the FSM. It returns the FSM's result and the entry's index. An error
// means the entry is not acknowledged: ErrNotLeader, ErrNotDurable (the store
// failed; the cause is wrapped), ErrClosed, or the context's error. After a
// context error or ErrNotDurable caused by lost leadership the entry may
// still be applied later, as with any timeout of a replicated write.
func (n *Node) Propose(ctx context.Context, entry []byte) (result any, index uint64, err error) {
	p, err := n.Enqueue(ctx, entry)
	if err != nil {
		return nil, 0, err
	}
	return p.Wait(ctx)
}

// Pending is a proposal handed to raft and not yet answered (see Enqueue).
type Pending struct {
	n *Node
	f raft.ApplyFuture
}

// Enqueue hands entry to raft and returns at once, so that a caller can
// have several entries in flight: raft writes the entries queued while one
// is being made durable in one append (one fsync), and applies them in the
// order they were enqueued. Wait answers as Propose does. The context
// bounds only how long raft may take to accept the entry into its queue.
func (n *Node) Enqueue(ctx context.Context, entry []byte) (*Pending, error) {
	if n.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var timeout time.Duration // zero: wait to enqueue until raft stops
	if d, ok := ctx.Deadline(); ok {
		if timeout = time.Until(d); timeout <= 0 {
			return nil, context.DeadlineExceeded
		}
	}
	return &Pending{n: n, f: n.raft.Apply(entry, timeout)}, nil
}

// Wait waits until the entry is durable and applied, and returns the FSM's
// result and the entry's index, or why it is not acknowledged (see Propose).
func (p *Pending) Wait(ctx context.Context) (result any, index uint64, err error) {
	// raft answers every future, except one committed but not yet applied
	// when raft shuts down: it would wait forever. So a proposal stops
	// waiting when the Node closes (or ctx ends); the goroutine left on
	// such a future ends with the process.
	done := make(chan error, 1)
	go func() { done <- p.f.Error() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("raftlog: propose: %w", ctx.Err())
	case <-p.n.closing:
		return nil, 0, ErrClosed
	}
	if err != nil {
		return nil, 0, p.n.proposeError(ctx, err)
	}
	return p.f.Response(), p.f.Index(), nil
}

func (n *Node) proposeError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return ErrNotLeader
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	case errors.Is(err, raft.ErrEnqueueTimeout):
		if ctx.Err() != nil {
			return fmt.Errorf("raftlog: propose: %w", ctx.Err())
		}
		return fmt.Errorf("raftlog: propose: %w", context.DeadlineExceeded)
	default:
		// raft.ErrLeadershipLost or the log store's own error.
		return fmt.Errorf("%w: %w", ErrNotDurable, err)
	}
}

// AppliedIndex is the raft index of the last entry applied to the FSM (or of
// the last entry a restored snapshot covered).
func (n *Node) AppliedIndex() uint64 { return n.fsm.applied.Load() }

// LastIndex is the index of the newest entry in the log, applied or not,
// raft's own entries included.
func (n *Node) LastIndex() uint64 { return n.raft.LastIndex() }

// IsLeader reports whether this node accepts proposals now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Snapshot takes a snapshot now and compacts the log behind it (keeping
// TrailingLogs entries). Nothing new to snapshot is not an error.
func (n *Node) Snapshot() error {
	if n.closed.Load() {
		return ErrClosed
	}
	err := n.raft.Snapshot().Error()
	switch {
	case err == nil, errors.Is(err, raft.ErrNothingNewToSnapshot):
		return nil
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	default:
		return fmt.Errorf("raftlog: snapshot: %w", err)
	}
}

// Close stops raft, closes the stores and releases the data dir. Proposals
// still waiting get ErrClosed. Close is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		close(n.closing)
		n.closeErr = n.cleanup()
	})
	return n.closeErr
}

func (n *Node) cleanup() error {
	var errs []error
	if n.raft != nil {
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raftlog: shutdown raft: %w", err))
		}
	}
	if n.transport != nil {
		// Closing the transport stops its listener only: the pooled
		// connections to the other members go too, so their handlers end.
		n.transport.CloseStreams()
	}
	for _, c := range n.closers {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raftlog: close store: %w", err))
		}
	}
	if n.lock != nil {
		if err := n.lock.release(); err != nil {
			errs = append(errs, fmt.Errorf("raftlog: release lock: %w", err))
		}
	}
	return errors.Join(errs...)
}
