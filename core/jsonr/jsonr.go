// Package jsonr reads the strict subset of JSON that the hot protocol
// messages are written in, for the few decoders that skip encoding/json's
// reflection (an agent's heartbeat, its poll, the replies to both). It is
// core/jsonw's twin for reading; both live under core because core's
// Envelope.Wrap and Unwrap use them, and core imports nothing but the
// standard library and its own packages.
//
// A Reader takes what encoding/json would read into exactly the same value
// and gives up (OK reports false) on anything it is not sure of: a number
// with a fraction or an exponent or out of range, null, a \u escape of a
// surrogate, invalid UTF-8, a control character in a string, an escape in
// a key. The decoders built on it also give up on unknown and repeated
// keys. A caller then decodes with encoding/json, which says what is wrong
// with bad input, so a fast path never changes an answer: each decoder's
// test compares it with encoding/json on random values and on random
// mutations of their text.
//
// Failure is sticky: after the first one every method returns a zero value,
// so a decoder reads a whole object and checks OK once at the end.
package jsonr

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// Reader reads JSON tokens from a byte slice.
type Reader struct {
	b   []byte
	i   int
	bad bool
}

// New returns a Reader of b.
func New(b []byte) Reader { return Reader{b: b} }

// OK reports whether every read so far succeeded.
func (r *Reader) OK() bool { return !r.bad }

// Fail marks the input as one the fast path does not take.
func (r *Reader) Fail() { r.bad = true }

// ws skips JSON white space (exactly the four bytes encoding/json skips)
// and reports whether a byte follows.
func (r *Reader) ws() bool {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return true
		}
	}
	return false
}

// Byte reads the structural byte c ({, [, :, ...) after optional white
// space.
func (r *Reader) Byte(c byte) {
	if r.bad || !r.ws() || r.b[r.i] != c {
		r.bad = true
		return
	}
	r.i++
}

// Peek reports whether the next byte after white space is c, without
// reading it.
func (r *Reader) Peek(c byte) bool {
	return !r.bad && r.ws() && r.b[r.i] == c
}

// End reports whether only white space is left and every read succeeded:
// encoding/json's Unmarshal, and Decoder.Decode followed by a look for
// trailing data, take exactly that.
func (r *Reader) End() bool {
	return !r.bad && !r.ws()
}

// More walks the members of an object or the elements of an array whose
// opening byte was read: call it with n = 0, 1, 2, ... before each one
// until it reports false. It reads the separating comma, and the closing
// byte end when the container ends.
//
//	r.Byte('{')
//	for n := 0; r.More(n, '}'); n++ {
//		switch r.Key() { ... }
//	}
func (r *Reader) More(n int, end byte) bool {
	if r.bad || !r.ws() {
		r.bad = true
		return false
	}
	c := r.b[r.i]
	switch {
	case c == end:
		r.i++
		return false
	case n == 0:
		return true
	case c == ',':
		r.i++
		return true
	}
	r.bad = true
	return false
}

// Key reads an object key and the colon after it. The bytes returned are
// the input's (valid until it changes): compare them, do not keep them.
// A key with an escape fails (encoding/json would unescape it before
// matching).
func (r *Reader) Key() []byte {
	if r.bad || !r.ws() || r.b[r.i] != '"' {
		r.bad = true
		return nil
	}
	start := r.i + 1
	for j := start; j < len(r.b); j++ {
		switch c := r.b[j]; {
		case c == '"':
			r.i = j + 1
			r.Byte(':')
			return r.b[start:j]
		case c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			r.bad = true
			return nil
		}
	}
	r.bad = true
	return nil
}

// Once marks member bit of an object as read, failing when it was read
// before: encoding/json takes the last of repeated keys, merging repeated
// arrays into one slice, which the fast decoders do not follow.
func (r *Reader) Once(seen *uint64, bit uint) {
	if *seen&(1<<bit) != 0 {
		r.bad = true
	}
	*seen |= 1 << bit
}

// String reads a JSON string and returns it as encoding/json's Unmarshal
// does. It fails on what that rewrites or refuses: invalid UTF-8 (replaced
// by U+FFFD), a \u escape of a surrogate (pairs or U+FFFD), a control
// character.
func (r *Reader) String() string {
	raw, simple := r.str()
	if r.bad {
		return ""
	}
	if simple {
		return string(raw)
	}
	return string(r.unescape(raw))
}

// Bytes is String for a caller that only looks at the value: the bytes may
// be the input's own (valid until it changes) when there is no escape.
func (r *Reader) Bytes() []byte {
	raw, simple := r.str()
	if r.bad || simple {
		return raw
	}
	return r.unescape(raw)
}

// Raw reads a JSON string and returns its text, quotes and escapes
// included: what encoding/json hands to an UnmarshalJSON method (such as
// time.Time's).
func (r *Reader) Raw() []byte {
	raw, _ := r.str()
	if r.bad {
		return nil
	}
	return r.b[r.i-len(raw)-2 : r.i]
}

// str reads a string up to its closing quote and returns the bytes inside
// the quotes; simple reports that there is no escape in them.
func (r *Reader) str() (raw []byte, simple bool) {
	if r.bad || !r.ws() || r.b[r.i] != '"' {
		r.bad = true
		return nil, false
	}
	start := r.i + 1
	simple, ascii := true, true
	for j := start; j < len(r.b); j++ {
		switch c := r.b[j]; {
		case c == '"':
			raw = r.b[start:j]
			if !ascii && !utf8.Valid(raw) {
				r.bad = true
				return nil, false
			}
			r.i = j + 1
			return raw, simple
		case c == '\\':
			simple = false
			j++ // the escaped byte cannot close the string
		case c < 0x20:
			r.bad = true
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	r.bad = true
	return nil, false
}

// unescape returns raw (a string's inside, as str returned it) with its
// escapes replaced, as encoding/json's unquote does.
func (r *Reader) unescape(raw []byte) []byte {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i == len(raw) {
			r.bad = true
			return nil
		}
		switch raw[i] {
		case '"', '\\', '/':
			out = append(out, raw[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			rn, ok := hex4(raw[i+1:])
			if !ok || utf8.RuneLen(rn) < 0 { // a surrogate: encoding/json pairs it or writes U+FFFD
				r.bad = true
				return nil
			}
			out = utf8.AppendRune(out, rn)
			i += 4
		default:
			r.bad = true
			return nil
		}
	}
	return out
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var v rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | rune(c)
	}
	return v, true
}

// Bool reads true or false.
func (r *Reader) Bool() bool {
	switch {
	case r.lit("true"):
		return true
	case r.lit("false"):
		return false
	}
	r.bad = true
	return false
}

func (r *Reader) lit(s string) bool {
	if r.bad || !r.ws() || len(r.b)-r.i < len(s) || string(r.b[r.i:r.i+len(s)]) != s {
		return false
	}
	r.i += len(s)
	return true
}

// digits reads an integer's digits (no sign): 0 or a nonzero digit and
// more. It fails on what is not an integer encoding/json reads the same
// way (a fraction, an exponent) and on a value over max.
func (r *Reader) digits(max uint64) uint64 {
	start := r.i
	var v uint64
	for ; r.i < len(r.b); r.i++ {
		c := r.b[r.i]
		if c < '0' || c > '9' {
			break
		}
		d := uint64(c - '0')
		if v > (max-d)/10 {
			r.bad = true
			return 0
		}
		v = v*10 + d
	}
	switch n := r.i - start; {
	case n == 0, n > 1 && r.b[start] == '0':
		r.bad = true
		return 0
	}
	if r.i < len(r.b) {
		if c := r.b[r.i]; c == '.' || c == 'e' || c == 'E' {
			r.bad = true
			return 0
		}
	}
	return v
}

// IntBits reads an integer that fits in a signed integer of bits bits (the
// field's type: encoding/json refuses a value outside its range).
func (r *Reader) IntBits(bits int) int64 {
	if r.bad || !r.ws() {
		r.bad = true
		return 0
	}
	if r.b[r.i] == '-' {
		r.i++
		m := r.digits(1 << (bits - 1))
		if r.bad || m == 0 {
			return 0 // -0 is 0
		}
		return -int64(m-1) - 1 // m may be 1<<63
	}
	return int64(r.digits(1<<(bits-1) - 1))
}

// Int reads an int.
func (r *Reader) Int() int { return int(r.IntBits(strconv.IntSize)) }

// Int64 reads an int64.
func (r *Reader) Int64() int64 { return r.IntBits(64) }

// Uint64 reads a uint64. A minus sign fails, even in -0 (encoding/json
// refuses it too).
func (r *Reader) Uint64() uint64 {
	if r.bad || !r.ws() {
		r.bad = true
		return 0
	}
	return r.digits(math.MaxUint64)
}

// Array reads a JSON array of values that read reads into a zero T, as
// encoding/json reads one into a nil slice: [] gives an empty slice, not
// nil, and null gives nil.
// read is typically a method expression: jsonr.Array(r, (*T).ReadJSON).
func Array[T any](r *Reader, read func(*T, *Reader)) []T {
	if r.lit("null") {
		return nil
	}
	r.Byte('[')
	s := []T{}
	for n := 0; r.More(n, ']'); n++ {
		var v T
		read(&v, r)
		s = append(s, v)
	}
	if r.bad {
		return nil
	}
	return s
}
