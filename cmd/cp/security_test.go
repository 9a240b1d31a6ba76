package main

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestServerBoundsHeaders: the cp's http.Server refuses a request whose
// request line and headers exceed MaxHeaderBytes (64 KiB) with 431, so a
// huge query string or header never reaches a handler.
func TestServerBoundsHeaders(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan int, 1)
	logs := &lockedBuffer{}
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-in-memory"}, env(), logs, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case code := <-done:
		t.Fatalf("exited %d: %s", code, logs.String())
	}
	defer func() {
		cancel()
		<-done
	}()
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	big := strings.Repeat("a", 128<<10)
	for name, mod := range map[string]func(*http.Request){
		"query":  func(r *http.Request) { r.URL.RawQuery = "after=" + big },
		"header": func(r *http.Request) { r.Header.Set("X-Filler", big) },
	} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/tasks", nil)
		mod(req)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("%s of 128 KiB: status %d, want 431", name, resp.StatusCode)
		}
	}
	resp, err := client.Get("http://" + addr + "/v1/tasks?limit=5")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a normal request after the refusals: %d", resp.StatusCode)
	}
}

// TestBadTokensFileStopsStart: a tokens file that does not parse is a
// start-up error (exit 2) naming the file and the line.
func TestBadTokensFileStopsStart(t *testing.T) {
	path := t.TempDir() + "/tokens"
	if err := os.WriteFile(path, []byte("# ops\nalice admin tok-1\nbob superuser tok-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	code := run(context.Background(), []string{"-listen", "127.0.0.1:0", "-in-memory", "-tokens-file", path}, env(), logs, nil)
	if code != 2 || !strings.Contains(logs.String(), path+":3:") {
		t.Fatalf("exit %d, want 2 with %s:3 in the log: %s", code, path, logs.String())
	}
}
