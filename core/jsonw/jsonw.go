// Package jsonw appends JSON values exactly as encoding/json writes them,
// for the few hot encoders that skip its reflection (log entries, timeline
// lines, task views, the agent protocol's messages). Each user has a test
// comparing its output with encoding/json's on random values. It lives
// under core, beside its twin core/jsonr, because core's Envelope.Wrap
// uses it and core imports nothing but the standard library and its own
// packages.
package jsonw

import (
	"time"
	"unicode/utf8"
)

const hex = "0123456789abcdef"

// AppendString appends s as a JSON string as encoding/json writes it: \"
// \\ \n \r \t \b \f, other control characters as \u00XX, U+2028 and
// U+2029 as \u2028 and \u2029, invalid UTF-8 as \ufffd, and with
// escapeHTML <, > and & as \u003c, \u003e and \u0026 (json.Marshal and a
// default json.Encoder escape them; SetEscapeHTML(false) does not).
func AppendString(b []byte, s string, escapeHTML bool) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && (!escapeHTML || c != '<' && c != '>' && c != '&') {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// PlainTime reports whether time.Time.MarshalJSON writes t as
// AppendTime does (a year from 0 to 9999 in its zone, an offset in whole
// minutes); for other times it fails or differs, and callers fall back to
// encoding/json.
func PlainTime(t time.Time) bool {
	if y := t.Year(); y < 0 || y > 9999 {
		return false
	}
	_, off := t.Zone()
	return off%60 == 0 && off > -24*3600 && off < 24*3600
}

// AppendTime appends t quoted in RFC 3339 with nanoseconds, as
// time.Time.MarshalJSON does for a PlainTime.
func AppendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// Array appends xs as a JSON array, each element written by each: the
// writing twin of jsonr.Array.
func Array[T any](b []byte, xs []T, each func([]byte, *T) []byte) []byte {
	b = append(b, '[')
	for i := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		b = each(b, &xs[i])
	}
	return append(b, ']')
}
