package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp"
	fnet "github.com/fluxforge/fluxforge/net"
	"github.com/fluxforge/fluxforge/net/tlsconf"
	"github.com/fluxforge/fluxforge/net/tlsconf/tlstest"
)

// tlsCP is a cp started by run with TLS on its API port.
type tlsCP struct {
	addr string
	ca   *tlstest.CA
	logs *lockedBuffer
}

func startTLSCP(t *testing.T, extra ...string) *tlsCP {
	t.Helper()
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "fluxforge-test-ca")
	certFile, keyFile := ca.Issue(t, "cp-1", tlstest.Opts{}).WriteCert(t, dir, "cp")
	caFile := tlstest.Write(t, dir, "ca.crt", ca.PEM)
	args := append([]string{"-listen", "127.0.0.1:0", "-in-memory", "-tls-cert", certFile, "-tls-key", keyFile,
		"-tls-client-ca", caFile}, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan int, 1)
	logs := &lockedBuffer{}
	go func() { done <- run(ctx, args, env(), logs, ready) }()
	c := &tlsCP{ca: ca, logs: logs}
	select {
	case c.addr = <-ready:
	case code := <-done:
		t.Fatalf("exited %d: %s", code, logs.String())
	}
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return c
}

// client is an HTTPS client trusting roots, presenting cert when given.
func tlsClient(roots *tlstest.CA, cert *tlstest.Cert, t *testing.T) *http.Client {
	cfg := &tls.Config{RootCAs: roots.Pool(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		// Sent whatever CAs the server names (Certificates would send
		// none of another CA's).
		tc := cert.TLS(t)
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tc, nil }
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// metric reads one series of /metrics (the sample line's value); -1 when absent.
func (c *tlsCP) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := tlsClient(c.ca, nil, t).Get("https://" + c.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return -1
}

// waitMetric polls series until it is want (the server counts a failed
// handshake after the client has seen it fail).
func (c *tlsCP) waitMetric(t *testing.T, series string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := c.metric(t, series)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v; log:\n%s", series, got, want, c.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *tlsCP) agents(t *testing.T) int {
	t.Helper()
	resp, err := tlsClient(c.ca, nil, t).Get("https://" + c.addr + "/v1/agents")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l struct{ Count int }
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	return l.Count
}

func heartbeatBody(id string) []byte {
	b, _ := json.Marshal(core.HeartbeatInput{AgentID: core.AgentID(id), Domain: "z1", Slots: 1, Incarnation: 1, Seq: 1})
	return b
}

func post(t *testing.T, hc *http.Client, url string, body []byte) (int, string, error) {
	t.Helper()
	resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw), nil
}

// TestTLSRefusals: plain HTTP, a client certificate of an unknown CA and
// an expired one fail in the handshake and are counted by reason; an agent
// without a certificate, or with another agent's, is refused after it
// (401/403, counted); none of them changes anything. Operators without a
// client certificate read as before, and a certificate naming the agent
// registers it.
func TestTLSRefusals(t *testing.T) {
	c := startTLSCP(t)
	hbURL := "https://" + c.addr + fnet.PathHeartbeat
	series := func(name, reason string) string { return fmt.Sprintf("%s{reason=%q}", name, reason) }
	if got, want := c.metric(t, core.MetricTLSCertExpiry), float64(time.Now().Add(24*time.Hour).Unix()); got < want-60 || got > want+60 {
		t.Fatalf("%s = %v, want about %v", core.MetricTLSCertExpiry, got, want)
	}

	// Plain HTTP to the TLS port.
	resp, err := http.Post("http://"+c.addr+fnet.PathHeartbeat, "application/json", bytes.NewReader(heartbeatBody("a1")))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP: status %d", resp.StatusCode)
		}
	}
	c.waitMetric(t, series(core.MetricTLSHandshakeErrors, "plain_http"), 1)

	// A client certificate of another CA.
	other := tlstest.NewCA(t, "someone-else")
	if _, _, err := post(t, tlsClient(c.ca, other.Issue(t, "a1", tlstest.Opts{}), t), hbURL, heartbeatBody("a1")); err == nil {
		t.Fatal("a client certificate of an unknown CA was accepted")
	}
	c.waitMetric(t, series(core.MetricTLSHandshakeErrors, "unknown_ca"), 1)

	// An expired client certificate of the right CA.
	expired := c.ca.Issue(t, "a1", tlstest.Opts{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	if _, _, err := post(t, tlsClient(c.ca, expired, t), hbURL, heartbeatBody("a1")); err == nil {
		t.Fatal("an expired client certificate was accepted")
	}
	c.waitMetric(t, series(core.MetricTLSHandshakeErrors, "expired"), 1)

	// After the handshake: no certificate, another agent's certificate.
	code, body, err := post(t, tlsClient(c.ca, nil, t), hbURL, heartbeatBody("a1"))
	if err != nil || code != http.StatusUnauthorized || !strings.Contains(body, `"error":"unauthorized"`) {
		t.Fatalf("heartbeat without a client certificate: %d %s %v", code, body, err)
	}
	c.waitMetric(t, series(core.MetricAuthRefusals, "no_client_cert"), 1)
	a2 := tlsClient(c.ca, c.ca.Issue(t, "a2", tlstest.Opts{}), t)
	code, body, err = post(t, a2, hbURL, heartbeatBody("a1"))
	if err != nil || code != http.StatusForbidden || !strings.Contains(body, `"error":"forbidden"`) {
		t.Fatalf("a2's certificate speaking for a1: %d %s %v", code, body, err)
	}
	c.waitMetric(t, series(core.MetricAuthRefusals, "wrong_agent"), 1)
	if n := c.agents(t); n != 0 {
		t.Fatalf("the refused requests registered %d agents", n)
	}

	// The agent's own certificate registers it.
	code, body, err = post(t, a2, hbURL, heartbeatBody("a2"))
	if err != nil || code != http.StatusOK {
		t.Fatalf("a2's own heartbeat: %d %s %v", code, body, err)
	}
	if n := c.agents(t); n != 1 {
		t.Fatalf("%d agents after a2 registered", n)
	}
}

// TestReloadKeepsOldFilesOnError: the SIGHUP reload takes a renewed
// certificate (and its expiry gauge); files that do not load leave the
// previous ones in force and say so in the log.
func TestReloadKeepsOldFilesOnError(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	certFile, keyFile := ca.Issue(t, "cp-1", tlstest.Opts{NotAfter: time.Now().Add(10 * 24 * time.Hour)}).WriteCert(t, dir, "cp")
	srv, err := tlsconf.NewServer(certFile, keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := tlsconf.NewClient("", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	s, err := cp.New(cp.Options{InMemory: true, Logger: logger, Core: core.DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rl := &reloader{s: s, srv: srv, cli: cli, log: logger}
	expiry := func() float64 {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		for _, line := range strings.Split(rec.Body.String(), "\n") {
			if v, ok := strings.CutPrefix(line, core.MetricTLSCertExpiry+" "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		return -1
	}
	renewed := ca.Issue(t, "cp-1", tlstest.Opts{NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	renewed.WriteCert(t, dir, "cp")
	rl.reload()
	if got, want := expiry(), float64(renewed.Leaf.NotAfter.Unix()); got != want {
		t.Fatalf("expiry after the renewal %v, want %v", got, want)
	}
	tlstest.Write(t, dir, "cp.key", []byte("garbage"))
	rl.reload()
	if !strings.Contains(logs.String(), "TLS files not reloaded") || !srv.NotAfter().Equal(renewed.Leaf.NotAfter) {
		t.Fatalf("a bad key: NotAfter %v, log %s", srv.NotAfter(), logs.String())
	}
}

// TestTLSFlagsValidated: -tls-cert and -tls-key go together, and
// -tls-client-ca needs them; the errors name the flags.
func TestTLSFlagsValidated(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-in-memory", "-tls-cert", "a.crt"}, "-tls-cert a.crt and -tls-key"},
		{[]string{"-in-memory", "-tls-client-ca", "ca.crt"}, "-tls-client-ca ca.crt needs -tls-cert"},
	} {
		_, err := parseConfig(c.args, env(), io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	cfg, err := parseConfig([]string{"-in-memory"}, env("FLUX_TLS_CERT", "c", "FLUX_TLS_KEY", "k", "FLUX_TOKENS_FILE", "t", "FLUX_REQUIRE_READ_TOKEN", "true"), io.Discard)
	if err != nil || cfg.TLSCert != "c" || cfg.TLSKey != "k" || cfg.TokensFile != "t" || !cfg.RequireReadToken {
		t.Fatalf("from the environment: %+v %v", cfg, err)
	}
}
