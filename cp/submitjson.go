package cp

import "github.com/fluxforge/fluxforge/core/jsonr"

// A submission's body is decoded on every POST /v1/tasks and for every
// task of a batch, and encoding/json's reflection for it was the hottest
// JSON left in the cp's profile (a single submit's decode ~7% of its CPU
// under load). SubmitRequest and BatchTask are fnet.FastDecoders: fnet.Decode
// reads the body whole and hands it to FastDecodeJSON, which makes exactly
// the value encoding/json makes of it or gives up (see core/jsonr: null, a
// fraction, an exponent, an out of range number, an unknown, repeated or
// differently cased key, an escape encoding/json rewrites); then
// encoding/json decodes the same bytes, so every answer and every error
// text is unchanged. The tests (submitjson_test.go) compare it with
// encoding/json on random requests and on random mutations of their text,
// and fill every field by reflection, so a field added to SubmitRequest or
// BatchTask without its case here fails them.

// FastDecodeJSON implements fnet.FastDecoder.
func (q *SubmitRequest) FastDecodeJSON(data []byte) bool {
	var v SubmitRequest
	var seen uint64
	r := jsonr.New(data)
	r.Byte('{')
	for n := 0; r.More(n, '}'); n++ {
		if !v.readMember(&r, r.Key(), &seen) {
			r.Fail()
		}
	}
	if !r.End() {
		return false
	}
	*q = v
	return true
}

// FastDecodeJSON implements fnet.FastDecoder.
func (t *BatchTask) FastDecodeJSON(data []byte) bool {
	var v BatchTask
	var seen uint64
	r := jsonr.New(data)
	r.Byte('{')
	for n := 0; r.More(n, '}'); n++ {
		key := r.Key()
		switch {
		case string(key) == "idempotency_key":
			r.Once(&seen, submitRequestMembers)
			v.IdempotencyKey = r.String()
		case !v.readMember(&r, key, &seen):
			r.Fail()
		}
	}
	if !r.End() {
		return false
	}
	*t = v
	return true
}

// submitRequestMembers is the number of SubmitRequest's members: the bits
// of seen below it are theirs.
const submitRequestMembers = 7

// readMember reads the value of q's member key from r and reports whether
// q has that member; seen marks the members read (jsonr.Reader.Once).
func (q *SubmitRequest) readMember(r *jsonr.Reader, key []byte, seen *uint64) bool {
	switch string(key) {
	case "kind":
		r.Once(seen, 0)
		q.Kind = r.String()
	case "argv":
		r.Once(seen, 1)
		q.Argv = jsonr.Array(r, func(a *string, r *jsonr.Reader) { *a = r.String() })
	case "duration_ms":
		r.Once(seen, 2)
		q.DurationMS = r.Int64()
	case "domain":
		r.Once(seen, 3)
		q.Domain = r.String()
	case "priority":
		r.Once(seen, 4)
		q.Priority = r.String()
	case "timeout_seconds":
		r.Once(seen, 5)
		q.TimeoutSeconds = r.Int()
	case "max_attempts":
		r.Once(seen, 6)
		q.MaxAttempts = r.Int()
	default:
		return false
	}
	return true
}
