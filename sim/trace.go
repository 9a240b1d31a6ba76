package sim

import (
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// tracer writes one JSON object per line for every simulator event and every
// control-plane timeline event. Lines are built by hand (no reflection, no
// maps) so the bytes are deterministic and cheap. Two hardware-accelerated
// CRC-32s (Castagnoli and IEEE) of all of them, computed over 64 KiB chunks,
// form the run's 64-bit trace hash: at the simulator's line rate FNV-64a or
// CRC-64 cost over a tenth of the run. A line is built in place at the end
// of the chunk, so it is not copied once more when it is done.
type tracer struct {
	w     io.Writer
	werr  error
	hashC hash.Hash32
	hashI hash.Hash32
	chunk []byte // lines not yet hashed and written, then the line being built
	done  int    // chunk[:done] holds whole lines
	prev  []byte // the chunk before, kept for the last lines of a report
	keep  int    // how many last lines a report wants
	bytes int64
	lines int64
}

func newTracer(w io.Writer, keep int) *tracer {
	return &tracer{w: w, hashC: crc32.New(castagnoli), hashI: crc32.NewIEEE(), chunk: make([]byte, 0, chunkBytes),
		prev: make([]byte, 0, chunkBytes), keep: keep}
}

// begin starts a line at virtual time at for sim event number n.
func (t *tracer) begin(at time.Duration, n uint64, ev string) {
	b := t.chunk[:t.done]
	b = append(b, `{"ms":`...)
	b = appendInt(b, at.Milliseconds())
	b = append(b, `,"n":`...)
	b = appendUint(b, n)
	b = append(b, `,"ev":"`...)
	b = append(b, ev...)
	b = append(b, '"')
	t.chunk = b
}

func (t *tracer) str(key, val string) { t.chunk = appendField(t.chunk, key, val) }

// raw appends fields appendField built beforehand: an agent's id and its
// links, which the hottest lines print every time.
func (t *tracer) raw(fields []byte) { t.chunk = append(t.chunk, fields...) }

// appendField appends the field key: val as str writes it ("" writes
// nothing).
func appendField(b []byte, key, val string) []byte {
	if val == "" {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	return appendJSONString(b, val)
}

func (t *tracer) int(key string, v int64) {
	b := append(t.chunk, `,"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	t.chunk = appendInt(b, v)
}

func (t *tracer) end() {
	t.chunk = append(t.chunk, '}', '\n')
	n := len(t.chunk) - t.done
	t.bytes += int64(n)
	t.lines++
	if len(t.chunk) > chunkBytes {
		// The whole lines before this one make a chunk; this line
		// starts the next.
		t.flush()
	}
	t.done += n
}

// last returns up to keep last lines, oldest first, from the current and
// the previous chunk (a chunk holds hundreds of lines).
func (t *tracer) last() []string {
	all := append(append([]byte(nil), t.prev...), t.chunk[:t.done]...)
	lines := strings.Split(strings.TrimSuffix(string(all), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	return lines[max(0, len(lines)-t.keep):]
}

const chunkBytes = 64 << 10

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// flush hashes and writes the whole lines pending; a line being built
// moves to the start of the next chunk.
func (t *tracer) flush() {
	whole := t.chunk[:t.done]
	t.hashC.Write(whole)
	t.hashI.Write(whole)
	if t.w != nil && t.werr == nil {
		_, t.werr = t.w.Write(whole)
	}
	t.prev, t.chunk = whole, append(t.prev[:0], t.chunk[t.done:]...)
	t.done = 0
}

// sum flushes and returns the trace hash.
func (t *tracer) sum() string {
	t.flush()
	return fmt.Sprintf("crc32x2:%08x%08x", t.hashC.Sum32(), t.hashI.Sum32())
}

// appendInt appends v in decimal, as strconv.AppendInt(b, v, 10) does.
func appendInt(b []byte, v int64) []byte {
	if v < 0 {
		return strconv.AppendInt(b, v, 10)
	}
	return appendUint(b, uint64(v))
}

// pow10[i] is 10^i.
var pow10 = [...]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// digitPairs holds "00".."99" for appendUint.
const digitPairs = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

// appendUint appends v in decimal, as strconv.AppendUint(b, v, 10) does,
// two digits at a time straight into b's tail: the tracer formats several
// numbers a line and millions of lines a run.
func appendUint(b []byte, v uint64) []byte {
	if v < 10 {
		return append(b, byte('0'+v))
	}
	// Digits: log10 from the bit length (1233/4096 ≈ log10 2), then one
	// comparison to correct it.
	t := bits.Len64(v) * 1233 >> 12
	n := t + 1
	if v < pow10[t] {
		n--
	}
	b = slices.Grow(b, n)
	i := len(b) + n
	b = b[:i]
	for v >= 100 {
		q := v / 100
		r := v - q*100
		i -= 2
		b[i], b[i+1] = digitPairs[2*r], digitPairs[2*r+1]
		v = q
	}
	if v >= 10 {
		i -= 2
		b[i], b[i+1] = digitPairs[2*v], digitPairs[2*v+1]
	} else {
		i--
		b[i] = byte('0' + v)
	}
	return b
}

// jsonPlain marks the bytes a JSON string holds as they are: printable
// ASCII but the quote and the backslash.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString appends s as a JSON string literal.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	// Fast path: nothing to escape (ids, kinds, most reasons).
	plain := true
	for i := 0; i < len(s); i++ {
		if !jsonPlain[s[i]] {
			plain = false
			break
		}
	}
	if plain {
		b = append(b, s...)
		return append(b, '"')
	}
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
