package tlsconf

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/net/tlsconf/tlstest"
)

// TestServerReload: a reload takes the new certificate for new
// connections, while one open at the reload goes on; files that do not
// load leave the previous ones in force.
func TestServerReload(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	certFile, keyFile := ca.Issue(t, "cp-1", tlstest.Opts{}).WriteCert(t, dir, "cp")
	s, err := NewServer(certFile, keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })}
	go func() { _ = srv.Serve(Listen(ln, s.Config())) }()
	defer srv.Close()

	cli, err := NewClient(tlstest.Write(t, dir, "ca.crt", ca.PEM), "", "")
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: cli.Config()}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	url := "https://" + ln.Addr().String() + "/"
	cn := func(hc *http.Client) string {
		t.Helper()
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.TLS.Version < tls.VersionTLS12 {
			t.Fatalf("TLS version %x", resp.TLS.Version)
		}
		return resp.TLS.PeerCertificates[0].Subject.CommonName
	}
	if got := cn(hc); got != "cp-1" {
		t.Fatalf("served %s", got)
	}
	first := s.NotAfter()

	c2 := ca.Issue(t, "cp-2", tlstest.Opts{NotAfter: time.Now().Add(48 * time.Hour)})
	c2.WriteCert(t, dir, "cp")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := cn(hc); got != "cp-1" {
		t.Fatalf("the connection open at the reload now shows %s", got)
	}
	fresh := &http.Client{Transport: &http.Transport{TLSClientConfig: cli.Config()}, Timeout: 5 * time.Second}
	if got := cn(fresh); got != "cp-2" {
		t.Fatalf("a new connection after the reload got %s", got)
	}
	if !s.NotAfter().After(first) {
		t.Fatal("NotAfter did not follow the reload")
	}

	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("a bad key reloaded")
	}
	fresh2 := &http.Client{Transport: &http.Transport{TLSClientConfig: cli.Config()}, Timeout: 5 * time.Second}
	if got := cn(fresh2); got != "cp-2" {
		t.Fatalf("after a failed reload: %s", got)
	}
}

func TestClassify(t *testing.T) {
	for msg, want := range map[string]string{
		"TLS handshake error from 1.2.3.4:5: tls: failed to verify certificate: x509: certificate signed by unknown authority":                   ReasonUnknownCA,
		"TLS handshake error from 1.2.3.4:5: remote error: tls: unknown certificate authority":                                                   ReasonUnknownCA,
		"TLS handshake error from 1.2.3.4:5: tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time": ReasonExpired,
		"TLS handshake error from 1.2.3.4:5: client sent an HTTP request to an HTTPS server":                                                     ReasonPlainHTTP,
		"TLS handshake error from 1.2.3.4:5: EOF": ReasonOther,
	} {
		if got := Classify(msg); got != want {
			t.Errorf("%q: %s, want %s", msg, got, want)
		}
	}
	var got []string
	var buf bytes.Buffer
	l := ErrorLog(slog.New(slog.NewTextHandler(&buf, nil)), func(r string) { got = append(got, r) })
	l.Printf("http: TLS handshake error from 1.2.3.4:5: EOF")
	l.Printf("http: superfluous response.WriteHeader call")
	if len(got) != 1 || got[0] != ReasonOther || !bytes.Contains(buf.Bytes(), []byte("superfluous")) {
		t.Fatalf("reasons %v, log %s", got, buf.String())
	}
}
