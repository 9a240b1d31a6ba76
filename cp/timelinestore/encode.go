package timelinestore

import (
	"strconv"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/core/jsonw"
)

// appendEvent appends e as json.Encoder writes it (HTML escaping on, a
// newline after): every applied entry's events are written here on every
// node, and encoding/json's reflection was a fifth of applying an entry.
// The test compares the two on random events.
func appendEvent(b []byte, e core.Event) ([]byte, error) {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"time":`...)
	if jsonw.PlainTime(e.Time) {
		b = jsonw.AppendTime(b, e.Time)
	} else {
		// encoding/json writes it, or says why it cannot.
		t, err := e.Time.MarshalJSON()
		if err != nil {
			return nil, err
		}
		b = append(b, t...)
	}
	b = appendField(b, "kind", e.Kind, false)
	b = appendField(b, "type", string(e.Type), false)
	b = appendField(b, "task_id", string(e.TaskID), true)
	b = appendField(b, "agent_id", string(e.AgentID), true)
	b = appendField(b, "domain", e.Domain, true)
	if e.Attempt != 0 {
		b = append(b, `,"attempt":`...)
		b = strconv.AppendInt(b, int64(e.Attempt), 10)
	}
	b = appendField(b, "from", e.From, true)
	b = appendField(b, "to", e.To, true)
	b = appendField(b, "actor", e.Actor, false)
	b = appendField(b, "by", e.By, true)
	b = appendField(b, "reason", e.Reason, true)
	if e.Count != 0 {
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, int64(e.Count), 10)
	}
	b = appendField(b, "cause", string(e.Cause), true)
	return append(b, '}', '\n'), nil
}

func appendField(b []byte, name, v string, omitEmpty bool) []byte {
	if omitEmpty && v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return jsonw.AppendString(b, v, true)
}
