package raftlog

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/net/tlsconf/tlstest"
)

func tlsConfigs(t *testing.T, ca *tlstest.CA, cert *tlstest.Cert) *TLSConfigs {
	c := cert.TLS(t)
	return &TLSConfigs{
		Server: func() *tls.Config { return &tls.Config{Certificates: []tls.Certificate{c}, ClientCAs: ca.Pool()} },
		Client: func() *tls.Config { return &tls.Config{Certificates: []tls.Certificate{c}, RootCAs: ca.Pool()} },
	}
}

// TestClusterOverTLS: three members whose certificates name their ids
// replicate over TLS; a member whose certificate names another id, or
// comes from another CA, never receives an entry.
func TestClusterOverTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "cluster-ca")
	other := tlstest.NewCA(t, "other-ca")
	addrs := freeAddrs(t, 5)
	var peers []Peer
	for i := range 3 {
		peers = append(peers, Peer{ID: fmt.Sprintf("cp%d", i+1), Addr: addrs[i]})
	}
	base := t.TempDir()
	var nodes []*Node
	var fsms []*listFSM
	for i, p := range peers {
		f := &listFSM{}
		n, err := Open(Options{Dir: filepath.Join(base, p.ID), FSM: f, NodeID: p.ID,
			Cluster: ClusterOptions{BindAddr: addrs[i], Peers: peers, Timing: 0.2, TLS: tlsConfigs(t, ca, ca.Issue(t, p.ID, tlstest.Opts{}))}})
		if err != nil {
			t.Fatalf("Open %s: %v", p.ID, err)
		}
		t.Cleanup(func() { _ = n.Close() })
		nodes, fsms = append(nodes, n), append(fsms, f)
	}
	await(t, "a leader over TLS", func() bool { return leaderOf(nodes...) != nil })
	l := leaderOf(nodes...)
	if _, _, err := l.Propose(context.Background(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	await(t, "every member applies", func() bool {
		for _, f := range fsms {
			if got, _ := f.snapshot(); len(got) != 1 {
				return false
			}
		}
		return true
	})

	// cp4 presents a certificate for cp9; cp5 one from another CA.
	bad := []struct {
		id   string
		addr string
		cfg  *TLSConfigs
	}{
		{"cp4", addrs[3], tlsConfigs(t, ca, ca.Issue(t, "cp9", tlstest.Opts{}))},
		{"cp5", addrs[4], tlsConfigs(t, ca, other.Issue(t, "cp5", tlstest.Opts{}))},
	}
	for _, b := range bad {
		f := &listFSM{}
		n, err := Open(Options{Dir: filepath.Join(base, b.id), FSM: f, NodeID: b.id,
			Cluster: ClusterOptions{BindAddr: b.addr, Timing: 0.2, TLS: b.cfg}})
		if err != nil {
			t.Fatalf("Open %s: %v", b.id, err)
		}
		t.Cleanup(func() { _ = n.Close() })
		// Adding it as a non-voter would be the safe way; as a voter the
		// cluster of 4 (then 5) still has its quorum of 3.
		await(t, "a leader adds "+b.id, func() bool {
			l = leaderOf(nodes...)
			return l != nil && l.AddVoter(b.id, b.addr, 5*time.Second) == nil
		})
		before := l.TLSRefusals()
		await(t, "the leader to refuse "+b.id+"'s certificate twice", func() bool { return l.TLSRefusals() >= before+2 })
		if got, _ := f.snapshot(); len(got) != 0 {
			t.Fatalf("%s with a bad certificate received entries %v", b.id, got)
		}
	}
}
