package core

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// refEncoder is the state codec's encoder as first written: plain
// reflection over stateV2, one value at a time. Export is tuned for speed
// (it streams the tasks, writes times without boxing them); it must still
// write exactly these bytes, since a state hash must not change with the
// code that computes it.
type refEncoder struct{ buf []byte }

func (e *refEncoder) uvarint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }

func (e *refEncoder) bytes(b []byte) {
	e.uvarint(uint64(len(b)))
	e.buf = append(e.buf, b...)
}

func (e *refEncoder) value(v reflect.Value) error {
	switch v.Kind() {
	case reflect.Bool:
		if v.Bool() {
			e.buf = append(e.buf, 1)
		} else {
			e.buf = append(e.buf, 0)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.buf = binary.AppendVarint(e.buf, v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.uvarint(v.Uint())
	case reflect.Float32, reflect.Float64:
		e.buf = binary.LittleEndian.AppendUint64(e.buf, math.Float64bits(v.Float()))
	case reflect.String:
		e.uvarint(uint64(v.Len()))
		e.buf = append(e.buf, v.String()...)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			e.bytes(v.Bytes())
			return nil
		}
		e.uvarint(uint64(v.Len()))
		for i := range v.Len() {
			if err := e.value(v.Index(i)); err != nil {
				return err
			}
		}
	case reflect.Array:
		for i := range v.Len() {
			if err := e.value(v.Index(i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		keys := v.MapKeys()
		if err := sortMapKeys(v.Type(), keys); err != nil {
			return err
		}
		e.uvarint(uint64(len(keys)))
		for _, k := range keys {
			if err := e.value(k); err != nil {
				return err
			}
			if err := e.value(v.MapIndex(k)); err != nil {
				return err
			}
		}
	case reflect.Pointer:
		if v.IsNil() {
			e.buf = append(e.buf, 0)
			return nil
		}
		e.buf = append(e.buf, 1)
		return e.value(v.Elem())
	case reflect.Struct:
		if v.Type() == timeType {
			b, err := v.Interface().(time.Time).MarshalBinary()
			if err != nil {
				return err
			}
			e.bytes(b)
			return nil
		}
		for i := range v.NumField() {
			if skipStateField(v.Type().Field(i)) {
				continue
			}
			if err := e.value(v.Field(i)); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("cannot encode %s", v.Type())
	}
	return nil
}

func refExport(tb rapid.TB, cp *ControlPlane) []byte {
	s := cp.exportState()
	e := &refEncoder{}
	e.buf = append(e.buf, stateMagic...)
	e.uvarint(StateFormatVersion)
	e.bytes([]byte(stateV2Fingerprint))
	if err := e.value(reflect.ValueOf(&s).Elem()); err != nil {
		tb.Fatalf("reference export: %v", err)
	}
	return e.buf
}

// TestExportEqualsReferenceEncoding: Export writes the bytes of the plain
// reflective encoding of exportState, for states of every kind the export
// driver reaches (times with and without zone offsets, empty and nil
// slices, maps, pointers).
func TestExportEqualsReferenceEncoding(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		d := newExportDriver(t)
		d.run()
		got, want := mustExport(t, d.cp), refExport(t, d.cp)
		if !bytes.Equal(got, want) {
			t.Fatalf("export differs from the reference encoding (%d vs %d bytes)", len(got), len(want))
		}
	})
}

// TestExportEqualsReferenceEncodingLarge: the same on the benchmark's
// state (1,000 agents, 12,000 tasks, a full timeline), and with times in
// a zone other than UTC.
func TestExportEqualsReferenceEncodingLarge(t *testing.T) {
	cp := exportBenchStateTB(t, time.Time{})
	if got, want := mustExport(t, cp), refExport(t, cp); !bytes.Equal(got, want) {
		t.Fatalf("export differs from the reference encoding (%d vs %d bytes)", len(got), len(want))
	}
	cp = exportBenchStateTB(t, testEpoch.In(time.FixedZone("X", 5*3600+30*60)))
	if got, want := mustExport(t, cp), refExport(t, cp); !bytes.Equal(got, want) {
		t.Fatalf("zoned: export differs from the reference encoding (%d vs %d bytes)", len(got), len(want))
	}
}
