package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startRun runs the cp main on args and returns its address and a stop
// function that waits for the exit status.
func startRun(t *testing.T, args ...string) (string, func() int, *lockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan int, 1)
	logs := &lockedBuffer{}
	go func() {
		done <- run(ctx, append([]string{"-listen", "127.0.0.1:0", "-admin-token", "adm"}, args...), env(), logs, ready)
	}()
	select {
	case addr := <-ready:
		return "http://" + addr, func() int { cancel(); return <-done }, logs
	case code := <-done:
		cancel()
		t.Fatalf("cp exited %d: %s", code, logs.String())
	}
	return "", nil, nil
}

func get(t *testing.T, url string, v any) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer adm")
	c := &http.Client{Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// TestRestoreStartsANewDataDirFromAnExport: cp -restore FILE makes a new
// data dir holding the exported state; a non-empty dir is refused.
func TestRestoreStartsANewDataDirFromAnExport(t *testing.T) {
	dir := t.TempDir()
	url, stop, logs := startRun(t, "-data-dir", dir)
	for range 3 {
		resp, err := http.Post(url+"/v1/tasks", "application/json", strings.NewReader(`{"kind":"sleep"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	var before struct {
		AppliedIndex uint64 `json:"applied_index"`
		QueueDepth   int    `json:"queue_depth"`
	}
	file := filepath.Join(t.TempDir(), "backup.jsonl")
	if err := os.WriteFile(file, get(t, url+"/admin/log/export", nil), 0o600); err != nil {
		t.Fatal(err)
	}
	get(t, url+"/scheduler/debug/snapshot", &before)
	if code := stop(); code != 0 {
		t.Fatalf("exit %d: %s", code, logs.String())
	}

	var refused bytes.Buffer
	if code := run(context.Background(), []string{"-listen", "127.0.0.1:0", "-data-dir", dir, "-restore", file}, env(), &refused, nil); code != 2 ||
		!strings.Contains(refused.String(), "is not empty") {
		t.Fatalf("-restore into a used dir: exit %d: %s", code, refused.String())
	}
	var both bytes.Buffer
	if code := run(context.Background(), []string{"-in-memory", "-restore", file}, env(), &both, nil); code != 2 || !strings.Contains(both.String(), "-restore") {
		t.Fatalf("-restore with -in-memory: exit %d: %s", code, both.String())
	}

	restored := filepath.Join(t.TempDir(), "restored")
	url2, stop2, logs2 := startRun(t, "-data-dir", restored, "-restore", file)
	var after struct {
		AppliedIndex uint64 `json:"applied_index"`
		QueueDepth   int    `json:"queue_depth"`
	}
	get(t, url2+"/scheduler/debug/snapshot", &after)
	if after.QueueDepth != before.QueueDepth || before.QueueDepth != 3 || after.AppliedIndex < before.AppliedIndex {
		t.Fatalf("restored cp: %+v, the exported one %+v", after, before)
	}
	if code := stop2(); code != 0 || !strings.Contains(logs2.String(), `"msg":"restored"`) {
		t.Fatalf("exit %d: %s", code, logs2.String())
	}
}
