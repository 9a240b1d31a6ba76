package cp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"

	"pgregory.net/rapid"

	"github.com/fluxforge/fluxforge/internal/jsontest"
	fnet "github.com/fluxforge/fluxforge/net"
)

// The submit bodies' fast decoders (submitjson.go) against encoding/json,
// with the codec harness of package jsontest.

// strictDecode is what fnet.Decode's encoding/json path accepts: one value
// into v, no unknown key, nothing but white space after it.
func strictDecode(text []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data")
	}
	return nil
}

func drawSubmitRequest(t *rapid.T) SubmitRequest {
	q := SubmitRequest{Kind: rapid.OneOf(rapid.SampledFrom([]string{"sleep", "exec"}), jsontest.String).Draw(t, "kind"),
		DurationMS: rapid.Int64().Draw(t, "ms"), Domain: jsontest.String.Draw(t, "domain"),
		Priority:       rapid.OneOf(rapid.SampledFrom([]string{"", "high", "normal", "low"}), jsontest.String).Draw(t, "prio"),
		TimeoutSeconds: rapid.Int().Draw(t, "timeout"), MaxAttempts: rapid.Int().Draw(t, "max")}
	if rapid.Bool().Draw(t, "has_argv") {
		q.Argv = rapid.SliceOfN(jsontest.String, 0, 3).Draw(t, "argv")
	}
	return q
}

// submitCase is one decoder: a random request, and a fresh value to
// decode into.
type submitCase struct {
	draw  func(*rapid.T) any
	fresh func() fnet.FastDecoder
}

var submitCases = map[string]submitCase{
	"submit": {func(t *rapid.T) any { return drawSubmitRequest(t) }, func() fnet.FastDecoder { return new(SubmitRequest) }},
	"batch_task": {func(t *rapid.T) any {
		return BatchTask{SubmitRequest: drawSubmitRequest(t), IdempotencyKey: jsontest.String.Draw(t, "key")}
	}, func() fnet.FastDecoder { return new(BatchTask) }},
}

// checkSubmitDecode: where the fast decoder takes text it makes
// encoding/json's value, where it declines it leaves its value zero, and
// fnet.Decode accepts text, into the same value, exactly when encoding/json
// does. wantFast: text is one encoding/json wrote, which it must take.
func checkSubmitDecode(t interface{ Fatalf(string, ...any) }, c submitCase, text []byte, wantFast bool) {
	ref := c.fresh()
	refErr := strictDecode(text, ref)
	fast := c.fresh()
	switch ok := fast.FastDecodeJSON(text); {
	case !ok && wantFast:
		t.Fatalf("fast decoder declined what encoding/json writes: %s", text)
	case !ok && !reflect.ValueOf(fast).Elem().IsZero():
		t.Fatalf("fast decoder declined %q but changed its value: %+v", text, fast)
	case ok && (refErr != nil || !reflect.DeepEqual(fast, ref)):
		t.Fatalf("fast decoder took %q as %+v; encoding/json: %+v (%v)", text, fast, ref, refErr)
	}
	got := c.fresh()
	err := fnet.Decode(bytes.NewReader(text), fnet.BodyMax, got)
	if (err == nil) != (refErr == nil) || err == nil && !reflect.DeepEqual(got, ref) {
		t.Fatalf("fnet.Decode of %q: %+v (%v); encoding/json: %+v (%v)", text, got, err, ref, refErr)
	}
}

// TestSubmitDecodersMatchEncodingJSON: random requests, as fnet.Encode and
// json.Marshal write them, decode fast into encoding/json's values; random
// mutations of their text (key order, repeated, unknown and recased keys,
// white space and bytes that are not, escapes, nulls, odd numbers, wrong
// types, truncation, trailing data) are taken only into encoding/json's
// values.
func TestSubmitDecodersMatchEncodingJSON(t *testing.T) {
	for name, c := range submitCases {
		t.Run(name, func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				v := c.draw(t)
				marshaled, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				for _, text := range [][]byte{fnet.Encode(v), marshaled} {
					checkSubmitDecode(t, c, text, true)
				}
				checkSubmitDecode(t, c, jsontest.Mutate(t, marshaled), false)
			})
		})
	}
}

// TestSubmitDecodersKnowEveryField: a request with every field set (by
// reflection, so a field added later is set too) decodes fast unchanged.
func TestSubmitDecodersKnowEveryField(t *testing.T) {
	for name, c := range submitCases {
		want := c.fresh()
		jsontest.Fill(reflect.ValueOf(want).Elem())
		text, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.fresh(); !got.FastDecodeJSON(text) || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: fast decoding of %s: %+v, want %+v", name, text, got, want)
		}
	}
}

// FuzzSubmitDecoders: the submit bodies' fast decoders take any body only
// into encoding/json's value (see checkSubmitDecode).
//
//	go test -run '^$' -fuzz '^FuzzSubmitDecoders$' -fuzztime 60s ./cp/
func FuzzSubmitDecoders(f *testing.F) {
	for _, seed := range []string{
		`{"kind":"sleep","duration_ms":0}`,
		`{"kind":"exec","argv":["/bin/echo","\u003chi\u003e"],"domain":"z1","priority":"high","timeout_seconds":10,"max_attempts":3,"idempotency_key":"k1"}`,
		`{"kind":"sleep","argv":null,"duration_ms":1e3}`,
		`{"kind":"sleep","Kind":"exec"}`,
		`{"kind":"sleep","priority":null}`,
		`{"kind":"sleep","max_attempts":1000000000000000000000}`,
		`{"kind":"sleep","argv":["a"],"argv":["b"]}`,
		`{"kind":"\ud800"}`,
		`{"kind":"sleep"} {}`,
		` {"kind":"sleep"}` + "\n",
		`[]`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, name := range []string{"submit", "batch_task"} {
			checkSubmitDecode(t, submitCases[name], body, false)
		}
	})
}

// slowSubmit decodes as a SubmitRequest does but through encoding/json
// alone: the field named FastDecodeJSON hides the promoted method.
type slowSubmit struct {
	SubmitRequest
	FastDecodeJSON struct{} `json:"-"`
}

// BenchmarkSubmitDecode: a typical submit body (a load test's sleep) and
// an exec with every member, decoded by fnet.Decode from a reader as the
// handler does, with the fast path and with encoding/json alone.
//
//	go test -run '^$' -bench SubmitDecode -benchmem ./cp/
func BenchmarkSubmitDecode(b *testing.B) {
	for name, body := range map[string]string{
		"sleep": `{"kind":"sleep","duration_ms":0}`,
		"exec":  `{"kind":"exec","argv":["/usr/bin/backup","--bucket","s3://b/x"],"domain":"zone-a","priority":"high","timeout_seconds":600,"max_attempts":3}`,
	} {
		text := []byte(body)
		b.Run(name+"/fast", func(b *testing.B) {
			for b.Loop() {
				var q SubmitRequest
				if err := fnet.Decode(bytes.NewReader(text), fnet.BodyMax, &q); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/json", func(b *testing.B) {
			for b.Loop() {
				var q slowSubmit
				if err := fnet.Decode(bytes.NewReader(text), fnet.BodyMax, &q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
