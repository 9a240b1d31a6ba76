package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/fluxforge/fluxforge/core"
)

// reports collects executor reports.
type reports chan core.Result

func (r reports) report(res core.Result) { r <- res }

func (r reports) next(t *testing.T, within time.Duration) core.Result {
	t.Helper()
	select {
	case res := <-r:
		return res
	case <-time.After(within):
		t.Fatalf("no report within %v", within)
		return core.Result{}
	}
}

func (r reports) none(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case res := <-r:
		t.Fatalf("unexpected report %+v", res)
	case <-time.After(within):
	}
}

func execution(id string, argv ...string) core.Execution {
	return core.Execution{TaskID: core.TaskID(id), Attempt: 1, Spec: core.TaskSpec{Kind: core.KindExec, Argv: argv, TimeoutSeconds: 60}}
}

func TestExecOutcomes(t *testing.T) {
	tests := []struct {
		name     string
		argv     []string
		outcome  core.Outcome
		exitCode int
		output   string
		errHas   string
	}{
		{"success", []string{"/bin/echo", "hi"}, core.OutcomeSucceeded, 0, "hi\n", ""},
		{"exit code", []string{"/bin/sh", "-c", "echo oops >&2; exit 3"}, core.OutcomeFailed, 3, "oops\n", "exit status 3"},
		{"no shell: argv is literal", []string{"/bin/echo", "$HOME;", "`id`"}, core.OutcomeSucceeded, 0, "$HOME; `id`\n", ""},
		{"missing binary", []string{"/nonexistent/binary"}, core.OutcomeFailed, -1, "", "start:"},
		{"found on PATH", []string{"echo", "via path"}, core.OutcomeSucceeded, 0, "via path\n", ""},
		{"stray child does not hold the result", []string{"/bin/sh", "-c", "sleep 100 & echo done"}, core.OutcomeSucceeded, 0, "done\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := make(reports, 1)
			x := NewExecExecutor(rs.report)
			x.Start(execution("t1", tc.argv...))
			res := rs.next(t, 10*time.Second)
			if res.TaskID != "t1" || res.Attempt != 1 || res.Outcome != tc.outcome || res.ExitCode != tc.exitCode || res.Output != tc.output {
				t.Errorf("result %+v, want outcome %s exit %d output %q", res, tc.outcome, tc.exitCode, tc.output)
			}
			if !strings.Contains(res.Error, tc.errHas) {
				t.Errorf("error %q does not contain %q", res.Error, tc.errHas)
			}
			x.Wait()
			if x.Running() != 0 {
				t.Errorf("running %d after the end", x.Running())
			}
		})
	}
}

// processGone reports whether pid has exited (gone or a zombie awaiting its
// reaper).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not an assertion
	}
}

func TestExecStopKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	rs := make(reports, 1)
	x := NewExecExecutor(rs.report)
	x.Start(execution("t1", "/bin/sh", "-c", "sleep 100 & echo $! > "+pidFile+"; sleep 100"))
	var leader, child int
	waitUntil(t, 10*time.Second, "the child's pid file", func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		child, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	x.mu.Lock()
	leader = x.procs[core.Lease{TaskID: "t1", Attempt: 1}].pid
	x.mu.Unlock()
	if leader == 0 || processGone(leader) || processGone(child) {
		t.Fatalf("leader %d and child %d should be running", leader, child)
	}
	x.Stop("t1", 1) // what core.Agent.Tick does at the deadline
	waitUntil(t, 10*time.Second, "the process group to die", func() bool { return processGone(leader) && processGone(child) })
	x.Wait()
	rs.none(t, 50*time.Millisecond) // a stopped attempt is reported by the agent, not the executor
}

func TestExecStopBeforeStartRunsNothing(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	x := NewExecExecutor(func(core.Result) { t.Error("reported") })
	// Stop won the race with the start goroutine: run must not start it.
	if r := x.run(core.Lease{TaskID: "t1", Attempt: 1}, &proc{stopped: true}, []string{"/usr/bin/touch", marker}); r != nil {
		t.Fatalf("stopped run reported %+v", r)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a stopped execution ran")
	}
}

func TestExecOutputTailIsBounded(t *testing.T) {
	rs := make(reports, 1)
	x := NewExecExecutor(rs.report)
	x.Start(execution("t1", "/bin/sh", "-c", `i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done`))
	res := rs.next(t, 20*time.Second)
	if res.Outcome != core.OutcomeSucceeded {
		t.Fatalf("result %+v", res)
	}
	if len(res.Output) != OutputTailBytesDefault {
		t.Errorf("output is %d bytes, want the last %d", len(res.Output), OutputTailBytesDefault)
	}
	if !strings.HasSuffix(res.Output, "line-2998\nline-2999\n") {
		t.Errorf("output does not end with the last lines: %q", res.Output[len(res.Output)-40:])
	}
}

func TestExecEnvironmentHasNoSecrets(t *testing.T) {
	t.Setenv("FLUX_AGENT_TOKEN", "s3cret")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s3cret")
	rs := make(reports, 1)
	x := NewExecExecutor(rs.report)
	x.Start(execution("t1", "/usr/bin/env"))
	res := rs.next(t, 10*time.Second)
	if want := "PATH=" + DefaultExecPath + "\n"; res.Output != want {
		t.Errorf("environment %q, want only %q", res.Output, want)
	}
}

func TestTailWriter(t *testing.T) {
	tests := []struct {
		name   string
		size   int
		writes []string
		want   string
	}{
		{"empty", 4, nil, ""},
		{"under", 4, []string{"ab"}, "ab"},
		{"exact", 4, []string{"ab", "cd"}, "abcd"},
		{"wraps", 4, []string{"abc", "def"}, "cdef"},
		{"wraps twice", 4, []string{"abc", "def", "ghi"}, "fghi"},
		{"one big write", 4, []string{"x", "0123456789"}, "6789"},
		{"byte by byte", 3, []string{"a", "b", "c", "d", "e"}, "cde"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newTailWriter(tc.size)
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("write %q: %d %v", s, n, err)
				}
			}
			if got := w.String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSleepExecutor(t *testing.T) {
	mock := clock.NewMock()
	rs := make(reports, 2)
	s := NewSleepExecutor(mock, rs.report)
	s.Start(core.Execution{TaskID: "a", Attempt: 1, Spec: core.TaskSpec{Kind: core.KindSleep, DurationMS: 2000}})
	s.Start(core.Execution{TaskID: "b", Attempt: 2, Spec: core.TaskSpec{Kind: core.KindSleep, DurationMS: 1000}})
	s.Stop("b", 2)
	mock.Add(1999 * time.Millisecond)
	if s.Running() != 1 {
		t.Fatalf("running %d, want 1", s.Running())
	}
	mock.Add(time.Millisecond)
	res := rs.next(t, 5*time.Second)
	if res.TaskID != "a" || res.Attempt != 1 || res.Outcome != core.OutcomeSucceeded {
		t.Fatalf("result %+v", res)
	}
	rs.none(t, 20*time.Millisecond) // b was stopped
}
