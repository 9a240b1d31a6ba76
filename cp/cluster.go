package cp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp/raftlog"
	fnet "github.com/fluxforge/fluxforge/net"
)

// High availability. Several cps (three or five) share one raft log: one
// leader schedules; the followers apply the same entries to the same core
// and take over when it goes. More cps add availability, not throughput.
//
// What only the leader does: propose (every write), run the reconcile loop,
// hand the core's messages to agents, log timeline events. A follower
// answers the whole API by forwarding to the leader: writes always, data
// reads unless ?stale=true; the debug snapshot, /metrics, /healthz and
// /readyz always describe the node that answers.
//
// A new leader first applies everything committed before it (barrier),
// writes the config of a new cluster or this start's flags, publishes its
// API URL, and applies core.TakeoverInput (a heartbeat timeout of grace for
// every agent, unconfirmed assignments resent) before it schedules.

// ClusterOptions make the cp one member of a replicated cluster. The zero
// value is a single cp with no network transport (it cannot grow).
type ClusterOptions struct {
	// NodeID is this cp's raft id; it must stay the same for a data dir.
	// Default raftlog.DefaultNodeID (cmd/cp defaults it to the hostname for
	// a new data dir).
	NodeID string
	// RaftAddr is where raft listens (host:port); empty: a single node.
	RaftAddr string
	// RaftAdvertise is the raft address the other cps use (default
	// RaftAddr, which must then name a host).
	RaftAdvertise string
	// AdvertiseURL is this cp's API URL as the other cps and agents reach
	// it; published through the log. Required with RaftAddr.
	AdvertiseURL string
	// Peers are the initial voters (the same list on every node).
	Peers []raftlog.Peer
	// Recover rebuilds a cluster that lost its quorum from this node's
	// data, as exactly Peers (raft's RecoverCluster).
	Recover bool
	// RaftTiming scales raft's timeouts (tests make it small); 0 is 1.
	RaftTiming float64
	// ForwardTimeout bounds a request forwarded to the leader. Default
	// 30s.
	ForwardTimeout time.Duration
	// RaftTLS, when set, carries raft between the cps over TLS: each
	// presents a certificate naming its node id and checks the others'.
	RaftTLS *raftlog.TLSConfigs
	// HTTPClient carries requests to the other cps (forwarded requests,
	// a follower's announce); a keep-alive client by default. With TLS it
	// must trust the CA of the cps' certificates.
	HTTPClient *http.Client
}

func (c *ClusterOptions) clustered() bool { return c.RaftAddr != "" }

func (c *ClusterOptions) validate() error {
	if !c.clustered() {
		if len(c.Peers) > 0 || c.Recover {
			return errors.New("cp: -peers and -recover need -raft-addr")
		}
		if c.AdvertiseURL != "" {
			return checkAPIURL(c.AdvertiseURL)
		}
		return nil
	}
	if c.AdvertiseURL == "" {
		return errors.New("cp: -raft-addr needs -advertise, the API URL the other cps and agents use for this one")
	}
	if err := checkAPIURL(c.AdvertiseURL); err != nil {
		return fmt.Errorf("cp: -advertise: %w", err)
	}
	if c.ForwardTimeout < 0 {
		return fmt.Errorf("cp: forward timeout %v must be > 0", c.ForwardTimeout)
	}
	return nil
}

// DefaultNodeID is the node id for a data dir when -node-id is not given:
// the one the dir was first started with; for a dir made before clusters
// existed (raft state, no node-id file), raftlog.DefaultNodeID, the id it
// was bootstrapped with; else the hostname.
func DefaultNodeID(dataDir string) string {
	if dataDir != "" {
		if b, err := os.ReadFile(filepath.Join(dataDir, "node-id")); err == nil {
			if id := strings.TrimSpace(string(b)); id != "" {
				return id
			}
		}
		if _, err := os.Stat(filepath.Join(dataDir, "wal")); err == nil {
			return raftlog.DefaultNodeID
		}
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return raftlog.DefaultNodeID
}

// HeaderLeader names the leader's API URL on answers of a follower (and
// of a cp that knows no leader: empty), so agents and clients can go to
// it directly.
const HeaderLeader = "Flux-Leader"

// headerForwarded marks a request a follower forwarded: the receiver
// serves it or refuses it, never forwards it again.
const headerForwarded = "Flux-Forwarded-By"

// cluster is a Server's replicated-cluster state.
type cluster struct {
	leading atomic.Bool // leadership established: sink installed, takeover applied
	mu      sync.Mutex
	proxies map[string]*httputil.ReverseProxy // by leader URL
}

// ready reports whether this node may serve the core's state: it has one.
func (s *Server) hasCore() bool {
	ok := false
	s.read(func(c *core.ControlPlane) { ok = c != nil })
	return ok
}

// leaderURL is the API URL of the current leader, empty if unknown.
func (s *Server) leaderURL() string {
	id, _ := s.node.Leader()
	if id == "" {
		return ""
	}
	if id == s.opts.Cluster.nodeID() && s.opts.Cluster.AdvertiseURL != "" {
		return s.opts.Cluster.AdvertiseURL
	}
	for _, m := range s.fsm.memberList() {
		if m.ID == id {
			return m.APIURL
		}
	}
	return ""
}

func (c *ClusterOptions) nodeID() string {
	if c.NodeID == "" {
		return raftlog.DefaultNodeID
	}
	return c.NodeID
}

// servedLocally reports whether r is answered by this node whatever its
// role: its own health, metrics and debug snapshot, raft's membership as it
// knows it, and data reads that ask for ?stale=true.
func servedLocally(r *http.Request) bool {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics", "/scheduler/debug/snapshot":
		return true
	case "/admin/raft/members":
		return r.Method == http.MethodGet
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return r.URL.Query().Get("stale") == "true"
	}
	return false
}

// statelessPaths answer without the core's state.
var statelessPaths = map[string]bool{"/healthz": true, "/metrics": true, "/admin/raft/members": true}

// clusterHandler puts the leader in front of next: on a follower every
// request but those servedLocally goes to the leader and comes back with
// its status and body. A single node serves everything itself.
func (s *Server) clusterHandler(next http.Handler) http.Handler {
	if !s.node.Clustered() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local, leading := servedLocally(r), s.cluster.leading.Load()
		if leading || local {
			// A leader has the state; a follower serving a local read
			// may not have received it yet (only its health, metrics and
			// raft's membership do without it).
			if leading || statelessPaths[r.URL.Path] || s.hasCore() {
				if lu := s.leaderURL(); lu != "" {
					w.Header().Set(HeaderLeader, lu)
				}
				next.ServeHTTP(w, r)
				return
			}
			if r.URL.Path == "/readyz" {
				writeError(w, http.StatusServiceUnavailable, "not_ready", "this cp has not received the cluster's state yet")
				return
			}
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "no_state", "this cp has not received the cluster's state yet: retry, or ask the leader")
			return
		}
		if strings.HasPrefix(r.URL.Path, "/v1/agent/") {
			s.notLeader(w)
			return
		}
		s.forward(w, r)
	})
}

// NotLeaderError is the body a follower answers the agent protocol with:
// agents talk to the leader itself (a forwarded request would lose the
// agent's own TLS identity), so they switch to LeaderURL.
type NotLeaderError struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	LeaderURL string `json:"leader_url,omitempty"`
}

func (s *Server) notLeader(w http.ResponseWriter) {
	lu := s.leaderURL()
	msg := fmt.Sprintf("cp %s is not the leader", s.opts.Cluster.nodeID())
	if lu == "" {
		msg += " and knows no leader: retry"
	} else {
		msg += ": talk to the leader at " + lu
		w.Header().Set(HeaderLeader, lu)
	}
	w.Header().Set("Retry-After", "1")
	fnet.WriteJSON(w, http.StatusServiceUnavailable, NotLeaderError{Error: "not_leader", Message: msg, LeaderURL: lu})
}

// forward sends r to the leader and copies its answer back.
func (s *Server) forward(w http.ResponseWriter, r *http.Request) {
	if by := r.Header.Get(headerForwarded); by != "" {
		// The forwarder took this node for the leader, which it no longer
		// (or not yet) is: one hop only, the client retries.
		w.Header().Set("Retry-After", "1")
		s.metrics.forwarded.WithLabelValues("no_leader").Inc()
		writeError(w, http.StatusServiceUnavailable, "not_leader",
			fmt.Sprintf("cp %s forwarded this request to %s, which is not the leader (any more): retry", by, s.opts.Cluster.nodeID()))
		return
	}
	lu := s.leaderURL()
	if lu == "" {
		w.Header().Set("Retry-After", "1")
		s.metrics.forwarded.WithLabelValues("no_leader").Inc()
		reason := "no leader is elected (an election is under way, or fewer than a quorum of cps are up)"
		if id, _ := s.node.Leader(); id != "" {
			reason = fmt.Sprintf("the leader %s has not published its API URL yet", id)
		}
		writeError(w, http.StatusServiceUnavailable, "no_leader", reason+": retry")
		return
	}
	w.Header().Set(HeaderLeader, lu)
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.Cluster.ForwardTimeout)
	defer cancel()
	s.proxyTo(lu).ServeHTTP(w, r.WithContext(ctx))
}

func (s *Server) proxyTo(leader string) *httputil.ReverseProxy {
	c := &s.cluster
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.proxies[leader]; p != nil {
		return p
	}
	target, _ := url.Parse(leader) // checked when published
	id := s.opts.Cluster.nodeID()
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			pr.Out.Header.Set(headerForwarded, id)
		},
		Transport: s.opts.Cluster.HTTPClient.Transport,
		ModifyResponse: func(resp *http.Response) error {
			s.metrics.forwarded.WithLabelValues("ok").Inc()
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.metrics.forwarded.WithLabelValues("error").Inc()
			w.Header().Set("Retry-After", "1")
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				// Nothing reached the leader: the request did not happen.
				writeError(w, http.StatusServiceUnavailable, "leader_unreachable",
					fmt.Sprintf("the leader at %s cannot be reached (%v); nothing was sent: retry", leader, err))
				return
			}
			writeError(w, http.StatusServiceUnavailable, "forward_failed",
				fmt.Sprintf("forwarding to the leader at %s failed after sending (%v): the request may or may not have been applied; retry with the same idempotency key", leader, err))
		},
	}
	if c.proxies == nil {
		c.proxies = map[string]*httputil.ReverseProxy{}
	}
	c.proxies[leader] = p
	return p
}

// runCluster follows this node's leadership until ctx ends: it establishes
// leadership when elected, gives it up when not, and keeps this node's API
// URL published.
func (s *Server) runCluster(ctx context.Context) {
	announce := s.clock.Ticker(time.Second)
	defer announce.Stop()
	var lead context.CancelFunc
	stopLeading := func() {
		if lead != nil {
			lead()
			lead = nil
		}
		s.revokeLeadership()
	}
	defer stopLeading()
	// Leadership may have come before this loop started.
	if s.node.IsLeader() {
		lead = s.startLeading(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case isLeader := <-s.node.LeaderChanges():
			stopLeading()
			if isLeader {
				lead = s.startLeading(ctx)
			}
		case <-announce.C:
			if !s.node.IsLeader() {
				s.announce(ctx)
			}
		}
	}
}

// startLeading establishes leadership in the background; the returned
// function abandons it.
func (s *Server) startLeading(ctx context.Context) context.CancelFunc {
	lctx, cancel := context.WithCancel(ctx)
	go s.establishLeadership(lctx)
	return cancel
}

// establishLeadership makes this newly elected node act as the leader.
func (s *Server) establishLeadership(ctx context.Context) {
	start := time.Now()
	id := s.opts.Cluster.nodeID()
	for ctx.Err() == nil {
		err := s.becomeLeader(ctx)
		if err == nil {
			s.log.Info("leadership established", "node_id", id, "applied_index", s.node.AppliedIndex(),
				"duration", time.Since(start).String())
			return
		}
		s.log.Warn("leadership not established yet", "node_id", id, "error", err.Error())
		if !s.node.IsLeader() {
			return
		}
		t := s.clock.Timer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

func (s *Server) becomeLeader(ctx context.Context) error {
	if err := s.node.Barrier(10 * time.Second); err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	if err := s.fsm.err(); err != nil {
		return err
	}
	s.fsm.syncIndex(s.node.AppliedIndex())
	if err := s.writeStartEntries(ctx); err != nil {
		return err
	}
	self := MemberInfo{ID: s.opts.Cluster.nodeID(), APIURL: s.opts.Cluster.AdvertiseURL, RaftAddr: s.node.RaftAddr()}
	if err := s.publishMember(ctx, self); err != nil {
		return err
	}
	s.fsm.setSink(s.leaderSink)
	a, err := s.propose(ctx, core.TakeoverInput{Node: self.ID})
	if err == nil {
		err = a.Err
	}
	if err != nil {
		s.fsm.setSink(nil)
		return fmt.Errorf("takeover: %w", err)
	}
	s.cluster.leading.Store(true)
	return nil
}

// revokeLeadership stops everything only the leader does.
func (s *Server) revokeLeadership() {
	if !s.cluster.leading.Swap(false) {
		return
	}
	s.fsm.setSink(nil)
	s.log.Warn("leadership lost: no longer scheduling", "node_id", s.opts.Cluster.nodeID())
	s.leadershipLost()
}

// publishMember writes m to the log unless the log already holds it.
func (s *Server) publishMember(ctx context.Context, m MemberInfo) error {
	for _, have := range s.fsm.memberList() {
		if have == m {
			return nil
		}
	}
	if err := m.validate(); err != nil {
		return err
	}
	b, err := json.Marshal(logEntry{V: entryMemberFormatVersion, Member: &m})
	if err != nil {
		return err
	}
	if _, _, err := s.node.Propose(ctx, b); err != nil {
		return fmt.Errorf("publish member %s: %w", m.ID, err)
	}
	return nil
}

// announce asks the leader to publish this follower's API URL, once the
// leader's own is known and until the log holds this node's.
func (s *Server) announce(ctx context.Context) {
	self := MemberInfo{ID: s.opts.Cluster.nodeID(), APIURL: s.opts.Cluster.AdvertiseURL, RaftAddr: s.node.RaftAddr()}
	for _, have := range s.fsm.memberList() {
		if have == self {
			return
		}
	}
	lu := s.leaderURL()
	if lu == "" {
		return
	}
	body, _ := json.Marshal(self)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(lu, "/")+"/admin/raft/announce", bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	if s.opts.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+s.opts.AdminToken)
	}
	resp, err := s.opts.Cluster.HTTPClient.Do(req)
	if err != nil {
		s.log.Debug("member announce failed", "leader", lu, "error", err.Error())
		return
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		s.log.Warn("member announce refused", "leader", lu, "status", resp.StatusCode)
	}
}

// memberList returns the members published through the log, without the
// state's lock: every request of a cluster reads it (for Flux-Leader), and
// the slice is replaced whole (setMember copies), never changed in place.
func (f *fsm) memberList() []MemberInfo {
	if m := f.members.Load(); m != nil {
		return *m
	}
	return nil
}

// ---- admin API: /admin/raft ----

// MemberView is one cp of the cluster as GET /admin/raft/members and the
// debug snapshot show it.
type MemberView struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIURL   string `json:"api_url,omitempty"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
}

// MembersView is the body of GET /admin/raft/members.
type MembersView struct {
	NodeID  string       `json:"node_id"`
	Leader  string       `json:"leader"`
	Members []MemberView `json:"members"`
}

func (s *Server) membersView() (MembersView, error) {
	leader, _ := s.node.Leader()
	v := MembersView{NodeID: s.opts.Cluster.nodeID(), Leader: leader, Members: []MemberView{}}
	rm, err := s.node.Members()
	if err != nil {
		return v, err
	}
	urls := map[string]string{}
	for _, m := range s.fsm.memberList() {
		urls[m.ID] = m.APIURL
	}
	if !s.node.Clustered() && s.opts.Cluster.AdvertiseURL != "" {
		urls[v.NodeID] = s.opts.Cluster.AdvertiseURL
	}
	for _, m := range rm {
		v.Members = append(v.Members, MemberView{ID: m.ID, RaftAddr: m.RaftAddr, APIURL: urls[m.ID], Voter: m.Voter, Leader: m.ID == leader})
	}
	return v, nil
}

func (s *Server) getMembers(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	if _, ok := query(w, r); !ok {
		return
	}
	v, err := s.membersView()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	fnet.WriteJSON(w, http.StatusOK, v)
}

// AddMemberRequest is the body of POST /admin/raft/members.
type AddMemberRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
}

func (s *Server) addMember(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var req AddMemberRequest
	if !s.decodeBody(w, r, s.opts.APIBodyBytesMax, false, &req) {
		return
	}
	if err := (MemberInfo{ID: req.ID, APIURL: "http://x"}).validate(); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if !s.node.Clustered() {
		writeError(w, http.StatusConflict, "not_clustered", "this cp runs without -raft-addr: a single node cannot take members")
		return
	}
	if err := s.node.AddVoter(req.ID, req.RaftAddr, 10*time.Second); err != nil {
		s.writeRaftError(w, err)
		return
	}
	s.log.Info("raft member added", "id", req.ID, "raft_addr", req.RaftAddr)
	s.getMembers(w, r, nil)
}

func (s *Server) removeMember(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	id := p.ByName("id")
	v, err := s.membersView()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	found := false
	for _, m := range v.Members {
		found = found || m.ID == id
	}
	if !found {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no raft member %q", id))
		return
	}
	if err := s.node.RemoveServer(id, 10*time.Second); err != nil {
		s.writeRaftError(w, err)
		return
	}
	s.log.Info("raft member removed", "id", id)
	s.getMembers(w, r, nil)
}

func (s *Server) transferLeadership(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	if !s.node.Clustered() {
		writeError(w, http.StatusConflict, "not_clustered", "this cp runs without -raft-addr: there is no one to transfer leadership to")
		return
	}
	from := s.opts.Cluster.nodeID()
	if err := s.node.TransferLeadership(); err != nil {
		s.writeRaftError(w, err)
		return
	}
	leader, _ := s.node.Leader()
	s.log.Info("leadership transferred", "from", from, "to", leader)
	fnet.WriteJSON(w, http.StatusOK, map[string]string{"from": from, "leader": leader})
}

// announceMember is POST /admin/raft/announce: a follower asks the leader
// to publish its API URL. The id must be a raft member at that address.
func (s *Server) announceMember(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var m MemberInfo
	if !s.decodeBody(w, r, s.opts.APIBodyBytesMax, false, &m) {
		return
	}
	if err := m.validate(); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	rm, err := s.node.Members()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	ok := false
	for _, x := range rm {
		ok = ok || x.ID == m.ID && x.RaftAddr == m.RaftAddr
	}
	if !ok {
		writeError(w, http.StatusForbidden, "not_a_member", fmt.Sprintf("%s at %s is not a raft member", m.ID, m.RaftAddr))
		return
	}
	if err := s.publishMember(r.Context(), m); err != nil {
		s.writeRaftError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) writeRaftError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, raftlog.ErrNotLeader):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "not_leader", "this cp is not the leader: retry")
	case errors.Is(err, raftlog.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "shutting_down", err.Error())
	default:
		writeError(w, http.StatusBadRequest, "raft_refused", err.Error())
	}
}

// NodeView is what the debug snapshot adds about the answering node.
type NodeView struct {
	NodeID  string       `json:"node_id"`
	Role    string       `json:"role"`
	Leader  string       `json:"leader"`
	Members []MemberView `json:"members"`
}

func (s *Server) nodeView() NodeView {
	v, _ := s.membersView()
	return NodeView{NodeID: v.NodeID, Role: string(s.node.Role()), Leader: v.Leader, Members: v.Members}
}

// leadershipLost drops what only the leader holds for agents: the messages
// waiting for them go with the leadership (the next leader resends the
// unconfirmed assignments on taking over).
func (s *Server) leadershipLost() { s.mail.dropAll() }

// HandOff transfers leadership to another cp when this one leads a
// cluster, before it shuts down: the others take over at once instead of
// after an election timeout. A failed transfer is logged; the shutdown goes
// on and the others elect a leader as after a crash.
func (s *Server) HandOff() {
	if !s.node.Clustered() || !s.node.IsLeader() {
		return
	}
	if err := s.node.TransferLeadership(); err != nil {
		s.log.Warn("leadership not handed off before shutdown: the others will elect a leader", "error", err.Error())
		return
	}
	leader, _ := s.node.Leader()
	s.log.Info("leadership handed off before shutdown", "to", leader)
}
