// Package jsontest is the test harness of the reflection-free JSON codecs
// (core/jsonr, core/jsonw and their users in core, net and cp): strings
// that stress a codec, random mutations of a JSON text and values with
// every field set. Each codec's tests compare it with encoding/json on
// what these make; the harness is shared so that every codec is tested
// against the same mutations.
package jsontest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"pgregory.net/rapid"

	"github.com/fluxforge/fluxforge/core/jsonw"
)

// String draws strings that stress a JSON codec: short plain ones, any
// Unicode, the runes encoding/json escapes or rewrites, and any bytes.
var String = rapid.OneOf(
	rapid.StringMatching(`[a-z0-9.-]{0,12}`),
	rapid.String(),
	rapid.StringOf(rapid.RuneFrom([]rune{'"', '\\', '/', '<', '>', '&', '\u2028', '\u2029', '\ufffd', 'é', '😀', 'a', ' ', '\n', '\t', 0, 0x1f, 0x7f})),
	// Any bytes, invalid UTF-8 too (encoders write \ufffd for it).
	rapid.Custom(func(t *rapid.T) string { return string(rapid.SliceOfN(rapid.Byte(), 0, 8).Draw(t, "bytes")) }),
)

// jnode is a JSON value as a tree that keeps the order of object keys, for
// mutations.
type jnode struct {
	kind byte // '{', '[', '"' or 'l' (a number or literal, raw)
	text string
	keys []string
	vals []*jnode
}

func parseTree(dec *json.Decoder) *jnode {
	tok, err := dec.Token()
	if err != nil {
		panic(err)
	}
	switch v := tok.(type) {
	case json.Delim:
		n := &jnode{kind: byte(v)}
		for dec.More() {
			if n.kind == '{' {
				k, _ := dec.Token()
				n.keys = append(n.keys, k.(string))
			}
			n.vals = append(n.vals, parseTree(dec))
		}
		dec.Token() // the closing delimiter
		return n
	case string:
		return &jnode{kind: '"', text: v}
	case json.Number:
		return &jnode{kind: 'l', text: v.String()}
	case bool:
		return &jnode{kind: 'l', text: fmt.Sprint(v)}
	}
	return &jnode{kind: 'l', text: "null"}
}

func (n *jnode) all(out []*jnode) []*jnode {
	out = append(out, n)
	for _, v := range n.vals {
		out = v.all(out)
	}
	return out
}

var oddValues = []string{"null", "0", "-0", "1", "-1", "1.5", "1e2", "1E+0", "0.0", "01", "-", "255", "128", "-129",
	"2147483648", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
	"18446744073709551615", "18446744073709551616", "true", "false", `""`, `"x"`, `"normal"`, `"low"`, `"HIGH"`,
	`"2026-01-01T00:00:00Z"`, `"2026-01-01T00:00:00.5+01:00"`, `"2026-13-01T00:00:00Z"`, `"\u00e9"`, `"\ud83d\ude00"`,
	`"\ud800"`, `"a\/b"`, "{}", "[]", "[{}]", `[""]`, `{"task_id":"t","attempt":1}`, "nul", "tru"}

// Mutate draws a mutation of the JSON text: the tree changed, written back
// with random white space and string escapes, then perhaps damaged byte by
// byte.
func Mutate(t *rapid.T, text []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	root := parseTree(dec)
	for range rapid.IntRange(0, 3).Draw(t, "mutations") {
		nodes := root.all(nil)
		n := nodes[rapid.IntRange(0, len(nodes)-1).Draw(t, "node")]
		switch rapid.IntRange(0, 6).Draw(t, "mutation") {
		case 0: // reorder an object's keys
			if n.kind == '{' {
				for i := len(n.keys) - 1; i > 0; i-- {
					j := rapid.IntRange(0, i).Draw(t, "swap")
					n.keys[i], n.keys[j] = n.keys[j], n.keys[i]
					n.vals[i], n.vals[j] = n.vals[j], n.vals[i]
				}
			}
		case 1: // repeat a key
			if n.kind == '{' && len(n.keys) > 0 {
				i := rapid.IntRange(0, len(n.keys)-1).Draw(t, "dup")
				v := n.vals[i]
				if rapid.Bool().Draw(t, "dup_other") {
					v = &jnode{kind: 'l', text: rapid.SampledFrom(oddValues).Draw(t, "dup_value")}
				}
				n.keys, n.vals = append(n.keys, n.keys[i]), append(n.vals, v)
			}
		case 2: // an unknown key, or a known one cased otherwise
			if n.kind == '{' {
				k := rapid.SampledFrom([]string{"x", "Agent_ID", "SEQ", "Task_Id", "attempt ", "évil", "KIND", "idempotency_key", "by"}).Draw(t, "key")
				if len(n.keys) > 0 && rapid.Bool().Draw(t, "recase") {
					i := rapid.IntRange(0, len(n.keys)-1).Draw(t, "recase_i")
					n.keys[i] = strings.ToUpper(n.keys[i][:1]) + n.keys[i][1:]
					break
				}
				n.keys, n.vals = append(n.keys, k), append(n.vals, &jnode{kind: 'l', text: "1"})
			}
		case 3: // drop a member or an element
			if len(n.vals) > 0 {
				i := rapid.IntRange(0, len(n.vals)-1).Draw(t, "drop")
				n.vals = append(n.vals[:i], n.vals[i+1:]...)
				if n.kind == '{' {
					n.keys = append(n.keys[:i], n.keys[i+1:]...)
				}
			}
		default: // another value
			if n != root || rapid.IntRange(0, 9).Draw(t, "root") == 0 {
				*n = jnode{kind: 'l', text: rapid.SampledFrom(oddValues).Draw(t, "value")}
			}
		}
	}
	var b []byte
	b = writeTree(t, b, root)
	b = ws(t, b)
	switch rapid.IntRange(0, 9).Draw(t, "damage") {
	case 0:
		b = b[:rapid.IntRange(0, len(b)).Draw(t, "cut")]
	case 1:
		i := rapid.IntRange(0, len(b)).Draw(t, "at")
		c := rapid.SampledFrom([]byte(`{}[]:,"\ 0-.eE`+"\x00\x01\x7f\x80\xff\v\xc2\xa0")).Draw(t, "byte")
		b = append(b[:i], append([]byte{c}, b[i:]...)...)
	case 2:
		if len(b) > 0 {
			i := rapid.IntRange(0, len(b)-1).Draw(t, "del")
			b = append(b[:i], b[i+1:]...)
		}
	case 3:
		b = append(b, rapid.SampledFrom([]string{"x", "{}", "null", " \n", "\x00"}).Draw(t, "trailing")...)
	}
	return b
}

// ws appends JSON white space, rarely a byte that is not.
func ws(t *rapid.T, b []byte) []byte {
	switch rapid.IntRange(0, 5).Draw(t, "ws") {
	case 0:
		return append(b, rapid.SampledFrom([]string{" ", "\t", "\n", "\r", " \r\n\t "}).Draw(t, "wsb")...)
	case 1:
		if rapid.IntRange(0, 20).Draw(t, "badws") == 0 {
			return append(b, rapid.SampledFrom([]string{"\v", "\f", "\xc2\xa0", "\x00"}).Draw(t, "badwsb")...)
		}
	}
	return b
}

func writeTree(t *rapid.T, b []byte, n *jnode) []byte {
	b = ws(t, b)
	switch n.kind {
	case '"':
		return writeString(t, b, n.text)
	case 'l':
		return append(b, n.text...)
	}
	end := byte(']')
	if n.kind == '{' {
		end = '}'
	}
	b = append(b, n.kind)
	for i, v := range n.vals {
		if i > 0 {
			b = ws(t, b)
			b = append(b, ',')
		}
		if n.kind == '{' {
			b = ws(t, b)
			b = writeString(t, b, n.keys[i])
			b = ws(t, b)
			b = append(b, ':')
		}
		b = writeTree(t, b, v)
	}
	b = ws(t, b)
	return append(b, end)
}

// writeString writes s as encoding/json does (with or without HTML
// escapes), with every rune escaped (surrogate pairs beyond the BMP), \/,
// or with a stray byte of invalid UTF-8.
func writeString(t *rapid.T, b []byte, s string) []byte {
	switch rapid.IntRange(0, 5).Draw(t, "escape") {
	case 0:
		return jsonw.AppendString(b, s, true)
	case 1:
		b = append(b, '"')
		for _, r := range s {
			if r > 0xFFFF {
				r -= 0x10000
				b = fmt.Appendf(b, `\u%04x\u%04X`, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
				continue
			}
			b = fmt.Appendf(b, `\u%04x`, r)
		}
		return append(b, '"')
	case 2:
		return bytes.ReplaceAll(jsonw.AppendString(b, s, false), []byte("/"), []byte(`\/`))
	case 3:
		q := jsonw.AppendString(nil, s, false)
		i := rapid.IntRange(1, len(q)-1).Draw(t, "stray")
		return append(b, append(append(q[:i:i], rapid.SampledFrom([]byte{0x80, 0xc3, 0xed, 0xff}).Draw(t, "bad")), q[i:]...)...)
	}
	return jsonw.AppendString(b, s, false)
}

// Fill sets every field of v to a nonzero value (found by reflection, so
// a field added later is set too): a fast codec that does not know a field
// fails its every-field test rather than dropping it.
func Fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)))
			return
		}
		for i := range v.NumField() {
			Fill(v.Field(i))
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		Fill(v.Elem())
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		Fill(v.Index(0))
		Fill(v.Index(1))
	case reflect.String:
		v.SetString("s")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(2) // 2 is a valid core.Priority (low)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(3)
	default:
		panic("fill: " + v.Kind().String())
	}
}
