package raftlog

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// TLS between the members of a cluster. Every member presents a
// certificate naming its node id (the CN or a DNS SAN) and checks the
// other side's: a member dialling the raft address of node cp2 accepts only
// a certificate for cp2, and a member accepting a connection accepts only a
// certificate naming one of the cluster's members (its raft configuration,
// or the initial peers before it has one). Both chain to the cluster's CA.

// TLSConfigs give the TLS configs of a member, read at every handshake so
// that a reload of the files (SIGHUP) applies to new connections: Server
// presents this node's certificate and holds the CA the others' chain to;
// Client presents the same certificate and trusts the same CA.
type TLSConfigs struct {
	Server func() *tls.Config
	Client func() *tls.Config
}

// tlsLayer is a raft.StreamLayer over TLS.
type tlsLayer struct {
	ln        net.Listener
	advertise net.Addr
	cfg       TLSConfigs
	members   func() map[string]string // raft address -> node id, of the configuration
	refused   atomic.Int64             // handshakes refused for the peer's certificate, either side
}

// NewTLSStreamLayer listens on bind for raft over TLS. members reports the
// cluster's members by raft address; the Node sets it (see Options).
func newTLSStreamLayer(bind, advertise string, cfg TLSConfigs, members func() map[string]string) (*tlsLayer, error) {
	if cfg.Server == nil || cfg.Client == nil {
		return nil, errors.New("raftlog: raft over TLS needs a server and a client config")
	}
	l := &tlsLayer{cfg: cfg, members: members}
	inner, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raftlog: listen for raft on %s: %w", bind, err)
	}
	srv := &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		base := cfg.Server()
		if base.GetConfigForClient != nil {
			c, err := base.GetConfigForClient(hello)
			if err != nil {
				return nil, err
			}
			if c != nil {
				base = c
			}
		}
		c := base.Clone()
		c.MinVersion = max(c.MinVersion, tls.VersionTLS12)
		c.NextProtos = nil
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("raft peer presented no certificate")
			}
			for _, id := range l.members() {
				if certNames(cs.PeerCertificates[0], id) {
					return nil
				}
			}
			l.refused.Add(1)
			return fmt.Errorf("raft peer certificate (CN %q, DNS names %q) names no member of the cluster",
				cs.PeerCertificates[0].Subject.CommonName, cs.PeerCertificates[0].DNSNames)
		}
		return c, nil
	}}
	l.ln = tls.NewListener(inner, srv)
	if advertise == "" {
		l.advertise = inner.Addr()
	} else {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			_ = inner.Close()
			return nil, fmt.Errorf("raftlog: resolve raft advertise address %q: %w", advertise, err)
		}
		l.advertise = a
	}
	return l, nil
}

func certNames(c *x509.Certificate, name string) bool {
	return c.Subject.CommonName == name || slices.Contains(c.DNSNames, name)
}

func (l *tlsLayer) Accept() (net.Conn, error) { return l.ln.Accept() }
func (l *tlsLayer) Close() error              { return l.ln.Close() }
func (l *tlsLayer) Addr() net.Addr            { return l.advertise }

// Dial connects to the member at address and checks that its certificate
// names the node id the configuration gives that address.
func (l *tlsLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	id, ok := l.members()[string(address)]
	if !ok {
		return nil, fmt.Errorf("raftlog: %s is no member's raft address", address)
	}
	c := l.cfg.Client().Clone()
	c.MinVersion = max(c.MinVersion, tls.VersionTLS12)
	// The member's certificate must name its node id: verify the chain
	// against the CA and the name against the id (not the host dialled).
	c.InsecureSkipVerify = true
	roots := c.RootCAs
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("raft peer presented no certificate")
		}
		leaf := cs.PeerCertificates[0]
		inter := x509.NewCertPool()
		for _, ic := range cs.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			l.refused.Add(1)
			return fmt.Errorf("raft peer %s: %w", id, err)
		}
		if !certNames(leaf, id) {
			l.refused.Add(1)
			return fmt.Errorf("raft peer at %s presented a certificate for %q (DNS names %q), not for member %q", address, leaf.Subject.CommonName, leaf.DNSNames, id)
		}
		return nil
	}
	d := &net.Dialer{Timeout: timeout}
	return tls.DialWithDialer(d, "tcp", string(address), c)
}

// memberAddrs tracks the configuration's members by address for the TLS
// layer: the initial peers until raft runs, then its configuration.
type memberAddrs struct {
	peers []Peer
	node  atomic.Pointer[Node]
}

func (m *memberAddrs) get() map[string]string {
	out := map[string]string{}
	for _, p := range m.peers {
		out[p.Addr] = p.ID
	}
	if n := m.node.Load(); n != nil && n.raft != nil {
		if ms, err := n.Members(); err == nil {
			for _, x := range ms {
				out[x.RaftAddr] = x.ID
			}
		}
	}
	return out
}

// TLSRefusals counts the raft handshakes this node refused for the other
// side's certificate (another CA, another node id), dialling or accepting.
func (n *Node) TLSRefusals() int64 {
	if n.tlsLayer == nil {
		return 0
	}
	return n.tlsLayer.refused.Load()
}
