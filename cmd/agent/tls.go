package main

import (
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fluxforge/fluxforge/net/tlsconf"
)

// agentTLS is the agent's TLS: its client to the cp (-tls-ca to verify the
// cp, -tls-cert and -tls-key as its client certificate, which a cp with
// -tls-client-ca requires to name the agent id) and its own port (served
// with -tls-cert and -tls-key; a client certificate given is verified
// against -tls-ca). Certificates and keys are re-read on SIGHUP.
type agentTLS struct {
	cli *tlsconf.Client
	srv *tlsconf.Server // nil without -tls-cert
	log *slog.Logger
}

// newAgentTLS reads the files; nil when no TLS flag is given.
func newAgentTLS(cfg config, logger *slog.Logger) (*agentTLS, error) {
	if cfg.TLSCA == "" && cfg.TLSCert == "" {
		return nil, nil
	}
	t := &agentTLS{log: logger}
	var err error
	if t.cli, err = tlsconf.NewClient(cfg.TLSCA, cfg.TLSCert, cfg.TLSKey); err != nil {
		return nil, err
	}
	if cfg.TLSCert != "" {
		if t.srv, err = tlsconf.NewServer(cfg.TLSCert, cfg.TLSKey, cfg.TLSCA); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// httpClient is the keep-alive client to the cp over TLS.
func (t *agentTLS) httpClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	tr.TLSClientConfig = t.cli.Config()
	return &http.Client{Transport: tr}
}

// listen wraps ln with TLS when the agent has a certificate.
func (t *agentTLS) listen(ln net.Listener) net.Listener {
	if t == nil || t.srv == nil {
		return ln
	}
	return tlsconf.Listen(ln, t.srv.Config())
}

// reload re-reads the certificates and keys; on an error the previous
// ones stay in force.
func (t *agentTLS) reload() {
	files := []interface{ Reload() error }{t.cli}
	if t.srv != nil {
		files = append(files, t.srv)
	}
	for _, f := range files {
		if err := f.Reload(); err != nil {
			t.log.Error("TLS files not reloaded: the previous ones stay in force", "error", err.Error())
			return
		}
	}
	t.log.Info("TLS files reloaded", "cert_not_after", t.cli.NotAfter().UTC().Format(time.RFC3339))
}

// reloadOnHUP reloads on every SIGHUP until stop is closed.
func (t *agentTLS) reloadOnHUP(stop <-chan struct{}) {
	if t == nil {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-stop:
				return
			case <-hup:
				t.reload()
			}
		}
	}()
}
