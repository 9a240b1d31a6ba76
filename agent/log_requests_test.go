package agent

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	fnet "github.com/fluxforge/fluxforge/net"
)

// Refused orders leave a trace in the agent's log: a request without the
// token (someone other than the cp), and a malformed assignment.
func TestAgentLogsRefusedRequests(t *testing.T) {
	stub := newStubCP(t)
	logs := &lockedLog{}
	d := startDaemon(t, stub.srv.URL, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(logs, nil)) })
	for _, tc := range []struct {
		auth, body string
		want       int
	}{
		{"", `{"task_id":"x","attempt":1}`, http.StatusUnauthorized},
		{"Bearer " + testToken, `{"task_id":"x","attempt":1,"bogus":true}`, http.StatusBadRequest},
	} {
		req, _ := http.NewRequest("POST", d.srv.URL+fnet.PathAssign, strings.NewReader(tc.body))
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
		}
	}
	d.stop(t)
	out := logs.String()
	for _, want := range []string{`"msg":"unauthorized request"`, `"msg":"validation error"`, `unknown field`, `"remote":"127.0.0.1:`} {
		if !strings.Contains(out, want) {
			t.Errorf("agent log lacks %s:\n%s", want, out)
		}
	}
}
