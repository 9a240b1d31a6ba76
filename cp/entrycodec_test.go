package cp

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/fluxforge/fluxforge/core"
)

// drawEnvelope draws an envelope as core.Wrap makes them: a submit with
// arbitrary strings (quotes, backslashes, <>&, U+2028, any unicode), a
// heartbeat or a tick, stamped at an arbitrary time in an arbitrary zone.
func drawEnvelope(t *rapid.T) core.Envelope {
	sec := rapid.Int64Range(-62135596800, 253402300799).Draw(t, "sec") // years 1 to 9999
	at := time.Unix(sec, rapid.Int64Range(0, 999_999_999).Draw(t, "nsec"))
	switch rapid.IntRange(0, 3).Draw(t, "zone") {
	case 0:
		at = at.UTC()
	case 1:
		at = at.In(time.FixedZone("x", rapid.IntRange(-14*60, 14*60).Draw(t, "offmin")*60))
	case 2:
		at = at.In(time.FixedZone("lmt", rapid.IntRange(-50000, 50000).Draw(t, "offsec")))
	}
	str := rapid.OneOf(rapid.String(), rapid.StringOf(rapid.RuneFrom([]rune{'"', '\\', '<', '>', '&', '\u2028', '\u2029', 'a', ' ', '\n', 0})))
	var in core.Input
	switch rapid.IntRange(0, 2).Draw(t, "kind") {
	case 0:
		in = core.SubmitInput{IdempotencyKey: str.Draw(t, "key"), By: str.Draw(t, "by"), Spec: core.TaskSpec{
			Kind: core.KindSleep, Argv: rapid.SliceOfN(str, 0, 3).Draw(t, "argv"), Domain: str.Draw(t, "domain"),
			DurationMS: rapid.Int64().Draw(t, "ms")}}
	case 1:
		in = core.HeartbeatInput{AgentID: core.AgentID(str.Draw(t, "agent")), Domain: str.Draw(t, "hbdomain"),
			Slots: rapid.Int().Draw(t, "slots"), Incarnation: rapid.Uint64().Draw(t, "inc"), Seq: rapid.Uint64().Draw(t, "seq")}
	default:
		in = core.TickInput{}
	}
	return core.Wrap(at, in)
}

// TestInputEntryCodecMatchesEncodingJSON: the fast path writes exactly the
// bytes json.Marshal writes for version 1 and 2 entries, and reads back
// exactly what json.Unmarshal reads (or declines, and the generic path
// reads it).
func TestInputEntryCodecMatchesEncodingJSON(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		envs := rapid.SliceOfN(rapid.Custom(drawEnvelope), 1, 5).Draw(t, "envs")
		var want []byte
		var err error
		if len(envs) == 1 {
			want, err = json.Marshal(logEntry{V: entryFormatVersion, Env: &envs[0]})
		} else {
			want, err = json.Marshal(logEntry{V: entryBatchFormatVersion, Batch: envs})
		}
		if err != nil {
			// A year outside 0-9999 in its zone: both paths refuse it.
			if _, ferr := encodeBatch(envs); ferr == nil {
				t.Fatalf("encodeBatch took what json.Marshal refuses (%v)", err)
			}
			return
		}
		got, err := encodeBatch(envs)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("encodeBatch:\n got %s (%v)\nwant %s", got, err, want)
		}
		var ref logEntry
		if err := json.Unmarshal(want, &ref); err != nil {
			t.Fatal(err)
		}
		fast, ok := decodeInputEntry(want)
		utc := true
		for _, e := range envs {
			_, off := e.At.Zone()
			utc = utc && off == 0 && e.At.Location() == time.UTC
		}
		if utc && !ok {
			t.Fatalf("fast path declined an all-UTC entry %s", want)
		}
		if ok && !reflect.DeepEqual(fast, ref) {
			t.Fatalf("decode:\n fast %+v\n json %+v", fast, ref)
		}
		dec, err := decodeEntry(1, want)
		if err != nil || !reflect.DeepEqual(dec, ref) {
			t.Fatalf("decodeEntry: %+v (%v)\nwant %+v", dec, err, ref)
		}
	})
}

// TestInputEntryDecodeDeclinesOtherForms: entries not in the exact form
// (white space, other field order, other versions, a bad body, trailing
// bytes) are left to encoding/json, which accepts or refuses them as
// before.
func TestInputEntryDecodeDeclinesOtherForms(t *testing.T) {
	for _, data := range []string{
		`{"v":1,"env":{"at":"2026-01-01T00:00:00Z","kind":"tick","body":{}}} `,
		`{"v":1, "env":{"at":"2026-01-01T00:00:00Z","kind":"tick","body":{}}}`,
		`{"env":{"at":"2026-01-01T00:00:00Z","kind":"tick","body":{}},"v":1}`,
		`{"v":1,"env":{"at":"2026-01-01T00:00:00+01:00","kind":"tick","body":{}}}`,
		`{"v":1,"env":{"at":"2026-01-01T00:00:00Z","kind":"tick","body":[]}}`,
		`{"v":1,"env":{"at":"2026-01-01T00:00:00Z","kind":"t\u0069ck","body":{}}}`,
		`{"v":2,"batch":[]}`,
		`{"v":2,"batch":[{"at":"2026-01-01T00:00:00Z","kind":"tick","body":{}}]}x`,
		`{"v":3,"member":{}}`,
	} {
		if _, ok := decodeInputEntry([]byte(data)); ok {
			t.Errorf("fast path took %s", data)
		}
		var ref logEntry
		refErr := json.Unmarshal([]byte(data), &ref)
		if refErr == nil {
			continue
		}
		if _, err := decodeEntry(1, []byte(data)); err == nil {
			t.Errorf("decodeEntry accepted %s, which encoding/json refuses (%v)", data, refErr)
		}
	}
	// A body that is an object but not valid JSON passes the container and
	// is refused when it is decoded: the state machine stops.
	f := newFSM(nil, nil)
	init, err := encodeInit(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	f.Apply(1, init)
	if r, ok := f.Apply(2, []byte(`{"v":1,"env":{"at":"2026-01-01T00:00:00Z","kind":"tick","body":{"a":}}}`)).(applied); !ok || r.Err == nil || f.err() == nil {
		t.Fatalf("a malformed body was applied: %+v, state error %v", r, f.err())
	}
	// Bodies are copied out of the entry's bytes.
	data := []byte(`{"v":1,"env":{"at":"2026-01-01T00:00:00Z","kind":"tick","body":{}}}`)
	e, ok := decodeInputEntry(data)
	if !ok {
		t.Fatal("declined")
	}
	data[len(data)-4] = '['
	if string(e.Env.Body) != "{}" {
		t.Fatalf("body aliases the entry: %s", e.Env.Body)
	}
}

// BenchmarkEntryCodec encodes and decodes a batch entry of 16 submits
// with the fast path and with encoding/json.
func BenchmarkEntryCodec(b *testing.B) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 123456789, time.UTC)
	envs := make([]core.Envelope, 16)
	for i := range envs {
		envs[i] = core.Wrap(at, core.SubmitInput{Spec: core.TaskSpec{Kind: core.KindSleep}})
	}
	data, _ := encodeBatch(envs)
	b.Run("encode/fast", func(b *testing.B) {
		for b.Loop() {
			if _, err := encodeBatch(envs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode/json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(logEntry{V: entryBatchFormatVersion, Batch: envs}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/fast", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodeEntry(1, data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/json", func(b *testing.B) {
		for b.Loop() {
			var e logEntry
			if err := json.Unmarshal(data, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
