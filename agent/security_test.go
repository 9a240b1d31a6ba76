package agent

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

// TestAgentStatusNeedsItsToken: /v1/status needs exactly "Authorization:
// Bearer <agent token>"; near misses are 401.
func TestAgentStatusNeedsItsToken(t *testing.T) {
	stub := newStubCP(t)
	d := startDaemon(t, stub.srv.URL, nil)
	for _, auth := range []string{"", "Bearer", "Bearer ", testToken, "bearer " + testToken, "Basic " + testToken,
		"Bearer " + testToken[:4], "Bearer " + testToken + "x", "Bearer  " + testToken} {
		req, _ := http.NewRequest("GET", d.srv.URL+"/v1/status", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error, Message string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || e.Error != "unauthorized" || e.Message == "" {
			t.Errorf("Authorization %q: %d %+v", auth, resp.StatusCode, e)
		}
	}
}

// TestAgentWithoutTokenWarns: an agent with no token accepts anyone's
// assignments, so it says so in its log.
func TestAgentWithoutTokenWarns(t *testing.T) {
	stub := newStubCP(t)
	logs := &lockedLog{}
	d := startDaemon(t, stub.srv.URL, func(o *Options) {
		o.Token = ""
		o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	d.stop(t)
	out := logs.String()
	if !strings.Contains(out, `"level":"WARN","msg":"no agent token configured`) {
		t.Fatalf("no warning about the missing token in:\n%s", out)
	}
	logs2 := &lockedLog{}
	d2 := startDaemon(t, stub.srv.URL, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(logs2, nil)) })
	d2.stop(t)
	if strings.Contains(logs2.String(), "no agent token") {
		t.Fatalf("warned although a token is set:\n%s", logs2.String())
	}
}

// lockedLog is a goroutine-safe log sink.
type lockedLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestExecThroughTheDaemon runs exec tasks the way the cp does, through the
// agent's HTTP API: argv is run without a shell (a shell runs only when argv
// names one), a command line in one string is one program name and fails,
// the task sees no secret from the agent's environment, and a task past its
// timeout is killed and reported TIMEOUT.
func TestExecThroughTheDaemon(t *testing.T) {
	t.Setenv("FLUX_ADMIN_TOKEN", "admin-s3cret")
	t.Setenv("FLUX_AGENT_TOKEN", "agent-s3cret")
	t.Setenv("SECRET", "s3cret")
	stub := newStubCP(t)
	startDaemon(t, stub.srv.URL, func(o *Options) { o.AllowExec = true; o.OutputTailBytes = 128; o.Slots = 8 })
	tests := []struct {
		id      string
		spec    core.TaskSpec
		outcome core.Outcome
		output  string // exact, or a suffix with tail
		errHas  string
	}{
		{"literal", core.TaskSpec{Argv: []string{"echo", "$SECRET", "$(id)", "; rm -rf /"}}, core.OutcomeSucceeded, "$SECRET $(id) ; rm -rf /\n", ""},
		{"shell-named", core.TaskSpec{Argv: []string{"sh", "-c", "echo $((6*7))"}}, core.OutcomeSucceeded, "42\n", ""},
		{"one-string", core.TaskSpec{Argv: []string{"echo hello"}}, core.OutcomeFailed, "", "start:"},
		{"env", core.TaskSpec{Argv: []string{"env"}}, core.OutcomeSucceeded, "PATH=" + DefaultExecPath + "\n", ""},
		{"loud", core.TaskSpec{Argv: []string{"sh", "-c", "yes flux | head -c 100000; echo END"}}, core.OutcomeSucceeded, "", ""},
		{"slow", core.TaskSpec{Argv: []string{"sleep", "30"}, TimeoutSeconds: 1}, core.OutcomeTimeout, "", ""},
	}
	for _, tc := range tests {
		tc.spec.Kind = core.KindExec
		if ack := assignTo(t, stub.stubCP, false, tc.id, tc.spec); !ack.Accepted {
			t.Fatalf("%s refused: %+v", tc.id, ack)
		}
	}
	var results map[core.Lease]core.Result
	waitUntil(t, 20*time.Second, "every result", func() bool {
		results, _ = stub.results()
		return len(results) == len(tests)
	})
	for _, tc := range tests {
		r := results[core.Lease{TaskID: core.TaskID(tc.id), Attempt: 1}]
		if r.Outcome != tc.outcome || (tc.output != "" && r.Output != tc.output) || !strings.Contains(r.Error, tc.errHas) {
			t.Errorf("%s: %+v, want outcome %s output %q error containing %q", tc.id, r, tc.outcome, tc.output, tc.errHas)
		}
		if strings.Contains(r.Output, "s3cret") {
			t.Errorf("%s: a secret from the agent's environment reached the task: %q", tc.id, r.Output)
		}
		if len(r.Output) > 128 {
			t.Errorf("%s: %d bytes of output kept, bound 128", tc.id, len(r.Output))
		}
	}
	if r := results[core.Lease{TaskID: "loud", Attempt: 1}]; !strings.HasSuffix(r.Output, "END\n") {
		t.Errorf("loud: kept output is not the tail: %q", r.Output)
	}
}
