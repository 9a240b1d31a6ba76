package agent

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// Refused requests leave a trace in the agent's log: a status request
// without the token.
func TestAgentLogsRefusedRequests(t *testing.T) {
	stub := newStubCP(t)
	logs := &lockedLog{}
	d := startDaemon(t, stub.srv.URL, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(logs, nil)) })
	resp, err := http.Get(d.srv.URL + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d", resp.StatusCode)
	}
	d.stop(t)
	out := logs.String()
	for _, want := range []string{`"msg":"unauthorized request"`, `"remote":"127.0.0.1:`} {
		if !strings.Contains(out, want) {
			t.Errorf("agent log lacks %s:\n%s", want, out)
		}
	}
}
