package core

import (
	"reflect"
	"slices"
	"strings"
)

// A Capture is the control plane's state copied at one moment, for an
// export made later, away from the control plane and its lock: the raft
// snapshot (hashicorp/raft calls FSM.Snapshot on the goroutine that applies
// entries, so the time it takes is time no write is applied) and the state
// hash of the debug snapshot (computed under the cp's read lock, which
// holds off every write).
//
// Taking one copies what an export writes and encodes nothing heavy: the
// small parts of the state are encoded at once (an agent's or a domain's
// export is built fresh anyway); of the bulk, the live tasks, the
// idempotency entries, the timeline ring and the eviction order are copied
// as values, and the terminal tasks (most of a busy cp's TasksMax) are
// shared. Encode then writes exactly the bytes Export gave at the moment
// of the capture, however the control plane changed since
// (TestCaptureEncodesTheExportOfItsMoment).
//
// What is shared and not copied: strings (immutable), a task's argv (never
// written after submission), a terminal task's record (never written
// again: every input that finds a task terminal leaves it as it is, and
// eviction only forgets it), and the append-only lists of a live task's
// record (failedOn, rejectedBy: the capture keeps its own length, later
// appends go beyond it). A live task's attempts and last decision are
// written in place and are copied.
type Capture struct {
	e     *stateEncoder
	parts []capturePart // the encoded stretches before each bulk field
	tail  []byte        // after the last bulk field

	tasks    []sharedTask  // terminal
	live     []taskCapture // the others
	terminal []TaskID
	idem     idemExport
	timeline timelineExport
	encoded  bool
}

// capturePart is an encoded stretch of the export, then the bulk field
// (a stateV2 field index) written after it.
type capturePart struct {
	head  []byte
	field int
}

// sharedTask is a terminal task's record, shared.
type sharedTask struct {
	id  TaskID
	rec *taskRecord
}

// taskCapture is a live task's export, copied, with room for the parts of
// it that are written in place: its decision and its first attempt.
type taskCapture struct {
	te       taskExport
	decision Decision
	attempt  [1]AttemptRecord
}

// Capture copies the state for a later Encode. It changes nothing.
func (cp *ControlPlane) Capture() (*Capture, error) {
	s := cp.exportStateBut(false) // TerminalIDs is a copy already
	c := &Capture{e: &stateEncoder{buf: make([]byte, 0, 4096+len(cp.agentList)*512)}, terminal: s.TerminalIDs}
	e := c.e
	err := e.state(&s, func(field int) (bool, error) {
		switch field {
		case stateV2TasksField, stateV2TerminalField, stateV2IdemField, stateV2TimelineField:
			c.parts = append(c.parts, capturePart{head: e.buf, field: field})
			e.buf = nil
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	c.tail, e.buf = e.buf, nil

	live := 0
	for _, t := range cp.tasks {
		if !t.State.Terminal() {
			live++
		}
	}
	c.tasks = make([]sharedTask, 0, len(cp.tasks)-live)
	c.live = make([]taskCapture, live)
	live = 0
	for id, t := range cp.tasks {
		if t.State.Terminal() {
			c.tasks = append(c.tasks, sharedTask{id: id, rec: t})
			continue
		}
		tc := &c.live[live]
		live++
		tc.te = exportRecord(t)
		if d := t.LastDecision; d != nil {
			tc.decision = *d
			tc.te.Task.LastDecision = &tc.decision
		}
		switch n := len(t.Attempts); {
		case n == 1:
			tc.attempt[0] = t.Attempts[0]
			tc.te.Task.Attempts = tc.attempt[:]
		case n > 1:
			tc.te.Task.Attempts = slices.Clone(t.Attempts)
		}
	}

	c.idem = cp.exportIdempotency()
	tl := cp.timeline
	c.timeline = timelineExport{NextSeq: tl.nextSeq, Dropped: tl.dropped, Events: make([]Event, tl.n)}
	for i := range tl.n {
		c.timeline.Events[i] = tl.ring[(tl.start+i)%len(tl.ring)]
	}
	return c, nil
}

// Encode returns the export of the captured state: the bytes
// ControlPlane.Export returned when the capture was taken. It may run on
// any goroutine, once, while the control plane goes on.
func (c *Capture) Encode() ([]byte, error) {
	if c.encoded {
		panic("core: a Capture is encoded once")
	}
	c.encoded = true
	// By id, as Export writes them: the shared and the copied tasks are
	// sorted apart (a copied export points into its own taskCapture: those
	// are sorted as pointers) and merged as they are written.
	slices.SortFunc(c.tasks, func(a, b sharedTask) int { return strings.Compare(string(a.id), string(b.id)) })
	live := make([]*taskCapture, len(c.live))
	for i := range c.live {
		live[i] = &c.live[i]
	}
	slices.SortFunc(live, func(a, b *taskCapture) int { return strings.Compare(string(a.te.Task.ID), string(b.te.Task.ID)) })
	si, li := 0, 0
	next := func(int) taskExport {
		if li < len(live) && (si == len(c.tasks) || live[li].te.Task.ID < c.tasks[si].id) {
			li++
			return live[li-1].te
		}
		si++
		return exportRecord(c.tasks[si-1].rec)
	}

	e := c.e
	e.buf = make([]byte, 0, 4096+(len(c.tasks)+len(c.live))*384+len(c.tail)+len(c.parts)*256)
	for _, p := range c.parts {
		e.buf = append(e.buf, p.head...)
		var err error
		switch p.field {
		case stateV2TasksField:
			err = encodeTaskExports(e, len(c.tasks)+len(c.live), next)
		case stateV2TerminalField:
			err = e.value(reflect.ValueOf(c.terminal))
		case stateV2IdemField:
			err = e.value(reflect.ValueOf(&c.idem).Elem())
		case stateV2TimelineField:
			err = e.value(reflect.ValueOf(&c.timeline).Elem())
		}
		if err != nil {
			return nil, err
		}
	}
	e.buf = append(e.buf, c.tail...)
	c.tasks, c.live, c.terminal, c.idem, c.timeline = nil, nil, nil, idemExport{}, timelineExport{}
	return e.buf, nil
}
