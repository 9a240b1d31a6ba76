package logfile

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/cp/raftlog"
)

func sample() raftlog.Record {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	return raftlog.Record{SnapshotIndex: 7, SnapshotApplied: 6, Snapshot: []byte("state\x00\xff"),
		Entries:   []raftlog.Entry{{Index: 9, Data: []byte(`{"v":1}`), AppendedAt: at}, {Index: 12, Data: []byte(`{"v":1,"x":2}`), AppendedAt: at}},
		LastIndex: 13}
}

func TestWriteReadRoundTrip(t *testing.T) {
	var b bytes.Buffer
	h := NewHeader(time.Unix(100, 0), time.Time{})
	if err := Write(&b, h, sample()); err != nil {
		t.Fatal(err)
	}
	gh, rec, err := Read(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rec, sample()) {
		t.Fatalf("record:\n got %+v\nwant %+v", rec, sample())
	}
	if gh != h {
		t.Fatalf("header %+v, want %+v", gh, h)
	}
	if lines := strings.Count(b.String(), "\n"); lines != 5 {
		t.Fatalf("%d lines, want header, snapshot, 2 entries, end:\n%s", lines, b.String())
	}
}

func TestReadRefusesOtherVersionsAndCutFiles(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, NewHeader(time.Unix(100, 0), time.Time{}), sample()); err != nil {
		t.Fatal(err)
	}
	full := b.String()
	other := strings.Replace(full, `"version":1`, `"version":2`, 1)
	_, _, err := Read(strings.NewReader(other))
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "export format version 2; this build knows 1") {
		t.Fatalf("version 2: %v", err)
	}
	lines := strings.SplitAfter(full, "\n")
	cut := strings.Join(lines[:3], "")
	if _, _, err := Read(strings.NewReader(cut)); err == nil || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("cut file: %v", err)
	}
	swapped := lines[0] + lines[1] + lines[3] + lines[2] + lines[4]
	if _, _, err := Read(strings.NewReader(swapped)); err == nil || !strings.Contains(err.Error(), "entry index 9 after 12") {
		t.Fatalf("out of order: %v", err)
	}
	if _, _, err := Read(strings.NewReader("not json")); !errors.Is(err, ErrFormat) {
		t.Fatalf("garbage: %v", err)
	}
}
