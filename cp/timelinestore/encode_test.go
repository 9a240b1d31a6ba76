package timelinestore

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/fluxforge/fluxforge/core"
)

// TestAppendEventMatchesEncodingJSON: appendEvent writes exactly the line
// json.Encoder writes, for random events with arbitrary strings (quotes,
// control characters, <>&, U+2028, invalid UTF-8) and times in any zone.
func TestAppendEventMatchesEncodingJSON(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		str := rapid.OneOf(rapid.String(), rapid.StringMatching(`[a-z.\-]{0,12}`),
			rapid.StringOf(rapid.RuneFrom([]rune{'"', '\\', '<', '>', '&', '\u2028', '\u2029', '\n', '\r', '\t', 0, 0x1f, 0x7f, 'é', '\ufffd'})),
			rapid.Custom(func(t *rapid.T) string { return string(rapid.SliceOf(rapid.Byte()).Draw(t, "bytes")) }))
		at := time.Unix(rapid.Int64Range(-62135596800, 253402300799).Draw(t, "sec"), rapid.Int64Range(0, 999_999_999).Draw(t, "nsec"))
		switch rapid.IntRange(0, 2).Draw(t, "zone") {
		case 0:
			at = at.UTC()
		case 1:
			at = at.In(time.FixedZone("x", rapid.IntRange(-14*60, 14*60).Draw(t, "offmin")*60))
		case 2:
			at = at.In(time.FixedZone("lmt", rapid.IntRange(-50000, 50000).Draw(t, "offsec")))
		}
		e := core.Event{Seq: rapid.Uint64().Draw(t, "seq"), Time: at, Kind: str.Draw(t, "kind"), Type: core.EventType(str.Draw(t, "type")),
			TaskID: core.TaskID(str.Draw(t, "task")), AgentID: core.AgentID(str.Draw(t, "agent")), Domain: str.Draw(t, "domain"),
			Attempt: rapid.Int().Draw(t, "attempt"), From: str.Draw(t, "from"), To: str.Draw(t, "to"), Actor: str.Draw(t, "actor"),
			By: str.Draw(t, "by"), Reason: str.Draw(t, "reason"), Count: rapid.Int().Draw(t, "count"), Cause: core.Cause(str.Draw(t, "cause"))}
		var want bytes.Buffer
		wantErr := json.NewEncoder(&want).Encode(e)
		got, err := appendEvent(nil, e)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("error %v, encoding/json's %v", err, wantErr)
		}
		if err == nil && !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("appendEvent:\n got %q\nwant %q", got, want.Bytes())
		}
	})
}

// BenchmarkAppendEvent: one typical task event, by appendEvent and by
// json.Encoder.
func BenchmarkAppendEvent(b *testing.B) {
	e := core.Event{Seq: 123456, Time: time.Date(2026, 1, 1, 0, 0, 0, 123456789, time.UTC), Kind: "task", Type: "task.succeeded",
		TaskID: "t-a5b7bc-020001", AgentID: "pb-1", Domain: "zone-1", Attempt: 1, From: "RUNNING", To: "SUCCEEDED", Actor: "agent"}
	b.Run("fast", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf, _ = appendEvent(buf[:0], e)
		}
	})
	b.Run("json", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			_ = json.NewEncoder(&buf).Encode(e)
		}
	})
}
