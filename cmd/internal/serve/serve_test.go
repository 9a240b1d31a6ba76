package serve

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	fnet "github.com/fluxforge/fluxforge/net"
)

func TestHTTPServerIsBounded(t *testing.T) {
	srv := HTTPServer(http.NotFoundHandler(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Fatalf("unbounded timeouts: %+v", srv)
	}
	if srv.MaxHeaderBytes != MaxHeaderBytes || srv.ErrorLog == nil {
		t.Fatalf("MaxHeaderBytes %d ErrorLog %v", srv.MaxHeaderBytes, srv.ErrorLog)
	}
}

// TestOneConnectionCarriesPollAndHeartbeat: the server speaks h2c, and the
// agent's client (net.NewCPClient) multiplexes a held request and other
// requests over one TCP connection; with http1 it falls back to HTTP/1.1
// and opens a second connection.
func TestOneConnectionCarriesPollAndHeartbeat(t *testing.T) {
	for _, http1 := range []bool{false, true} {
		release := make(chan struct{})
		held := make(chan struct{})
		mux := http.NewServeMux()
		mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
			close(held)
			<-release
			_, _ = io.WriteString(w, r.Proto)
		})
		mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) })
		srv := HTTPServer(mux, slog.New(slog.NewTextHandler(io.Discard, nil)))
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = srv.Serve(ln) }()
		url := "http://" + ln.Addr().String()
		client := fnet.NewCPClient(url, http1)
		// The client's dials are counted, not the server's accepts: under a
		// parallel test run another package's stray dial to a reused
		// ephemeral port can land on this listener.
		var conns atomic.Int32
		tr := client.Transport.(*http.Transport)
		dial := (&net.Dialer{}).DialContext
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conns.Add(1)
			return dial(ctx, network, addr)
		}
		get := func(path string) (string, error) {
			resp, err := client.Get(url + path)
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			return string(b), err
		}
		holdDone := make(chan string, 1)
		go func() {
			p, err := get("/hold")
			if err != nil {
				p = err.Error()
			}
			holdDone <- p
		}()
		<-held
		for range 3 { // heartbeats while the poll is held
			proto, err := get("/ping")
			if err != nil {
				t.Fatal(err)
			}
			want := "HTTP/2.0"
			if http1 {
				want = "HTTP/1.1"
			}
			if proto != want {
				t.Fatalf("http1=%v: %s, want %s", http1, proto, want)
			}
		}
		close(release)
		<-holdDone
		wantConns := int32(1)
		if http1 {
			wantConns = 2
		}
		if n := conns.Load(); n != wantConns {
			t.Errorf("http1=%v: %d connections, want %d", http1, n, wantConns)
		}
		client.CloseIdleConnections()
		_ = srv.Close()
	}
}

// TestPprofServesProfilesOnItsOwnListener: Pprof listens where it is told,
// serves the profile index there, and reports a port it cannot take.
func TestPprofServesProfilesOnItsOwnListener(t *testing.T) {
	var logs strings.Builder
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	stop, err := Pprof("127.0.0.1:0", logger)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var line struct{ Pprof string }
	if err := json.Unmarshal([]byte(strings.SplitN(logs.String(), "\n", 2)[0]), &line); err != nil || line.Pprof == "" {
		t.Fatalf("no serving profiles line: %q (%v)", logs.String(), err)
	}
	resp, err := http.Get("http://" + line.Pprof + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/debug/pprof/cmdline: %d", resp.StatusCode)
	}
	if _, err := Pprof(line.Pprof, logger); err == nil || !strings.Contains(logs.String(), `"msg":"cannot listen"`) {
		t.Fatalf("a second Pprof on %s: %v, logs %s", line.Pprof, err, logs.String())
	}
	if stop, err := Pprof("", logger); err != nil || stop == nil {
		t.Fatalf("no address: %v", err)
	}
}
