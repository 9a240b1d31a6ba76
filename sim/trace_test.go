package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	fnet "github.com/fluxforge/fluxforge/net"
	"pgregory.net/rapid"
)

// TestAppendUintMatchesStrconv checks the tracer's digit writer against
// strconv at the edges of every width and on random values.
func TestAppendUintMatchesStrconv(t *testing.T) {
	vals := []uint64{0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 12345, math.MaxUint32, math.MaxUint64}
	for p := uint64(1); p < math.MaxUint64/10; p *= 10 {
		vals = append(vals, p-1, p, p+1)
	}
	for _, v := range vals {
		if got, want := string(appendUint([]byte("x"), v)), "x"+strconv.FormatUint(v, 10); got != want {
			t.Errorf("appendUint(%d) = %q, want %q", v, got, want)
		}
	}
	rapid.Check(t, func(t *rapid.T) {
		v := rapid.Int64().Draw(t, "v")
		if got, want := string(appendInt(nil, v)), strconv.FormatInt(v, 10); got != want {
			t.Fatalf("appendInt(%d) = %q, want %q", v, got, want)
		}
	})
}

// appendJSONStringSlow is the tracer's escaping without the fast path: the
// reference the fast path must match byte for byte.
func appendJSONStringSlow(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
			i++
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			i++
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
		}
	}
	return append(b, '"')
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "z1-a01", `a"b`, `a\b`, "tab\there", "é", "\xff", "ok \x01"} {
		got := appendJSONString(nil, s)
		if want := appendJSONStringSlow(nil, s); string(got) != string(want) {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
		if utf8.ValidString(s) {
			var back string
			if err := json.Unmarshal(got, &back); err != nil || back != s {
				t.Errorf("appendJSONString(%q) = %s: decodes to %q, %v", s, got, back, err)
			}
		}
	}
	rapid.Check(t, func(t *rapid.T) {
		s := rapid.OneOf(rapid.String(), rapid.StringMatching(`[ -~]*`),
			rapid.Custom(func(t *rapid.T) string { return string(rapid.SliceOf(rapid.Byte()).Draw(t, "b")) })).Draw(t, "s")
		if got, want := appendJSONString(nil, s), appendJSONStringSlow(nil, s); string(got) != string(want) {
			t.Fatalf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	})
}

// refTracer is the tracer as it was before lines were built in place: a
// line in its own buffer, copied into the chunk when done. The tracer must
// write, hash and keep exactly what it did.
type refTracer struct {
	chunk, prev []byte
	out         []byte
	keep        int
}

func (t *refTracer) line(b []byte) {
	if len(t.chunk)+len(b) > chunkBytes {
		t.out = append(t.out, t.chunk...)
		t.prev, t.chunk = append(t.prev[:0], t.chunk...), t.chunk[:0]
	}
	t.chunk = append(t.chunk, b...)
}

func (t *refTracer) last() []string {
	all := append(append([]byte(nil), t.prev...), t.chunk...)
	lines := strings.Split(strings.TrimSuffix(string(all), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	return lines[max(0, len(lines)-t.keep):]
}

// TestTracerChunks writes random lines, some longer than a chunk, and
// compares the bytes written, the hash and the last lines with refTracer,
// also with a line left unfinished.
func TestTracerChunks(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var out bytes.Buffer
		keep := rapid.IntRange(1, 30).Draw(t, "keep")
		tr := newTracer(&out, keep)
		ref := &refTracer{keep: keep}
		for i := range rapid.IntRange(0, 3000).Draw(t, "lines") {
			n := rapid.IntRange(0, 400).Draw(t, "len")
			if rapid.IntRange(0, 200).Draw(t, "huge") == 0 {
				n = rapid.IntRange(chunkBytes-100, 2*chunkBytes).Draw(t, "hugeLen")
			}
			val := strings.Repeat("x", n)
			tr.begin(time.Duration(i)*time.Millisecond, uint64(i), "ev")
			tr.str("v", val)
			tr.int("i", int64(i))
			tr.end()
			want := fmt.Sprintf(`{"ms":%d,"n":%d,"ev":"ev"`, i, i)
			if val != "" {
				want += `,"v":"` + val + `"`
			}
			want += fmt.Sprintf(`,"i":%d}`+"\n", i)
			ref.line([]byte(want))
		}
		if rapid.Bool().Draw(t, "open") {
			tr.begin(0, 0, "unfinished")
		}
		if got, want := tr.last(), ref.last(); !slices.Equal(got, want) {
			t.Fatalf("last lines differ:\n got %q\nwant %q", got, want)
		}
		sum := tr.sum()
		ref.out = append(ref.out, ref.chunk...)
		if !bytes.Equal(out.Bytes(), ref.out) {
			t.Fatalf("wrote %d bytes, want %d", out.Len(), len(ref.out))
		}
		c, i := crc32.Checksum(ref.out, castagnoli), crc32.ChecksumIEEE(ref.out)
		if want := fmt.Sprintf("crc32x2:%08x%08x", c, i); sum != want {
			t.Fatalf("hash %s, want %s", sum, want)
		}
		if tr.bytes != int64(len(ref.out)) {
			t.Fatalf("bytes %d, want %d", tr.bytes, len(ref.out))
		}
	})
}

// TestTraceRouteMatchesFields: an agent's built route fields are what the
// kind, from and to fields would print, for each kind and direction, twice
// (built, then reused), and messages between others print field by field.
func TestTraceRouteMatchesFields(t *testing.T) {
	s := &sim{tr: newTracer(nil, 1)}
	a := &simAgent{id: `z1-a"01`}
	kinds := append(tracedKinds[:], fnet.KindAssign, "")
	for range 2 {
		for _, k := range kinds {
			for _, m := range []fnet.Message{{Kind: k, From: a.id, To: fnet.CPNode}, {Kind: k, From: fnet.CPNode, To: a.id},
				{Kind: k, From: "z2-a01", To: fnet.CPNode}, {Kind: k, From: a.id, To: "z2-a01"}} {
				s.tr.chunk = s.tr.chunk[:0]
				s.traceRoute(a, &m)
				got := string(s.tr.chunk)
				want := string(appendField(appendField(appendField(nil, "kind", string(m.Kind)), "from", m.From), "to", m.To))
				if got != want {
					t.Errorf("traceRoute(%+v) = %s, want %s", m, got, want)
				}
			}
		}
	}
}
