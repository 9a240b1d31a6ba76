package core

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"
)

// The state codec: a small, deterministic, lossless binary encoding of plain
// Go values, driven by reflection over the export types of export.go.
//
// Why not encoding/json or encoding/gob: JSON replaces invalid UTF-8 in
// strings (an output tail cut inside a rune, an agent's error) with U+FFFD,
// so a restored control plane would differ from the original; gob numbers
// the types it sends from a process-wide counter, so two processes can
// encode the same state to different bytes, and a state hash must not
// depend on what else a process encoded first.
//
// Encoding: bool as one byte; signed integers as zig-zag varints, unsigned
// ones as varints; floats as their IEEE 754 bits, 8 bytes little endian
// (exact); strings and byte slices as a varint length and the bytes as they
// are; slices as a varint length and the elements; arrays as their
// elements; pointers as a presence byte and the element; structs as their
// fields in declaration order, skipping fields tagged json:"-" (FaultPoints);
// maps with string or integer keys as a varint count and the pairs in key
// order (a nil map decodes as an empty one);
// time.Time as a varint length and its MarshalBinary form (instant and zone
// offset; no monotonic reading). Interfaces are refused: the value does not
// determine their type.
//
// The encoding has no type information. What the bytes mean is fixed by the
// Go types, so the header carries a fingerprint of the layout of those
// types (stateLayout): a core whose types differ refuses the export rather
// than misreading it, and a test pins the fingerprint of each format
// version so that changing a type without a new version fails.

var timeType = reflect.TypeFor[time.Time]()

type stateEncoder struct {
	buf    []byte
	fields fieldCache
	encs   map[reflect.Type]encFn // writers by type (encoderOf), for one encoding
}

// fieldCache holds, per struct type, the indexes of the fields the codec
// writes. It lives as long as one encoding or decoding (no shared state).
type fieldCache map[reflect.Type][]int

func (c *fieldCache) of(t reflect.Type) ([]int, error) {
	if idx, ok := (*c)[t]; ok {
		return idx, nil
	}
	if *c == nil {
		*c = fieldCache{}
	}
	idx := []int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if skipStateField(f) {
			continue
		}
		if !f.IsExported() {
			return nil, fmt.Errorf("state codec: unexported field %s.%s", t, f.Name)
		}
		idx = append(idx, i)
	}
	(*c)[t] = idx
	return idx, nil
}

func (e *stateEncoder) uvarint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }

func (e *stateEncoder) bytes(b []byte) {
	e.uvarint(uint64(len(b)))
	e.buf = append(e.buf, b...)
}

// value writes v.
func (e *stateEncoder) value(v reflect.Value) error {
	fn, err := e.encoderOf(v.Type())
	if err != nil {
		return err
	}
	return fn(e, v)
}

// encFn writes a value of one type.
type encFn func(e *stateEncoder, v reflect.Value) error

// encoderOf returns the writer of type t, built once per encoding: the
// kind switch, the struct fields to write and the element writers are
// resolved per type, not per value. The bytes are those the encoding
// described above defines (TestExportEqualsReferenceEncoding).
func (e *stateEncoder) encoderOf(t reflect.Type) (encFn, error) {
	if fn, ok := e.encs[t]; ok {
		return fn, nil
	}
	if e.encs == nil {
		e.encs = map[reflect.Type]encFn{}
	}
	// A recursive type finds this indirection while its writer is built.
	var built encFn
	e.encs[t] = func(e *stateEncoder, v reflect.Value) error { return built(e, v) }
	fn, err := e.buildEncoder(t)
	if err != nil {
		delete(e.encs, t)
		return nil, err
	}
	built = fn
	e.encs[t] = fn
	return fn, nil
}

func (e *stateEncoder) buildEncoder(t reflect.Type) (encFn, error) {
	switch t.Kind() {
	case reflect.Bool:
		return func(e *stateEncoder, v reflect.Value) error {
			if v.Bool() {
				e.buf = append(e.buf, 1)
			} else {
				e.buf = append(e.buf, 0)
			}
			return nil
		}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return func(e *stateEncoder, v reflect.Value) error {
			e.buf = binary.AppendVarint(e.buf, v.Int())
			return nil
		}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return func(e *stateEncoder, v reflect.Value) error {
			e.uvarint(v.Uint())
			return nil
		}, nil
	case reflect.Float32, reflect.Float64:
		return func(e *stateEncoder, v reflect.Value) error {
			e.buf = binary.LittleEndian.AppendUint64(e.buf, math.Float64bits(v.Float()))
			return nil
		}, nil
	case reflect.String:
		return func(e *stateEncoder, v reflect.Value) error {
			s := v.String()
			e.uvarint(uint64(len(s)))
			e.buf = append(e.buf, s...)
			return nil
		}, nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return func(e *stateEncoder, v reflect.Value) error {
				e.bytes(v.Bytes())
				return nil
			}, nil
		}
		elem, err := e.encoderOf(t.Elem())
		if err != nil {
			return nil, err
		}
		return func(e *stateEncoder, v reflect.Value) error {
			n := v.Len()
			e.uvarint(uint64(n))
			for i := range n {
				if err := elem(e, v.Index(i)); err != nil {
					return err
				}
			}
			return nil
		}, nil
	case reflect.Array:
		elem, err := e.encoderOf(t.Elem())
		if err != nil {
			return nil, err
		}
		return func(e *stateEncoder, v reflect.Value) error {
			for i := range v.Len() {
				if err := elem(e, v.Index(i)); err != nil {
					return err
				}
			}
			return nil
		}, nil
	case reflect.Map:
		if err := sortMapKeys(t, nil); err != nil {
			return nil, err
		}
		key, err := e.encoderOf(t.Key())
		if err != nil {
			return nil, err
		}
		elem, err := e.encoderOf(t.Elem())
		if err != nil {
			return nil, err
		}
		return func(e *stateEncoder, v reflect.Value) error {
			keys := v.MapKeys()
			if err := sortMapKeys(t, keys); err != nil {
				return err
			}
			e.uvarint(uint64(len(keys)))
			for _, k := range keys {
				if err := key(e, k); err != nil {
					return err
				}
				if err := elem(e, v.MapIndex(k)); err != nil {
					return err
				}
			}
			return nil
		}, nil
	case reflect.Pointer:
		elem, err := e.encoderOf(t.Elem())
		if err != nil {
			return nil, err
		}
		return func(e *stateEncoder, v reflect.Value) error {
			if v.IsNil() {
				e.buf = append(e.buf, 0)
				return nil
			}
			e.buf = append(e.buf, 1)
			return elem(e, v.Elem())
		}, nil
	case reflect.Struct:
		if t == timeType {
			return (*stateEncoder).time, nil
		}
		idx, err := e.fields.of(t)
		if err != nil {
			return nil, err
		}
		fns := make([]encFn, len(idx))
		for j, i := range idx {
			if fns[j], err = e.encoderOf(t.Field(i).Type); err != nil {
				return nil, err
			}
		}
		return func(e *stateEncoder, v reflect.Value) error {
			for j, i := range idx {
				if err := fns[j](e, v.Field(i)); err != nil {
					return err
				}
			}
			return nil
		}, nil
	}
	return nil, fmt.Errorf("state codec: cannot encode %s (%s)", t, t.Kind())
}

// time writes a time.Time as its MarshalBinary form with a length prefix,
// without copying the time to the heap (an addressable one is read through
// its address) nor allocating the form: AppendBinary writes it in place,
// behind a one-byte length (the form is 15 or 16 bytes).
func (e *stateEncoder) time(v reflect.Value) error {
	var t time.Time
	if v.CanAddr() {
		t = *v.Addr().Interface().(*time.Time)
	} else {
		t = v.Interface().(time.Time)
	}
	at := len(e.buf)
	b, err := t.AppendBinary(append(e.buf, 0))
	if err != nil {
		e.buf = e.buf[:at]
		return err
	}
	n := len(b) - at - 1
	if n < 0x80 {
		b[at] = byte(n)
		e.buf = b
		return nil
	}
	form := slices.Clone(b[at+1:]) // a longer form needs a longer prefix
	e.buf = b[:at]
	e.bytes(form)
	return nil
}

// sortMapKeys sorts keys of a map type whose keys are strings or integers.
func sortMapKeys(t reflect.Type, keys []reflect.Value) error {
	switch t.Key().Kind() {
	case reflect.String:
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		slices.SortFunc(keys, func(a, b reflect.Value) int { return cmp.Compare(a.Int(), b.Int()) })
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		slices.SortFunc(keys, func(a, b reflect.Value) int { return cmp.Compare(a.Uint(), b.Uint()) })
	default:
		return fmt.Errorf("state codec: cannot encode %s: keys must be strings or integers", t)
	}
	return nil
}

func skipStateField(f reflect.StructField) bool { return f.Tag.Get("json") == "-" }

type stateDecoder struct {
	buf    []byte
	off    int
	fields fieldCache
}

var errStateTruncated = fmt.Errorf("%w: state export is truncated or corrupt", ErrInvalid)

func (d *stateDecoder) uvarint() (uint64, error) {
	v, n := binary.Uvarint(d.buf[d.off:])
	if n <= 0 {
		return 0, errStateTruncated
	}
	d.off += n
	return v, nil
}

// length reads a length and checks that at least min bytes per element
// remain, so corrupt input cannot make the decoder allocate without bound.
func (d *stateDecoder) length(min int) (int, error) {
	n, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(len(d.buf)-d.off)/uint64(max(min, 1)) {
		return 0, errStateTruncated
	}
	return int(n), nil
}

func (d *stateDecoder) bytes() ([]byte, error) {
	n, err := d.length(1)
	if err != nil {
		return nil, err
	}
	b := d.buf[d.off : d.off+n]
	d.off += n
	return b, nil
}

func (d *stateDecoder) byte1() (byte, error) {
	if d.off >= len(d.buf) {
		return 0, errStateTruncated
	}
	b := d.buf[d.off]
	d.off++
	return b, nil
}

func (d *stateDecoder) value(v reflect.Value) error {
	switch v.Kind() {
	case reflect.Bool:
		b, err := d.byte1()
		if err != nil {
			return err
		}
		if b > 1 {
			return errStateTruncated
		}
		v.SetBool(b == 1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		x, n := binary.Varint(d.buf[d.off:])
		if n <= 0 || v.OverflowInt(x) {
			return errStateTruncated
		}
		d.off += n
		v.SetInt(x)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		x, err := d.uvarint()
		if err != nil {
			return err
		}
		if v.OverflowUint(x) {
			return errStateTruncated
		}
		v.SetUint(x)
	case reflect.Float32, reflect.Float64:
		if len(d.buf)-d.off < 8 {
			return errStateTruncated
		}
		v.SetFloat(math.Float64frombits(binary.LittleEndian.Uint64(d.buf[d.off:])))
		d.off += 8
	case reflect.String:
		b, err := d.bytes()
		if err != nil {
			return err
		}
		v.SetString(string(b))
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			b, err := d.bytes()
			if err != nil {
				return err
			}
			v.SetBytes(append([]byte(nil), b...))
			return nil
		}
		n, err := d.length(1)
		if err != nil {
			return err
		}
		if n == 0 {
			v.SetZero()
			return nil
		}
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			if err := d.value(s.Index(i)); err != nil {
				return err
			}
		}
		v.Set(s)
	case reflect.Array:
		for i := range v.Len() {
			if err := d.value(v.Index(i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		n, err := d.length(2)
		if err != nil {
			return err
		}
		m := reflect.MakeMapWithSize(v.Type(), n)
		for range n {
			k := reflect.New(v.Type().Key()).Elem()
			e := reflect.New(v.Type().Elem()).Elem()
			if err := d.value(k); err != nil {
				return err
			}
			if err := d.value(e); err != nil {
				return err
			}
			if m.MapIndex(k).IsValid() {
				return errStateTruncated
			}
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Pointer:
		b, err := d.byte1()
		if err != nil {
			return err
		}
		switch b {
		case 0:
			v.SetZero()
		case 1:
			p := reflect.New(v.Type().Elem())
			if err := d.value(p.Elem()); err != nil {
				return err
			}
			v.Set(p)
		default:
			return errStateTruncated
		}
	case reflect.Struct:
		if v.Type() == timeType {
			b, err := d.bytes()
			if err != nil {
				return err
			}
			var t time.Time
			if err := t.UnmarshalBinary(b); err != nil {
				return fmt.Errorf("%w: state export: bad time: %v", ErrInvalid, err)
			}
			v.Set(reflect.ValueOf(t))
			return nil
		}
		idx, err := d.fields.of(v.Type())
		if err != nil {
			return err
		}
		for _, i := range idx {
			if err := d.value(v.Field(i)); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("state codec: cannot decode %s (%s)", v.Type(), v.Kind())
	}
	return nil
}

// stateLayout describes t's encoding: kinds, field names and element types,
// recursively. Its hash is the layout fingerprint in an export's header.
func stateLayout(t reflect.Type) string {
	var sb strings.Builder
	var walk func(t reflect.Type, seen map[reflect.Type]bool)
	walk = func(t reflect.Type, seen map[reflect.Type]bool) {
		switch t.Kind() {
		case reflect.Slice:
			sb.WriteString("[]")
			walk(t.Elem(), seen)
		case reflect.Array:
			fmt.Fprintf(&sb, "[%d]", t.Len())
			walk(t.Elem(), seen)
		case reflect.Pointer:
			sb.WriteString("*")
			walk(t.Elem(), seen)
		case reflect.Map:
			sb.WriteString("map[")
			walk(t.Key(), seen)
			sb.WriteString("]")
			walk(t.Elem(), seen)
		case reflect.Struct:
			if t == timeType {
				sb.WriteString("time")
				return
			}
			if seen[t] {
				sb.WriteString(t.Name())
				return
			}
			seen[t] = true
			sb.WriteString(t.Name() + "{")
			for i := range t.NumField() {
				f := t.Field(i)
				if skipStateField(f) {
					continue
				}
				sb.WriteString(f.Name + " ")
				walk(f.Type, seen)
				sb.WriteString(";")
			}
			sb.WriteString("}")
			delete(seen, t)
		default:
			sb.WriteString(t.Kind().String())
		}
	}
	walk(t, map[reflect.Type]bool{})
	return sb.String()
}

func layoutFingerprint(t reflect.Type) string {
	sum := sha256.Sum256([]byte(stateLayout(t)))
	return hex.EncodeToString(sum[:8])
}
