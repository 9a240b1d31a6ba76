package main

import (
	"bytes"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp"
	"github.com/fluxforge/fluxforge/net/tlsconf"
	"github.com/fluxforge/fluxforge/net/tlsconf/tlstest"
)

// TestTLSFlags: fluxctl reaches a TLS cp with --cacert (or FLUX_CACERT),
// presents --cert/--key, and fails without the CA.
func TestTLSFlags(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	certFile, keyFile := ca.Issue(t, "cp-1", tlstest.Opts{}).WriteCert(t, dir, "cp")
	caFile := tlstest.Write(t, dir, "ca.crt", ca.PEM)
	opCert, opKey := ca.Issue(t, "alice", tlstest.Opts{}).WriteCert(t, dir, "alice")
	srvTLS, err := tlsconf.NewServer(certFile, keyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	mock := clock.NewMock()
	mock.Set(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s, err := cp.New(cp.Options{Clock: mock, Core: core.DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	var sawCert atomic.Bool
	h := s.Handler()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && r.TLS.PeerCertificates[0].Subject.CommonName == "alice" {
			sawCert.Store(true)
		}
		h.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(tlsconf.Listen(ln, srvTLS.Config())) }()
	t.Cleanup(func() { _ = srv.Close() })
	url := "https://" + ln.Addr().String()

	r := fluxctl(t, url, "", "--cacert", caFile, "snapshot")
	if r.code != 0 || !strings.Contains(r.stdout, "NORMAL") {
		t.Fatalf("snapshot with --cacert: %+v", r)
	}
	var out, errb bytes.Buffer
	env := map[string]string{"FLUX_CP": url, "FLUX_CACERT": caFile, "FLUX_CERT": opCert, "FLUX_KEY": opKey}
	if code := run([]string{"mode", "get"}, func(k string) string { return env[k] }, &out, &errb); code != 0 || !sawCert.Load() {
		t.Fatalf("mode get with FLUX_CACERT/FLUX_CERT/FLUX_KEY: exit %d (client certificate seen: %v): %s %s", code, sawCert.Load(), out.String(), errb.String())
	}
	r = fluxctl(t, url, "", "snapshot")
	if r.code != 1 || !strings.Contains(r.stderr, "certificate") {
		t.Fatalf("snapshot without the CA: %+v", r)
	}
	r = fluxctl(t, url, "", "--cacert", caFile, "--cert", opCert, "snapshot")
	if r.code == 0 || !strings.Contains(r.stderr, "give both") {
		t.Fatalf("--cert without --key: %+v", r)
	}
}
