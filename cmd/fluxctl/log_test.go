package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/fluxforge/fluxforge/cp"
	"github.com/fluxforge/fluxforge/cp/logfile"
)

func TestLogExportWritesAnExportFileThatReplays(t *testing.T) {
	url, _ := startCP(t, "adm", 10)
	if r := fluxctl(t, url, "adm", "submit", "-sleep", "1s"); r.code != 0 {
		t.Fatalf("submit: %+v", r)
	}
	r := fluxctl(t, url, "adm", "log", "export")
	if r.code != 0 {
		t.Fatalf("log export: %+v", r)
	}
	_, rec, err := logfile.Read(strings.NewReader(r.stdout))
	if err != nil {
		t.Fatal(err)
	}
	res, err := cp.Replay(rec, cp.ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(url + "/scheduler/debug/snapshot?fresh_hash=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v cp.DebugView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	if res.Core.QueueDepth() != 1 || res.AppliedIndex != v.AppliedIndex || res.StateHash != v.StateHash {
		t.Fatalf("replayed export: depth %d, index %d %s; cp at %d %s", res.Core.QueueDepth(), res.AppliedIndex, res.StateHash, v.AppliedIndex, v.StateHash)
	}
	if r := fluxctl(t, url, "", "log", "export"); r.code != 1 || !strings.Contains(r.stderr, "401") || !strings.Contains(r.stderr, "FLUX_ADMIN_TOKEN") {
		t.Fatalf("export without a token: %+v", r)
	}
	if r := fluxctl(t, url, "adm", "log", "export", "-since", "30m"); r.code != 0 || !strings.Contains(r.stdout, `"since"`) {
		t.Fatalf("export -since 30m: %+v", r)
	}
	if r := fluxctl(t, url, "adm", "log", "nope"); r.code != 2 {
		t.Fatalf("log nope: %+v", r)
	}
}
