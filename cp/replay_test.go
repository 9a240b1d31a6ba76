package cp

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp/logfile"
	"github.com/fluxforge/fluxforge/cp/raftlog"
)

// doWork drives a cp through submissions, heartbeats with results, a
// quarantine and a mode change, with the mock clock moving between them.
func doWork(t *testing.T, tc *testCP, mock *clock.Mock, n int, admin bool) {
	t.Helper()
	auth := []string{"Authorization", "Bearer " + durableAdmin}
	for i := range n {
		tc.heartbeat(core.HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 2, Address: "http://127.0.0.1:1", Incarnation: 1, Seq: uint64(2*i + 1)})
		tc.submit(`{"kind":"sleep"}`)
		mock.Add(time.Second)
		if err := tc.s.applyInput(core.TickInput{}); err != nil {
			t.Fatal(err)
		}
		tc.heartbeat(core.HeartbeatInput{AgentID: "a2", Domain: "z2", Slots: 1, Address: "http://127.0.0.1:2", Incarnation: 1, Seq: uint64(2*i + 2)})
	}
	if !admin {
		return
	}
	tc.mustStatus(http.StatusOK, "POST", "/v1/agents/a2/quarantine", `{"reason":"bad disk"}`, auth...)
	tc.mustStatus(http.StatusOK, "POST", "/admin/mode", `{"mode":"DRAINING","reason":"maintenance"}`, auth...)
}

func durableOpts(dir string, mock *clock.Mock) func(*Options) {
	return func(o *Options) { o.DataDir, o.AdminToken, o.Clock = dir, durableAdmin, mock }
}

// TestReplayOfADataDirEndsWhereTheCPWas: a stopped cp's data dir replays to
// the applied_index and state_hash its snapshot endpoint reported, with the
// timeline it recorded; an export read from the live cp does too.
func TestReplayOfADataDirEndsWhereTheCPWas(t *testing.T) {
	dir := t.TempDir()
	mock := newMock()
	tc := startCP(t, false, durableOpts(dir, mock))
	doWork(t, tc, mock, 5, true)
	want := tc.debug()
	timeline := tc.timelineAll()

	resp := tc.mustStatus(http.StatusOK, "GET", "/admin/log/export", nil, "Authorization", "Bearer "+durableAdmin)
	tc.mustStatus(http.StatusUnauthorized, "GET", "/admin/log/export", nil)
	tc.mustStatus(http.StatusBadRequest, "GET", "/admin/log/export?since=-3m", nil, "Authorization", "Bearer "+durableAdmin)

	// A running cp's dir is refused: it is locked.
	if _, err := raftlog.ReadDir(dir); !errors.Is(err, raftlog.ErrDirLocked) {
		t.Fatalf("ReadDir of a running cp's dir: %v", err)
	}
	tc.stop()

	rec, err := raftlog.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Replay(rec, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.AppliedIndex != want.AppliedIndex || res.StateHash != want.StateHash {
		t.Fatalf("replay of the dir: applied_index %d state_hash %s; the cp reported %d %s",
			res.AppliedIndex, res.StateHash, want.AppliedIndex, want.StateHash)
	}
	if got, exp := eventKeys(res.Events), eventKeys(timeline); got != exp {
		t.Fatalf("replayed timeline differs:\n got %s\nwant %s", got, exp)
	}

	_, frec, err := logfile.Read(bytes.NewReader(resp.Body))
	if err != nil {
		t.Fatal(err)
	}
	fres, err := Replay(frec, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if fres.AppliedIndex != want.AppliedIndex || fres.StateHash != want.StateHash {
		t.Fatalf("replay of the export: %d %s, want %d %s", fres.AppliedIndex, fres.StateHash, want.AppliedIndex, want.StateHash)
	}

	// -until-index: inside the range it stops there; outside is an error
	// naming the range.
	first, last := ReplayRange(rec)
	mid := rec.Entries[len(rec.Entries)/2].Index
	part, err := Replay(rec, ReplayOptions{UntilIndex: mid})
	if err != nil || part.AppliedIndex != mid || part.StateHash == want.StateHash {
		t.Fatalf("until %d: applied %d hash %s err %v", mid, part.AppliedIndex, part.StateHash, err)
	}
	_, err = Replay(rec, ReplayOptions{UntilIndex: last + 1})
	if err == nil || !strings.Contains(err.Error(), "outside the recorded range") || !strings.Contains(err.Error(), strings.Join([]string{u(first), "to", u(last)}, " ")) {
		t.Fatalf("until past the end: %v", err)
	}
}

// TestExportSinceStartsAtASnapshot: after a snapshot, an export of the
// last moments starts at it and still replays to the reported state; the
// restored dir (raftlog.Seed) starts a cp at that state.
func TestExportSinceStartsAtASnapshot(t *testing.T) {
	dir := t.TempDir()
	mock := newMock()
	tc := startCP(t, false, durableOpts(dir, mock))
	doWork(t, tc, mock, 3, false)
	if err := tc.s.node.Snapshot(); err != nil {
		t.Fatal(err)
	}
	snapAt := tc.debug().AppliedIndex
	doWork(t, tc, mock, 2, true)
	want := tc.debug()
	resp := tc.mustStatus(http.StatusOK, "GET", "/admin/log/export?since=1ns", nil, "Authorization", "Bearer "+durableAdmin)
	_, rec, err := logfile.Read(bytes.NewReader(resp.Body))
	if err != nil {
		t.Fatal(err)
	}
	if rec.SnapshotApplied != snapAt || len(rec.Entries) == 0 {
		t.Fatalf("export since 1ns: snapshot at %d (want %d), %d entries", rec.SnapshotApplied, snapAt, len(rec.Entries))
	}
	res, err := Replay(rec, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.AppliedIndex != want.AppliedIndex || res.StateHash != want.StateHash {
		t.Fatalf("replay from the snapshot: %d %s, want %d %s", res.AppliedIndex, res.StateHash, want.AppliedIndex, want.StateHash)
	}
	state, err := res.Core.Export()
	if err != nil {
		t.Fatal(err)
	}
	restored := t.TempDir() + "/restored"
	if err := raftlog.Seed(restored, "", res.AppliedIndex, state); err != nil {
		t.Fatal(err)
	}
	tc2 := startCP(t, false, durableOpts(restored, newMock()))
	got := tc2.debug()
	if got.AppliedIndex < want.AppliedIndex || got.AppliedIndex == want.AppliedIndex && got.StateHash != want.StateHash || got.Mode != core.ModeDraining {
		t.Fatalf("restored cp: applied_index %d hash %s (restored at %d %s), mode %s",
			got.AppliedIndex, got.StateHash, want.AppliedIndex, want.StateHash, got.Mode)
	}
	if len(tc2.tasks()) != len(tc.tasks()) {
		t.Fatalf("restored cp has %d tasks, the original %d", len(tc2.tasks()), len(tc.tasks()))
	}
}

// TestReplayRefusesAnUnknownEntryVersion names the entry and the versions.
func TestReplayRefusesAnUnknownEntryVersion(t *testing.T) {
	init, err := encodeInit(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	rec := raftlog.Record{LastIndex: 4, Entries: []raftlog.Entry{{Index: 3, Data: init}, {Index: 4, Data: []byte(`{"v":7,"env":{"kind":"tick"}}`)}}}
	_, err = Replay(rec, ReplayOptions{})
	if err == nil || !strings.Contains(err.Error(), "log entry 4 has format version 7; this cp knows versions 1 to 3 only") {
		t.Fatalf("replay of a v7 entry: %v", err)
	}
}

func eventKeys(es []core.Event) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString(u(e.Seq) + ":" + string(e.Type) + ":" + string(e.AgentID) + string(e.TaskID) + " ")
	}
	return b.String()
}

func u(v uint64) string { return strconv.FormatUint(v, 10) }
