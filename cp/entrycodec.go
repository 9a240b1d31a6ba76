package cp

import (
	"encoding/json"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/core/jsonw"
)

// The log entries of inputs (version 1 of one envelope, version 2 of a
// batch) are the bulk of the log, and every node encodes or decodes each
// one: the leader encodes it, every node decodes it to apply it. The
// generic encoding/json path spends most of its time on reflection and on
// re-validating the envelopes' bodies (json.RawMessage), which core.Wrap
// made with encoding/json just before. The fast paths below write and read
// exactly the bytes encoding/json writes for these two shapes (the tests
// compare them on random envelopes); anything else (an init or member
// entry, a zone offset with seconds, an unusual kind, a body encoding/json
// would rewrite) takes the generic path, which says what is wrong.

// appendInputEntry appends the encoding of a version 1 entry (one
// envelope) or a version 2 batch, as json.Marshal of logEntry writes it.
// ok is false when an envelope does not fit the fast path.
func appendInputEntry(b []byte, envs []core.Envelope) (_ []byte, ok bool) {
	if len(envs) == 1 {
		b = append(b, `{"v":1,"env":`...)
	} else {
		b = append(b, `{"v":2,"batch":[`...)
	}
	for i, e := range envs {
		if i > 0 {
			b = append(b, ',')
		}
		if b, ok = appendEnvelope(b, e); !ok {
			return b, false
		}
	}
	if len(envs) > 1 {
		b = append(b, ']')
	}
	return append(b, '}'), true
}

func appendEnvelope(b []byte, e core.Envelope) ([]byte, bool) {
	// Bodies are made by core.Wrap with encoding/json, so they are valid
	// JSON; compactJSON checks only that json.Marshal would not rewrite one.
	if !plainKind(e.Kind) || !jsonw.PlainTime(e.At) || len(e.Body) == 0 || !compactJSON(e.Body) {
		return b, false
	}
	b = append(b, `{"at":`...)
	b = jsonw.AppendTime(b, e.At)
	b = append(b, `,"kind":"`...)
	b = append(b, e.Kind...)
	b = append(b, `","body":`...)
	b = append(b, e.Body...)
	return append(b, '}'), true
}

// plainKind: an input kind encoding/json writes as is (no escaping).
func plainKind(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// compactJSON: valid JSON with no insignificant white space and none of
// the characters encoding/json escapes in strings (<, >, &, U+2028,
// U+2029), so that json.Marshal of it as a json.RawMessage would copy it
// unchanged. Bodies made by encoding/json always are.
func compactJSON(b []byte) bool {
	var sc strScan
	for i := 0; i < len(b); i++ {
		c := b[i]
		was := sc.in
		if sc.inside(c) {
			if was && (c == '<' || c == '>' || c == '&' ||
				c == 0xE2 && i+2 < len(b) && b[i+1] == 0x80 && (b[i+2] == 0xA8 || b[i+2] == 0xA9)) {
				return false
			}
			continue
		}
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			return false
		}
	}
	return true
}

// strScan follows JSON text byte by byte to tell string bytes from the
// rest.
type strScan struct{ in, esc bool }

// inside reports whether c belongs to a string (its quotes included).
func (s *strScan) inside(c byte) bool {
	switch {
	case s.in && s.esc:
		s.esc = false
	case s.in && c == '\\':
		s.esc = true
	case s.in && c == '"':
		s.in = false
	case s.in:
	case c == '"':
		s.in = true
	default:
		return false
	}
	return true
}

// decodeInputEntry reads a version 1 entry of one envelope or a version 2
// batch in the exact form appendInputEntry (and json.Marshal) writes. ok
// is false for any other entry or form: the caller then decodes it with
// encoding/json, which also says what is wrong with a bad one.
func decodeInputEntry(data []byte) (e logEntry, ok bool) {
	d := entryReader{b: data}
	switch {
	case d.lit(`{"v":1,"env":`):
		env, ok := d.envelope()
		if !ok || !d.lit(`}`) || !d.end() {
			return logEntry{}, false
		}
		return logEntry{V: entryFormatVersion, Env: &env}, true
	case d.lit(`{"v":2,"batch":[`):
		var batch []core.Envelope
		for {
			env, ok := d.envelope()
			if !ok {
				return logEntry{}, false
			}
			batch = append(batch, env)
			if d.lit(`]}`) {
				break
			}
			if !d.lit(`,`) {
				return logEntry{}, false
			}
		}
		if !d.end() {
			return logEntry{}, false
		}
		return logEntry{V: entryBatchFormatVersion, Batch: batch}, true
	}
	return logEntry{}, false
}

type entryReader struct {
	b []byte
	i int
}

func (d *entryReader) lit(s string) bool {
	if len(d.b)-d.i < len(s) || string(d.b[d.i:d.i+len(s)]) != s {
		return false
	}
	d.i += len(s)
	return true
}

func (d *entryReader) end() bool { return d.i == len(d.b) }

// plain reads a string with no escapes up to its closing quote.
func (d *entryReader) plain() (string, bool) {
	for j := d.i; j < len(d.b); j++ {
		switch d.b[j] {
		case '"':
			s := string(d.b[d.i:j])
			d.i = j + 1
			return s, true
		case '\\':
			return "", false
		}
	}
	return "", false
}

func (d *entryReader) envelope() (core.Envelope, bool) {
	var e core.Envelope
	if !d.lit(`{"at":"`) {
		return e, false
	}
	at, ok := d.plain()
	if !ok {
		return e, false
	}
	// Only a UTC time ("Z"): time.Parse then gives exactly what
	// time.Time.UnmarshalJSON gives. An offset may map to the Local zone
	// in one and not the other, so those take the generic path.
	if len(at) == 0 || at[len(at)-1] != 'Z' {
		return e, false
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return e, false
	}
	if !d.lit(`,"kind":"`) {
		return e, false
	}
	kind, ok := d.plain()
	if !ok || !plainKind(kind) || !d.lit(`,"body":`) {
		return e, false
	}
	start := d.i
	if !d.skipValue() {
		return e, false
	}
	body := d.b[start:d.i]
	if len(body) == 0 || body[0] != '{' || !d.lit(`}`) {
		return e, false
	}
	// A copy, as encoding/json makes for a json.RawMessage: the entry's
	// bytes belong to raft.
	e.At, e.Kind, e.Body = t, kind, append(json.RawMessage(nil), body...)
	return e, true
}

// skipValue moves past one JSON value (an object, array, string or
// literal) without checking it. A body is an object; what is inside it is
// checked when it is decoded into its input (core.Envelope.Unwrap), which
// refuses a malformed one and so stops the state machine, as an entry
// encoding/json cannot read does.
func (d *entryReader) skipValue() bool {
	var sc strScan
	depth := 0
	for ; d.i < len(d.b); d.i++ {
		c := d.b[d.i]
		if sc.inside(c) {
			if c == '"' && !sc.in && depth == 0 { // a top-level string closed
				d.i++
				return true
			}
			continue
		}
		switch {
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth == 0 {
				return true // a literal ends here
			}
			depth--
			if depth == 0 {
				d.i++
				return true
			}
		case c == ',' && depth == 0:
			return true // a literal ends here
		}
	}
	return depth == 0 && !sc.in
}
