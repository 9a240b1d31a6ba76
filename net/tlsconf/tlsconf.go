// Package tlsconf builds the TLS configs of the daemons and fluxctl from
// PEM files, re-readable without a restart (SIGHUP): a server picks up the
// current certificate, key and client CA on every handshake
// (GetConfigForClient), a client its certificate (GetClientCertificate),
// so connections open at a reload keep working and new ones use the new
// files (a client's CA is read when its config is built). TLS 1.2 is the minimum everywhere.
//
// Handshake failures of a server are sorted into reasons (Reason*) for
// flux_tls_handshake_errors_total: give the http.Server ErrorLog, which
// sees every failed handshake (plain HTTP too).
package tlsconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// Reasons of a failed handshake.
const (
	ReasonUnknownCA = "unknown_ca"
	ReasonExpired   = "expired"
	ReasonPlainHTTP = "plain_http"
	ReasonOther     = "other"
)

// Reasons lists every reason, for metrics that start each series at 0.
var Reasons = []string{ReasonUnknownCA, ReasonExpired, ReasonPlainHTTP, ReasonOther}

// loaded is one reading of the files.
type loaded struct {
	cert     *tls.Certificate // nil without a cert
	pool     *x509.CertPool   // nil without a CA file
	notAfter time.Time
}

// files are a certificate, its key and a CA bundle, any of them optional
// (a cert needs its key).
type files struct {
	cert, key, ca string
	cur           atomic.Pointer[loaded]
}

func (f *files) load() (*loaded, error) {
	l := &loaded{}
	if (f.cert == "") != (f.key == "") {
		return nil, errors.New("tls: a certificate needs its key and a key its certificate (give both)")
	}
	if f.cert != "" {
		c, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("tls: certificate %s, key %s: %w", f.cert, f.key, err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("tls: certificate %s: %w", f.cert, err)
		}
		c.Leaf = leaf
		l.cert, l.notAfter = &c, leaf.NotAfter
	}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, fmt.Errorf("tls: CA file: %w", err)
		}
		l.pool = x509.NewCertPool()
		if !l.pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: CA file %s holds no PEM certificate", f.ca)
		}
	}
	return l, nil
}

// Reload re-reads the files. On an error the previous ones stay in force.
func (f *files) Reload() error {
	l, err := f.load()
	if err != nil {
		return err
	}
	f.cur.Store(l)
	return nil
}

// NotAfter is when the current certificate expires (zero without one).
func (f *files) NotAfter() time.Time { return f.cur.Load().notAfter }

// Server is a server's TLS: its certificate and key, and optionally the CA
// client certificates must chain to.
type Server struct{ files }

// NewServer reads certFile and keyFile (both required) and clientCAFile
// (optional: without it client certificates are not asked for).
func NewServer(certFile, keyFile, clientCAFile string) (*Server, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: a server needs a certificate and its key")
	}
	s := &Server{files{cert: certFile, key: keyFile, ca: clientCAFile}}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Config is the server config: every handshake takes the files as last
// read. With a client CA, a client certificate is verified if one is
// given (VerifyClientCertIfGiven): callers that need one check
// http.Request.TLS.
func (s *Server) Config() *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		l := s.cur.Load()
		c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*l.cert}, NextProtos: base.NextProtos}
		if l.pool != nil {
			c.ClientCAs, c.ClientAuth = l.pool, tls.VerifyClientCertIfGiven
		}
		return c, nil
	}
	return base
}

// Client is a client's TLS: the CA the server's certificate must chain to
// (the system's roots without one) and optionally a client certificate.
type Client struct{ files }

// NewClient reads caFile (optional) and certFile and keyFile (optional,
// both or neither).
func NewClient(caFile, certFile, keyFile string) (*Client, error) {
	c := &Client{files{cert: certFile, key: keyFile, ca: caFile}}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Config is the client config: the server is verified against the CA as
// read when Config is called (the system's roots without one); the client
// certificate is the one last read, on every handshake.
func (c *Client) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    c.cur.Load().pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if l := c.cur.Load(); l.cert != nil {
				return l.cert, nil
			}
			return &tls.Certificate{}, nil // none: the server may not need one
		},
	}
}

// Classify sorts a handshake error (as a server logs or a client gets it)
// into a reason.
func Classify(msg string) string {
	switch {
	case strings.Contains(msg, "unknown authority"), strings.Contains(msg, "unknown certificate authority"):
		return ReasonUnknownCA
	case strings.Contains(msg, "expired"):
		return ReasonExpired
	case strings.Contains(msg, "HTTP request to an HTTPS server"):
		return ReasonPlainHTTP
	}
	return ReasonOther
}

// ErrorLog is an http.Server ErrorLog that logs to logger at WARN, as the
// daemons' servers do, and calls onHandshakeError with the reason of every
// "TLS handshake error" line.
func ErrorLog(logger *slog.Logger, onHandshakeError func(reason string)) *log.Logger {
	return log.New(&errorLogWriter{next: slog.NewLogLogger(logger.Handler(), slog.LevelWarn), on: onHandshakeError}, "", 0)
}

type errorLogWriter struct {
	next *log.Logger
	on   func(string)
}

func (w *errorLogWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimRight(p, "\n"))
	if i := strings.Index(msg, "TLS handshake error"); i >= 0 {
		w.on(Classify(msg[i:]))
	}
	w.next.Print(msg)
	return len(p), nil
}

// Listen wraps ln so that it serves TLS with cfg. Failed handshakes reach
// the http.Server's ErrorLog (see ErrorLog), plain HTTP included ("client
// sent an HTTP request to an HTTPS server", answered with a 400).
func Listen(ln net.Listener, cfg *tls.Config) net.Listener { return tls.NewListener(ln, cfg) }
