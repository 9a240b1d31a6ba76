package cp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/julienschmidt/httprouter"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// Batch submit: POST /v1/batch/tasks takes up to BatchTasksMax tasks in one
// body of up to BatchBodyBytesMax bytes and answers one result per task, in
// order. Each task is checked as a single submit would be, and a task
// refused (invalid, idempotency conflict, queue full, degraded) is refused
// alone: its result says why, and the others go on. A body that is not a
// batch (malformed JSON, no tasks, too many), a scheduler in READ_ONLY or
// DRAINING, and a write the log did not take refuse the whole batch with
// one status, as for a single submit; then nothing changed.
//
// The valid tasks go to the log as one entry, side by side in their order
// (the batcher never splits a batch nor lets another input between its
// tasks), so they are applied together: a key repeated within the batch
// creates the task at its first use and replays it at the next, exactly as
// two submits in a row would.
//
// The path is not /v1/tasks/batch: httprouter cannot hold that beside
// /v1/tasks/:id.

// Batch bounds, for this route only.
const (
	BatchTasksMax     = 1000
	BatchBodyBytesMax = 16 << 20
)

const routeBatchSubmit = "POST /v1/batch/tasks"

// BatchTask is one task of a batch submit: the body of a single submit
// plus its own optional idempotency key (the single submit's
// Idempotency-Key header).
type BatchTask struct {
	SubmitRequest
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// BatchRequest is the body of POST /v1/batch/tasks.
type BatchRequest struct {
	Tasks []BatchTask `json:"tasks"`
}

// BatchResult is one task's result: Status 201 with the task created, 200
// with the task a replay of its key returned, or the status, error code
// and message a single submit of the task would have been refused with.
type BatchResult struct {
	Status  int       `json:"status"`
	Task    *TaskView `json:"task,omitempty"`
	Error   string    `json:"error,omitempty"`
	Message string    `json:"message,omitempty"`
}

// BatchResponse is the answer (200) to POST /v1/batch/tasks: one result per
// task, in the order of the request.
type BatchResponse struct {
	Results []BatchResult `json:"results"`
}

// batchBody is BatchRequest as the cp reads it: each task is decoded on its
// own, so a bad task is that task's refusal, not the batch's.
type batchBody struct {
	Tasks []json.RawMessage `json:"tasks"`
}

func (s *Server) batchSubmit(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var body batchBody
	if !s.decodeBody(w, r, BatchBodyBytesMax, false, &body) {
		return
	}
	switch n := len(body.Tasks); {
	case body.Tasks == nil:
		writeError(w, http.StatusBadRequest, "bad_request", `the batch has no tasks: send {"tasks":[{...},...]}`)
		return
	case n == 0:
		// An empty list is a batch of nothing: nothing to refuse, nothing
		// to log (clients probe the route with it).
		fnet.WriteJSON(w, http.StatusOK, BatchResponse{Results: []BatchResult{}})
		return
	case n > BatchTasksMax:
		writeError(w, http.StatusBadRequest, "bad_request",
			fmt.Sprintf("the batch has %d tasks, more than %d: send them in several batches", n, BatchTasksMax))
		return
	}
	// The mode refuses the whole batch before anything goes to the log.
	var mode ModeView
	s.read(func(c *core.ControlPlane) { mode.Mode, mode.SetBy, mode.Reason = c.Mode() })
	if mode.Mode == core.ModeReadOnly || mode.Mode == core.ModeDraining {
		writeCoreError(w, fmt.Errorf("%w: the scheduler is %s (set by %s: %s), not accepting submissions",
			core.ErrModeRefused, mode.Mode, mode.SetBy, mode.Reason))
		return
	}

	results := make([]BatchResult, len(body.Tasks))
	ins := make([]core.Input, 0, len(body.Tasks))
	at := make([]int, 0, len(body.Tasks)) // the result index of each input
	for i, raw := range body.Tasks {
		in, aerr := s.batchTaskInput(raw)
		in.By = byName(r)
		if aerr != nil {
			results[i] = BatchResult{Status: aerr.status, Error: aerr.code, Message: aerr.msg}
			continue
		}
		ins = append(ins, in)
		at = append(at, i)
	}
	if len(ins) > 0 {
		res, err := s.proposeAll(r.Context(), ins)
		if err != nil {
			writeProposeError(w, err)
			return
		}
		for j, a := range res {
			if a.Err != nil && errors.Is(a.Err, core.ErrModeRefused) {
				// The mode changed since it was read. It cannot change
				// within the batch's run of inputs, so no task of it was
				// created: the whole batch is refused, as above.
				writeCoreError(w, a.Err)
				return
			}
			results[at[j]] = batchResult(a)
		}
	}
	s.answerBatch(w, r, results)
}

// batchTaskInput decodes and checks one task of a batch.
func (s *Server) batchTaskInput(raw json.RawMessage) (core.SubmitInput, *apiError) {
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return core.SubmitInput{}, &apiError{status: http.StatusBadRequest, code: "bad_request", msg: "the task must be a JSON object"}
	}
	var t BatchTask
	if err := fnet.Decode(bytes.NewReader(raw), s.opts.APIBodyBytesMax, &t); err != nil {
		status, code := fnet.DecodeStatus(err)
		msg := strings.TrimPrefix(err.Error(), fnet.ErrBadMessage.Error()+": ")
		if status == http.StatusRequestEntityTooLarge {
			msg = fmt.Sprintf("task larger than %d bytes", s.opts.APIBodyBytesMax)
		}
		return core.SubmitInput{}, &apiError{status: status, code: code, msg: msg}
	}
	return submitInput(t.SubmitRequest, t.IdempotencyKey, "idempotency_key")
}

// batchResult is the result of one applied submit.
func batchResult(a applied) BatchResult {
	if a.Err != nil {
		e := coreError(a.Err)
		return BatchResult{Status: e.status, Error: e.code, Message: e.msg}
	}
	v := taskView(a.Result.Task)
	if a.Result.Replayed {
		return BatchResult{Status: http.StatusOK, Task: &v}
	}
	return BatchResult{Status: http.StatusCreated, Task: &v}
}

// answerBatch writes the results. A task refused for a reason that clears
// with time (429) sets Retry-After on the answer, the longest of them; the
// refusals are logged as a single submit's would be, one line per batch.
func (s *Server) answerBatch(w http.ResponseWriter, r *http.Request, results []BatchResult) {
	retry, refused, invalid := 0, 0, 0
	var first *BatchResult
	for i := range results {
		res := &results[i]
		if res.Status < 400 {
			continue
		}
		refused++
		if first == nil {
			first = res
		}
		if res.Status == http.StatusTooManyRequests {
			switch res.Error {
			case "queue_full":
				retry = max(retry, retryAfterQueueFull)
			case "degraded":
				retry = max(retry, retryAfterDegraded)
			}
		} else {
			invalid++
		}
	}
	if retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retry))
	}
	if refused > 0 {
		attrs := []any{"route", routeBatchSubmit, "tasks", len(results), "refused", refused,
			"first_status", first.Status, "first_error", first.Error, "first_message", first.Message, "remote", r.RemoteAddr}
		if invalid > 0 {
			s.log.Warn("batch submit: tasks refused", attrs...)
		} else {
			s.log.Debug("batch submit: tasks refused", attrs...)
		}
	}
	writeBatch(w, BatchResponse{Results: results})
}
