package raftlog

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// ClusterOptions make a Node one member of a replicated cluster: its log is
// raft's, replicated over TCP to the other members, and only the leader
// accepts proposals. Every member applies every committed entry to its own
// FSM, so a follower holds the leader's state up to its applied index.
type ClusterOptions struct {
	// BindAddr is where raft listens (host:port). Required for a cluster.
	BindAddr string
	// Advertise is the address the other members reach this node at;
	// BindAddr when empty (which must then name a host, not 0.0.0.0).
	Advertise string
	// Peers are the initial voters, the same list on every member. A node
	// with no raft state whose NodeID is in the list bootstraps the cluster
	// with it; a node not in it waits to be added by a member. Empty: the
	// node bootstraps a cluster of itself, which can grow.
	Peers []Peer
	// Recover rebuilds the cluster's configuration from this node's data
	// (raft's RecoverCluster) as exactly Peers, for a cluster that lost its
	// quorum for good: run it on every surviving node with the same Peers,
	// then start them normally. See deploy/README.md.
	Recover bool
	// Timing scales raft's timeouts (heartbeat, election, leader lease,
	// commit) by this factor; 0 is 1 (raft's defaults: 1s, 1s, 500ms,
	// 50ms). Tests make it small.
	Timing float64
	// TLS, when set, carries raft over TLS: each member presents a
	// certificate naming its node id and checks the others' (see tls.go).
	TLS *TLSConfigs
}

// Peer is one voter of the initial configuration.
type Peer struct {
	ID   string
	Addr string
}

// ParsePeers parses "id=host:port,id=host:port".
func ParsePeers(s string) ([]Peer, error) {
	var out []Peer
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, addr, ok := strings.Cut(part, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("peer %q must be id=host:port", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("peer %q: address %q: %v", part, addr, err)
		}
		if seen[id] {
			return nil, fmt.Errorf("peer id %q is listed twice", id)
		}
		seen[id] = true
		out = append(out, Peer{ID: id, Addr: addr})
	}
	return out, nil
}

func (c *ClusterOptions) validate(nodeID string) error {
	if c.BindAddr == "" {
		switch {
		case len(c.Peers) > 0:
			return errors.New("raftlog: peers need a raft address (-raft-addr) to reach them from")
		case c.Recover:
			return errors.New("raftlog: recover needs a raft address (-raft-addr) and the surviving peers (-peers)")
		}
		return nil
	}
	{
		if _, _, err := net.SplitHostPort(c.BindAddr); err != nil {
			return fmt.Errorf("raftlog: raft address %q: %v", c.BindAddr, err)
		}
		adv := c.advertise()
		host, _, err := net.SplitHostPort(adv)
		if err != nil {
			return fmt.Errorf("raftlog: raft advertise address %q: %v", adv, err)
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			return fmt.Errorf("raftlog: raft advertise address %q must name a host the other members can reach (set -raft-advertise)", adv)
		}
	}
	if c.Recover && !c.hasPeer(nodeID) {
		return fmt.Errorf("raftlog: recover: this node %q must be one of the peers %v", nodeID, c.Peers)
	}
	if c.Timing < 0 {
		return fmt.Errorf("raftlog: timing factor %v must be > 0", c.Timing)
	}
	return nil
}

func (c *ClusterOptions) advertise() string {
	if c.Advertise != "" {
		return c.Advertise
	}
	return c.BindAddr
}

func (c *ClusterOptions) hasPeer(id string) bool {
	return slices.ContainsFunc(c.Peers, func(p Peer) bool { return p.ID == id })
}

func (c *ClusterOptions) configuration() raft.Configuration {
	var cfg raft.Configuration
	for _, p := range c.Peers {
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
	}
	return cfg
}

// timing sets raft's timeouts, scaled.
func (c *ClusterOptions) timing(conf *raft.Config) {
	f := c.Timing
	if f == 0 {
		f = 1
	}
	scale := func(d time.Duration) time.Duration { return max(time.Duration(float64(d)*f), 5*time.Millisecond) }
	conf.HeartbeatTimeout = scale(conf.HeartbeatTimeout)
	conf.ElectionTimeout = scale(conf.ElectionTimeout)
	conf.LeaderLeaseTimeout = scale(conf.LeaderLeaseTimeout)
	conf.CommitTimeout = scale(conf.CommitTimeout)
}

func newNetworkTransport(c ClusterOptions, logger hclog.Logger, members func() map[string]string) (*raft.NetworkTransport, *tlsLayer, error) {
	if c.TLS != nil {
		adv := c.Advertise
		if _, port, _ := net.SplitHostPort(c.BindAddr); adv == "" && port != "0" {
			adv = c.BindAddr
		}
		l, err := newTLSStreamLayer(c.BindAddr, adv, *c.TLS, members)
		if err != nil {
			return nil, nil, err
		}
		return raft.NewNetworkTransportWithLogger(l, 3, 10*time.Second, logger), l, nil
	}
	var adv net.Addr
	if _, port, _ := net.SplitHostPort(c.BindAddr); c.Advertise != "" || port != "0" {
		a, err := net.ResolveTCPAddr("tcp", c.advertise())
		if err != nil {
			return nil, nil, fmt.Errorf("raftlog: resolve raft advertise address %q: %w", c.advertise(), err)
		}
		adv = a
	} // else: an ephemeral port (tests) advertises what the listener got
	t, err := raft.NewTCPTransportWithLogger(c.BindAddr, adv, 3, 10*time.Second, logger)
	if err != nil {
		return nil, nil, fmt.Errorf("raftlog: listen for raft on %s: %w", c.BindAddr, err)
	}
	return t, nil, nil
}

// nodeIDFile holds the node id a data dir was first started with.
const nodeIDFile = "node-id"

// checkNodeID records id in a new data dir and refuses a dir first started
// under another id: raft's configuration names members by id, so a node
// that changed its id would no longer find itself in it.
func checkNodeID(dir, id string) error {
	p := filepath.Join(dir, nodeIDFile)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		if got := strings.TrimSpace(string(b)); got != id {
			return fmt.Errorf("raftlog: data dir %s belongs to node %q, not %q (-node-id must stay the same for a data dir)", dir, got, id)
		}
		return nil
	case errors.Is(err, os.ErrNotExist):
		if err := os.WriteFile(p, []byte(id+"\n"), 0o600); err != nil {
			return fmt.Errorf("raftlog: record the node id: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("raftlog: read the node id: %w", err)
	}
}

// Role of a node in its cluster.
type Role string

// Roles.
const (
	RoleLeader    Role = "leader"
	RoleFollower  Role = "follower"
	RoleCandidate Role = "candidate"
	RoleShutdown  Role = "shutdown"
)

// Role is this node's role now.
func (n *Node) Role() Role {
	switch n.raft.State() {
	case raft.Leader:
		return RoleLeader
	case raft.Candidate:
		return RoleCandidate
	case raft.Follower:
		return RoleFollower
	default:
		return RoleShutdown
	}
}

// Leader returns the current leader's id and raft address, empty when none
// is known.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// Member is one server of the raft configuration.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	Voter    bool   `json:"voter"`
}

// Members returns the latest raft configuration, sorted by id.
func (n *Node) Members() ([]Member, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raftlog: read configuration: %w", err)
	}
	var out []Member
	for _, s := range f.Configuration().Servers {
		out = append(out, Member{ID: string(s.ID), RaftAddr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// AddVoter adds (or re-addresses) a voting member. Leader only.
func (n *Node) AddVoter(id, addr string, timeout time.Duration) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("raftlog: member address %q: %v", addr, err)
	}
	return n.configErr(n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout).Error())
}

// RemoveServer removes a member. Leader only.
func (n *Node) RemoveServer(id string, timeout time.Duration) error {
	return n.configErr(n.raft.RemoveServer(raft.ServerID(id), 0, timeout).Error())
}

// TransferLeadership hands leadership to the most up-to-date follower and
// waits until it has it. Leader only.
func (n *Node) TransferLeadership() error {
	return n.configErr(n.raft.LeadershipTransfer().Error())
}

func (n *Node) configErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader):
		return ErrNotLeader
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	default:
		return fmt.Errorf("raftlog: %w", err)
	}
}

// Barrier waits until every entry committed before it is applied here.
// Leader only: a new leader calls it before it acts on its state.
func (n *Node) Barrier(timeout time.Duration) error {
	return n.configErr(n.raft.Barrier(timeout).Error())
}

// VerifyLeader checks with a quorum that this node still leads.
func (n *Node) VerifyLeader() error {
	return n.configErr(n.raft.VerifyLeader().Error())
}

// LeaderChanges delivers true when this node becomes leader and false when
// it stops being it (a cluster member only; nil for a single node, which
// leads from Open to Close). One consumer.
func (n *Node) LeaderChanges() <-chan bool { return n.leaderCh }

// ID is this node's raft id.
func (n *Node) ID() string { return n.id }

// RaftAddr is the address this node advertises to the other members (its
// id for a single node).
func (n *Node) RaftAddr() string {
	if n.transport != nil {
		return string(n.transport.LocalAddr())
	}
	return ""
}

// Clustered reports whether the node is a member of a cluster (it has a
// network transport).
func (n *Node) Clustered() bool { return n.transport != nil }

// RaftStats are the numbers of the raft state the cp exports as metrics.
type RaftStats struct {
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	LastContact  time.Duration // since the leader was last heard (followers)
	Peers        int           // voters in the configuration
}

// Stats returns raft's numbers now.
func (n *Node) Stats() RaftStats {
	st := RaftStats{AppliedIndex: n.AppliedIndex(), CommitIndex: n.raft.CommitIndex(), Term: n.raft.CurrentTerm()}
	if t := n.raft.LastContact(); !t.IsZero() && n.raft.State() != raft.Leader {
		st.LastContact = time.Since(t)
	}
	if ms, err := n.Members(); err == nil {
		for _, m := range ms {
			if m.Voter {
				st.Peers++
			}
		}
	}
	return st
}
