package raftlog

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests run real raft members over loopback TCP with raft's timeouts
// scaled down; outcomes are awaited by polling with a deadline.

const testTiming = 0.3 // 300ms heartbeat and election timeouts: short, yet no spurious elections on a loaded CI machine

func openMember(t *testing.T, id, dir string, peers []Peer) (*Node, *listFSM) {
	t.Helper()
	f := &listFSM{}
	n, err := Open(Options{Dir: dir, FSM: f, NodeID: id,
		Cluster: ClusterOptions{BindAddr: "127.0.0.1:0", Peers: peers, Timing: testTiming}})
	if err != nil {
		t.Fatalf("Open %s: %v", id, err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n, f
}

func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func leaderOf(nodes ...*Node) *Node {
	for _, n := range nodes {
		if n != nil && !n.closed.Load() && n.Role() == RoleLeader {
			return n
		}
	}
	return nil
}

func TestClusterReplicatesAndFailsOver(t *testing.T) {
	base := t.TempDir()
	n1, f1 := openMember(t, "cp1", filepath.Join(base, "1"), nil)
	await(t, "cp1 leads", func() bool { return n1.Role() == RoleLeader })
	n2, f2 := openMember(t, "cp2", filepath.Join(base, "2"), nil)
	n3, f3 := openMember(t, "cp3", filepath.Join(base, "3"), nil)
	if n2.Role() == RoleLeader || n3.Role() == RoleLeader {
		t.Fatal("a node outside the configuration made itself leader")
	}
	for _, n := range []*Node{n2, n3} {
		if err := n1.AddVoter(n.ID(), n.RaftAddr(), 5*time.Second); err != nil {
			t.Fatalf("add voter: %v", err)
		}
	}
	ms, err := n1.Members()
	if err != nil || len(ms) != 3 || ms[0].ID != "cp1" || !ms[2].Voter {
		t.Fatalf("members = %+v, %v", ms, err)
	}
	ctx := context.Background()
	for i := range 5 {
		if _, _, err := n1.Propose(ctx, fmt.Appendf(nil, "e%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := n2.Propose(ctx, []byte("x")); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("propose on a follower: %v, want ErrNotLeader", err)
	}
	await(t, "followers apply", func() bool {
		a, _ := f2.snapshot()
		b, _ := f3.snapshot()
		return len(a) == 5 && len(b) == 5
	})
	if id, _ := n2.Leader(); id != "cp1" {
		t.Fatalf("follower names leader %q", id)
	}

	// The leader dies: one of the others takes over with every entry.
	n1Addr := n1.RaftAddr()
	_ = n1.Close()
	await(t, "a new leader", func() bool { return leaderOf(n2, n3) != nil })
	l := leaderOf(n2, n3)
	if err := l.Barrier(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Propose(ctx, []byte("after")); err != nil {
		t.Fatalf("propose on the new leader: %v", err)
	}
	fl := f2
	if l == n3 {
		fl = f3
	}
	if got, _ := fl.snapshot(); strings.Join(got, ",") != "e0,e1,e2,e3,e4,after" {
		t.Fatalf("new leader's state %v", got)
	}
	_ = f1

	// The old leader comes back on its data dir as a follower and catches up.
	f1b := &listFSM{}
	n1b, err := Open(Options{Dir: filepath.Join(base, "1"), FSM: f1b, NodeID: "cp1",
		Cluster: ClusterOptions{BindAddr: n1Addr, Timing: testTiming}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n1b.Close() })
	await(t, "cp1 catches up", func() bool { got, _ := f1b.snapshot(); return len(got) == 6 })

	// Transfer and removal.
	if err := l.TransferLeadership(); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	await(t, "leadership moves", func() bool { nl := leaderOf(n1b, n2, n3); return nl != nil && nl != l })
	nl := leaderOf(n1b, n2, n3)
	if err := nl.RemoveServer(l.ID(), 5*time.Second); err != nil {
		t.Fatalf("remove: %v", err)
	}
	ms, _ = nl.Members()
	if len(ms) != 2 {
		t.Fatalf("members after remove = %+v", ms)
	}
}

func TestClusterBootstrapFromPeersAndNodeIDCheck(t *testing.T) {
	base := t.TempDir()
	// Peers need fixed addresses: take three ephemeral ports.
	addrs := freeAddrs(t, 3)
	var peers []Peer
	for i, a := range addrs {
		peers = append(peers, Peer{ID: fmt.Sprintf("cp%d", i+1), Addr: a})
	}
	var nodes []*Node
	for i, p := range peers {
		n, err := Open(Options{Dir: filepath.Join(base, p.ID), FSM: &listFSM{}, NodeID: p.ID,
			Cluster: ClusterOptions{BindAddr: addrs[i], Peers: peers, Timing: testTiming}})
		if err != nil {
			t.Fatalf("Open %s: %v", p.ID, err)
		}
		nodes = append(nodes, n)
	}
	await(t, "a leader", func() bool { return leaderOf(nodes...) != nil })
	if _, _, err := leaderOf(nodes...).Propose(context.Background(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		_ = n.Close()
	}
	// The same dir under another id is refused by name.
	_, err := Open(Options{Dir: filepath.Join(base, "cp1"), FSM: &listFSM{}, NodeID: "other",
		Cluster: ClusterOptions{BindAddr: addrs[0], Peers: peers, Timing: testTiming}})
	if err == nil || !strings.Contains(err.Error(), `belongs to node "cp1"`) {
		t.Fatalf("reopen under another id: %v", err)
	}

	// Quorum lost for good: cp1 alone recovers as a cluster of itself.
	n, err := Open(Options{Dir: filepath.Join(base, "cp1"), FSM: &listFSM{}, NodeID: "cp1",
		Cluster: ClusterOptions{BindAddr: addrs[0], Peers: peers[:1], Timing: testTiming, Recover: true}})
	if err != nil {
		t.Fatalf("recover: %v", err)
	}
	defer n.Close()
	await(t, "the recovered node leads", func() bool { return n.Role() == RoleLeader })
	if _, _, err := n.Propose(context.Background(), []byte("y")); err != nil {
		t.Fatal(err)
	}
}

func TestParsePeers(t *testing.T) {
	ps, err := ParsePeers("cp1=10.0.0.1:8300, cp2=host:8300,")
	if err != nil || len(ps) != 2 || ps[1] != (Peer{"cp2", "host:8300"}) {
		t.Fatalf("%v %v", ps, err)
	}
	for _, bad := range []string{"cp1", "cp1=", "=h:1", "cp1=host", "cp1=h:1,cp1=h:2"} {
		if _, err := ParsePeers(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestClusterOptionsValidate(t *testing.T) {
	for _, c := range []ClusterOptions{
		{Peers: []Peer{{"a", "h:1"}}},
		{BindAddr: "0.0.0.0:8300"},
		{BindAddr: "nope"},
		{BindAddr: "h:1", Recover: true, Peers: []Peer{{"b", "h:2"}}},
	} {
		if err := c.validate("a"); err == nil {
			t.Errorf("%+v valid", c)
		}
	}
	if err := (&ClusterOptions{BindAddr: "0.0.0.0:8300", Advertise: "10.0.0.1:8300"}).validate("a"); err != nil {
		t.Fatal(err)
	}
}

func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return out
}
