package cp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp/raftlog"
	fnet "github.com/fluxforge/fluxforge/net"
)

// Route labels (method and pattern) of the metrics.
const routeSubmit = "POST /v1/tasks"

// Retry-After values (seconds) for refusals that clear with time.
const (
	retryAfterQueueFull = 5
	retryAfterDegraded  = 30
	retryAfterMode      = 30
)

// Query bounds.
const (
	tasksLimitDefault    = 100
	tasksLimitMax        = 1000
	timelineLimitDefault = 100
	timelineLimitMax     = 10_000
	reasonBytesMax       = 512
)

type handle = httprouter.Handle

func (s *Server) routes() http.Handler {
	r := httprouter.New()
	add := func(method, path string, auth authKind, h handle) {
		r.Handle(method, path, s.wrap(method+" "+path, auth, h))
	}
	add(http.MethodPost, "/v1/tasks", authSubmit, s.submit)
	add(http.MethodPost, "/v1/batch/tasks", authSubmit, s.batchSubmit)
	add(http.MethodGet, "/v1/tasks", authRead, s.listTasks)
	add(http.MethodGet, "/v1/tasks/:id", authRead, s.getTask)
	add(http.MethodPost, "/v1/tasks/:id/cancel", authSubmit, s.cancelTask)
	add(http.MethodGet, "/v1/agents", authRead, s.listAgents)
	add(http.MethodGet, "/v1/agents/:id", authRead, s.getAgent)
	add(http.MethodPost, "/v1/agents/:id/quarantine", authAdmin, s.quarantine)
	add(http.MethodPost, "/v1/agents/:id/release", authAdmin, s.release)
	add(http.MethodPost, fnet.PathHeartbeat, authAgent, s.heartbeat)
	add(http.MethodPost, fnet.PathPoll, authAgent, s.poll)
	add(http.MethodGet, "/scheduler/debug/snapshot", authRead, s.snapshot)
	add(http.MethodPost, "/scheduler/queue/purge", authAdmin, s.purge)
	add(http.MethodGet, "/admin/mode", authAdmin, s.getMode)
	add(http.MethodPost, "/admin/mode", authAdmin, s.setMode)
	add(http.MethodGet, "/admin/log/export", authAdmin, s.logExport)
	add(http.MethodGet, "/timeline", authRead, s.timeline)
	add(http.MethodGet, "/admin/raft/members", authRead, s.getMembers)
	add(http.MethodPost, "/admin/raft/members", authAdmin, s.addMember)
	add(http.MethodDelete, "/admin/raft/members/:id", authAdmin, s.removeMember)
	add(http.MethodPost, "/admin/raft/transfer-leadership", authAdmin, s.transferLeadership)
	add(http.MethodPost, "/admin/raft/announce", authAdmin, s.announceMember)
	add(http.MethodGet, "/healthz", authNone, s.healthz)
	add(http.MethodGet, "/readyz", authNone, s.readyz)
	metricsHandler := promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{})
	add(http.MethodGet, "/metrics", authRead, func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		metricsHandler.ServeHTTP(w, r)
	})
	r.NotFound = asHandler(s.wrap("not_found", authNone, func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
	}))
	r.MethodNotAllowed = asHandler(s.wrap("method_not_allowed", authNone, func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed",
			fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, w.Header().Get("Allow")))
	}))
	r.HandleOPTIONS = false
	return r
}

// authKind is what a route requires (see authOperator and authAgent).
type authKind int

const (
	authNone   authKind = iota // open always (/healthz, /readyz)
	authRead                   // a read token with -require-read-token
	authSubmit                 // a submit token when the tokens file names operators
	authAdmin                  // an admin token when any operator token exists
	authAgent                  // the agent protocol: see authAgent
)

// authRoles maps the operator kinds to the role they need.
var authRoles = [...]Role{authRead: RoleRead, authSubmit: RoleSubmit, authAdmin: RoleAdmin}

// statusWriter remembers the status a handler wrote and, for errors, the
// start of the body (the JSON error), so the refusal can be logged.
type statusWriter struct {
	http.ResponseWriter
	status  int
	errBody []byte
}

// errBodyMax bounds the part of an error body kept for the log.
const errBodyMax = 512

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status >= 400 && len(w.errBody) < errBodyMax {
		w.errBody = append(w.errBody, b[:min(len(b), errBodyMax-len(w.errBody))]...)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wrap is the request boundary: authentication, panic recovery and the
// request and error counters.
func (s *Server) wrap(route string, auth authKind, h handle) httprouter.Handle {
	return func(rw http.ResponseWriter, r *http.Request, p httprouter.Params) {
		start := time.Now()
		w := &statusWriter{ResponseWriter: rw}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.metrics.panics.Inc()
				s.log.Error("panic serving request", "route", route, "panic", fmt.Sprint(v))
				if w.status == 0 {
					writeError(w, http.StatusInternalServerError, "internal", "internal error; see the control plane's log")
				}
			}
			code := w.status
			if code == 0 {
				code = http.StatusOK
			}
			c := strconv.Itoa(code)
			s.metrics.requests.WithLabelValues(route, c).Inc()
			if code >= 400 {
				s.metrics.apiErrors.WithLabelValues(route, c).Inc()
				s.logRefusal(r, route, code, w.errBody)
			}
			s.metrics.requestDuration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		switch auth {
		case authRead, authSubmit, authAdmin:
			name, err := s.authOperator(r, authRoles[auth])
			if err != nil {
				s.writeAuthError(w, err)
				return
			}
			r = withBy(r, name)
		case authAgent:
			// Credentials only: the handler checks the agent id of the
			// body with authAgent once it has read it.
			if err := s.authAgent(r, ""); err != nil {
				s.writeAuthError(w, err)
				return
			}
		}
		h(w, r, p)
	}
}

// logRefusal logs a request answered with an error status, so an operator
// chasing flux_api_errors_total finds what was wrong: validation errors at
// WARN, server errors at ERROR, deliberate refusals (load shedding, modes,
// not found, conflicts) at DEBUG.
func (s *Server) logRefusal(r *http.Request, route string, code int, body []byte) {
	var e struct{ Error, Message string }
	_ = json.Unmarshal(body, &e)
	attrs := []any{"route", route, "status", code, "error", e.Error, "message", e.Message,
		"remote", r.RemoteAddr}
	switch {
	case code >= 500 && code != http.StatusServiceUnavailable:
		s.log.Error("request failed", attrs...)
	case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge || code == http.StatusUnprocessableEntity:
		s.log.Warn("validation error", attrs...)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		s.log.Warn("unauthorized request", attrs...)
	default:
		s.log.Debug("request refused", attrs...)
	}
}

func asHandler(h httprouter.Handle) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(w, r, nil) })
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	fnet.WriteError(w, status, code, msg)
}

// writeCoreError maps the core's operating errors to statuses.
func writeCoreError(w http.ResponseWriter, err error) {
	e := coreError(err)
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	writeError(w, e.status, e.code, e.msg)
}

// apiError is a refusal before it is written: the status, the error code
// and message of the JSON body, and the Retry-After (seconds, 0 for none).
type apiError struct {
	status     int
	code, msg  string
	retryAfter int
}

// coreError maps one of the core's operating errors to its refusal.
func coreError(err error) apiError {
	switch {
	case errors.Is(err, core.ErrInvalid):
		return apiError{http.StatusBadRequest, "invalid", err.Error(), 0}
	case errors.Is(err, core.ErrIdempotencyConflict):
		return apiError{http.StatusUnprocessableEntity, "idempotency_conflict", err.Error(), 0}
	case errors.Is(err, core.ErrQueueFull):
		return apiError{http.StatusTooManyRequests, "queue_full", err.Error(), retryAfterQueueFull}
	case errors.Is(err, core.ErrLowPriorityShed):
		return apiError{http.StatusTooManyRequests, "degraded", err.Error(), retryAfterDegraded}
	case errors.Is(err, core.ErrModeRefused):
		return apiError{http.StatusServiceUnavailable, "mode_refused", err.Error(), retryAfterMode}
	case errors.Is(err, core.ErrNotFound):
		return apiError{http.StatusNotFound, "not_found", err.Error(), 0}
	case errors.Is(err, core.ErrConflict):
		return apiError{http.StatusConflict, "conflict", err.Error(), 0}
	case errors.Is(err, core.ErrAgentsFull):
		return apiError{http.StatusServiceUnavailable, "agents_full", err.Error(), retryAfterMode}
	default:
		return apiError{http.StatusInternalServerError, "internal", err.Error(), 0}
	}
}

// decodeBody reads a bounded JSON body into v, refusing unknown fields and
// trailing data. An empty body is allowed only when optional.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, max int64, optional bool, v any) bool {
	if optional && r.ContentLength == 0 {
		return true
	}
	r.Body = http.MaxBytesReader(w, r.Body, max+1)
	err := fnet.CheckContentLength(r, max) // 413 before reading a body declared too large
	if err == nil {
		err = fnet.Decode(r.Body, max, v)
	}
	if err != nil {
		status, code := fnet.DecodeStatus(err)
		msg := err.Error()
		if status == http.StatusRequestEntityTooLarge {
			msg = fmt.Sprintf("request body larger than %d bytes", max)
		} else {
			msg = strings.TrimPrefix(msg, fnet.ErrBadMessage.Error()+": ")
			if strings.Contains(msg, "EOF") && !optional {
				msg = "request body must be a JSON object"
			}
		}
		writeError(w, status, code, msg)
		return false
	}
	return true
}

// query validates r's query string against the allowed keys, each at most
// once.
func query(w http.ResponseWriter, r *http.Request, allowed ...string) (url.Values, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "malformed query string: "+err.Error())
		return nil, false
	}
	for k, vs := range q {
		// stale=true (read this cp's own copy, not the leader's) is
		// taken by the cluster layer before the handler, on every read.
		if !slices.Contains(allowed, k) && (k != "stale" || r.Method != http.MethodGet) {
			writeError(w, http.StatusBadRequest, "bad_request",
				fmt.Sprintf("unknown query parameter %q (allowed: %s)", k, strings.Join(allowed, ", ")))
			return nil, false
		}
		if len(vs) > 1 {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("query parameter %q given more than once", k))
			return nil, false
		}
	}
	return q, true
}

// intParam parses an optional integer query parameter in [lo, hi].
func intParam(w http.ResponseWriter, q url.Values, key string, def, lo, hi int64) (int64, bool) {
	s := q.Get(key)
	if s == "" {
		return def, true
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < lo || v > hi {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("%s must be an integer between %d and %d", key, lo, hi))
		return 0, false
	}
	return v, true
}

// SubmitRequest is the body of POST /v1/tasks. Priority is a string here so
// that an absent priority means normal; zero TimeoutSeconds and MaxAttempts
// mean the cp's defaults. The omitempty tags only shape what a client
// sends: the fields decode the same either way.
type SubmitRequest struct {
	Kind           string   `json:"kind"`
	Argv           []string `json:"argv,omitempty"`
	DurationMS     int64    `json:"duration_ms,omitempty"`
	Domain         string   `json:"domain,omitempty"`
	Priority       string   `json:"priority,omitempty"`
	TimeoutSeconds int      `json:"timeout_seconds,omitempty"`
	MaxAttempts    int      `json:"max_attempts,omitempty"`
}

// HeaderIdempotencyKey and HeaderReplayed are the idempotency headers.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderReplayed       = "Idempotent-Replayed"
)

func (s *Server) submit(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var req SubmitRequest
	if !s.decodeBody(w, r, s.opts.APIBodyBytesMax, false, &req) {
		return
	}
	in, aerr := submitInput(req, r.Header.Get(HeaderIdempotencyKey), HeaderIdempotencyKey)
	if aerr != nil {
		writeError(w, aerr.status, aerr.code, aerr.msg)
		return
	}
	in.By = byName(r)
	a, ok := s.apply(w, r, in)
	if !ok {
		return
	}
	task, replayed := a.Result.Task, a.Result.Replayed
	w.Header().Set("Location", "/v1/tasks/"+string(task.ID))
	if replayed {
		w.Header().Set(HeaderReplayed, "true")
		writeTask(w, http.StatusOK, taskView(task))
		return
	}
	writeTask(w, http.StatusCreated, taskView(task))
}

// submitInput checks a submission before it goes to the log (the core
// checks the rest) and makes its input; keyName names where the
// idempotency key came from (the header, or a batch task's field).
func submitInput(req SubmitRequest, key, keyName string) (core.SubmitInput, *apiError) {
	prio, err := core.ParsePriority(req.Priority)
	if err != nil {
		e := coreError(err)
		return core.SubmitInput{}, &e
	}
	if req.TimeoutSeconds < 0 || req.MaxAttempts < 0 {
		return core.SubmitInput{}, &apiError{status: http.StatusBadRequest, code: "invalid",
			msg: "timeout_seconds and max_attempts must be positive (or absent for the default)"}
	}
	for _, c := range []byte(key) {
		if c < 0x21 || c > 0x7e {
			return core.SubmitInput{}, &apiError{status: http.StatusBadRequest, code: "invalid",
				msg: keyName + " must be printable ASCII without spaces"}
		}
	}
	return core.SubmitInput{IdempotencyKey: key, Spec: core.TaskSpec{
		Kind: req.Kind, Argv: req.Argv, DurationMS: req.DurationMS, Domain: req.Domain, Priority: prio,
		TimeoutSeconds: req.TimeoutSeconds, MaxAttempts: req.MaxAttempts,
	}}, nil
}

// TaskView is a task as the API shows it: the core's record plus, while it
// is queued, why it is not placed yet.
type TaskView struct {
	core.Task
	WaitingReason string `json:"waiting_reason,omitempty"`
}

func taskView(t core.Task) TaskView {
	v := TaskView{Task: t}
	if t.State == core.TaskQueued && t.LastDecision != nil && t.LastDecision.Outcome != core.DecisionAssigned {
		v.WaitingReason = t.LastDecision.Outcome
		if t.LastDecision.Reason != "" {
			v.WaitingReason += ": " + t.LastDecision.Reason
		}
	}
	return v
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	id := core.TaskID(p.ByName("id"))
	var (
		t  core.Task
		ok bool
	)
	s.read(func(c *core.ControlPlane) { t, ok = c.Task(id) })
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no task %q (never submitted, or finished long ago and forgotten)", id))
		return
	}
	writeTask(w, http.StatusOK, taskView(t))
}

// TaskList is the body of GET /v1/tasks. NextAfter, when set, pages on with
// ?after=NextAfter.
type TaskList struct {
	Tasks     []TaskView `json:"tasks"`
	Count     int        `json:"count"`
	NextAfter string     `json:"next_after,omitempty"`
}

func (s *Server) listTasks(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	q, ok := query(w, r, "state", "domain", "limit", "after")
	if !ok {
		return
	}
	f := core.TaskFilter{Domain: q.Get("domain"), After: core.TaskID(q.Get("after"))}
	if st := q.Get("state"); st != "" {
		v, err := core.ParseTaskState(strings.ToUpper(st))
		if err != nil {
			writeCoreError(w, err)
			return
		}
		f.State = &v
	}
	if f.Domain != "" {
		if err := core.ValidateDomain(f.Domain); err != nil {
			writeCoreError(w, err)
			return
		}
	}
	limit, ok := intParam(w, q, "limit", tasksLimitDefault, 1, tasksLimitMax)
	if !ok {
		return
	}
	f.Limit = int(limit)
	var tasks []core.Task
	s.read(func(c *core.ControlPlane) { tasks = c.Tasks(f) })
	out := TaskList{Tasks: make([]TaskView, len(tasks)), Count: len(tasks)}
	for i, t := range tasks {
		out.Tasks[i] = taskView(t)
	}
	if len(tasks) == f.Limit {
		out.NextAfter = string(tasks[len(tasks)-1].ID)
	}
	fnet.WriteJSON(w, http.StatusOK, out)
}

// ReasonRequest is the optional body of cancel, quarantine and release.
type ReasonRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) reason(w http.ResponseWriter, r *http.Request) (string, bool) {
	var req ReasonRequest
	if !s.decodeBody(w, r, s.opts.APIBodyBytesMax, true, &req) {
		return "", false
	}
	if len(req.Reason) > reasonBytesMax {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("reason longer than %d bytes", reasonBytesMax))
		return "", false
	}
	return req.Reason, true
}

func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	reason, ok := s.reason(w, r)
	if !ok {
		return
	}
	in := core.CancelInput{TaskID: core.TaskID(p.ByName("id")), Actor: core.ActorClient, By: byName(r), Reason: reason}
	a, ok := s.apply(w, r, in)
	if !ok {
		return
	}
	writeTask(w, http.StatusOK, taskView(a.Result.Task))
}

// AgentList is the body of GET /v1/agents.
type AgentList struct {
	Agents []core.AgentView `json:"agents"`
	Count  int              `json:"count"`
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	if _, ok := query(w, r); !ok {
		return
	}
	var agents []core.AgentView
	s.read(func(c *core.ControlPlane) { agents = c.Agents() })
	fnet.WriteJSON(w, http.StatusOK, AgentList{Agents: agents, Count: len(agents)})
}

func (s *Server) getAgent(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	id := core.AgentID(p.ByName("id"))
	var (
		a  core.AgentView
		ok bool
	)
	s.read(func(c *core.ControlPlane) { a, ok = c.Agent(id) })
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no agent %q", id))
		return
	}
	fnet.WriteJSON(w, http.StatusOK, a)
}

func (s *Server) quarantine(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	s.quarantineOrRelease(w, r, p, true)
}

func (s *Server) release(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	s.quarantineOrRelease(w, r, p, false)
}

func (s *Server) quarantineOrRelease(w http.ResponseWriter, r *http.Request, p httprouter.Params, quarantine bool) {
	reason, ok := s.reason(w, r)
	if !ok {
		return
	}
	in := core.QuarantineInput{AgentID: core.AgentID(p.ByName("id")), Actor: core.ActorOperator, By: byName(r), Reason: reason}
	var input core.Input = in
	if !quarantine {
		input = core.ReleaseInput(in)
	}
	a, ok := s.apply(w, r, input)
	if !ok {
		return
	}
	fnet.WriteJSON(w, http.StatusOK, a.Agent)
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var hb core.HeartbeatInput
	if !s.decodeBody(w, r, fnet.BodyMax, false, &hb) {
		return
	}
	if err := s.authAgent(r, hb.AgentID); err != nil {
		s.writeAuthError(w, err)
		return
	}
	a, ok := s.apply(w, r, hb)
	if !ok {
		return
	}
	s.mail.noteIncarnation(hb.AgentID, hb.Incarnation)
	fnet.WriteJSON(w, http.StatusOK, a.Result.Heartbeat)
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	q, ok := query(w, r, "fresh_hash")
	if !ok {
		return
	}
	v, err := s.fsm.debugView(s.clock.Now(), q.Get("fresh_hash") == "true")
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	fnet.WriteJSON(w, http.StatusOK, struct {
		DebugView
		NodeView
	}{v, s.nodeView()})
}

// PurgeRequest is the body of POST /scheduler/queue/purge: exactly one
// filter.
type PurgeRequest struct {
	All              bool   `json:"all,omitempty"`
	Domain           string `json:"domain,omitempty"`
	OlderThanSeconds int64  `json:"older_than_seconds,omitempty"`
	Reason           string `json:"reason,omitempty"`
}

// PurgeResult is the answer to a purge.
type PurgeResult struct {
	Purged     int `json:"purged"`
	QueueDepth int `json:"queue_depth"`
}

func (s *Server) purge(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var req PurgeRequest
	if !s.decodeBody(w, r, s.opts.APIBodyBytesMax, false, &req) {
		return
	}
	if req.OlderThanSeconds < 0 || req.OlderThanSeconds > 365*24*3600 {
		writeError(w, http.StatusBadRequest, "invalid", "older_than_seconds must be between 1 and 31536000")
		return
	}
	if len(req.Reason) > reasonBytesMax {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("reason longer than %d bytes", reasonBytesMax))
		return
	}
	in := core.PurgeInput{All: req.All, Domain: req.Domain, OlderThan: time.Duration(req.OlderThanSeconds) * time.Second,
		Actor: core.ActorOperator, By: byName(r), Reason: req.Reason}
	a, ok := s.apply(w, r, in)
	if !ok {
		return
	}
	fnet.WriteJSON(w, http.StatusOK, PurgeResult{Purged: a.Result.Purged, QueueDepth: a.QueueDepth})
}

// ModeView is the body of GET /admin/mode and the answer to POST.
type ModeView struct {
	Mode      core.Mode `json:"mode"`
	SetBy     string    `json:"set_by"`
	SetByName string    `json:"set_by_name,omitempty"` // the token that set it
	Reason    string    `json:"reason"`
}

// ModeRequest is the body of POST /admin/mode.
type ModeRequest struct {
	Mode   string `json:"mode"`
	Reason string `json:"reason,omitempty"`
}

func (s *Server) getMode(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var v ModeView
	s.read(func(c *core.ControlPlane) {
		v.Mode, v.SetBy, v.Reason = c.Mode()
		v.SetByName = c.ModeSetByName()
	})
	fnet.WriteJSON(w, http.StatusOK, v)
}

func (s *Server) setMode(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var req ModeRequest
	if !s.decodeBody(w, r, s.opts.APIBodyBytesMax, false, &req) {
		return
	}
	mode, err := core.ParseMode(req.Mode)
	if err != nil {
		writeCoreError(w, err)
		return
	}
	a, ok := s.apply(w, r, core.SetModeInput{Mode: mode, Actor: core.ActorOperator, By: byName(r), Reason: req.Reason})
	if !ok {
		return
	}
	fnet.WriteJSON(w, http.StatusOK, a.Mode)
}

// timelinePage reads up to limit events after since: from the core's ring
// when it still holds since+1 (recent polls), else from the on-disk store
// (see cp/timelinestore), topped up from the ring where the store falls
// short of it (in memory, or a store that failed). Dropped counts the
// events before the oldest one either holds.
func (s *Server) timelinePage(since uint64, limit int) TimelinePage {
	var page TimelinePage
	var ringFirst uint64
	s.read(func(c *core.ControlPlane) {
		tl := c.Timeline()
		page.LastSeq, page.Dropped = tl.LastSeq(), tl.Dropped()
		ringFirst = tl.Dropped() + 1
		if since+1 >= ringFirst || s.fsm.store == nil {
			page.Events = tl.Since(since, limit)
		}
	})
	if s.fsm.store == nil {
		return page
	}
	if first, _, err := s.fsm.store.Bounds(); err == nil && first > 0 {
		page.Dropped = min(page.Dropped, first-1)
	}
	if page.Events != nil || since >= page.LastSeq {
		return page
	}
	events, err := s.fsm.store.Since(since, limit)
	if err != nil {
		s.log.Warn("timeline store read failed: serving the in-memory timeline", "error", err.Error())
		events = nil
	}
	if n := len(events); n < limit && (n == 0 || events[n-1].Seq+1 < ringFirst) {
		// The store ends before the ring begins: go on from the ring.
		after := since
		if n > 0 {
			after = events[n-1].Seq
		}
		s.read(func(c *core.ControlPlane) {
			events = append(events, c.Timeline().Since(max(after, ringFirst-1), limit-n)...)
		})
	}
	page.Events = events
	return page
}

// TimelinePage is the body of GET /timeline. Poll on with ?since=NextSince.
type TimelinePage struct {
	Events    []core.Event `json:"events"`
	LastSeq   uint64       `json:"last_seq"`
	NextSince uint64       `json:"next_since"`
	Dropped   uint64       `json:"dropped"`
}

func (s *Server) timeline(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	q, ok := query(w, r, "since", "limit")
	if !ok {
		return
	}
	since, ok := intParam(w, q, "since", 0, 0, 1<<62)
	if !ok {
		return
	}
	limit, ok := intParam(w, q, "limit", timelineLimitDefault, 1, timelineLimitMax)
	if !ok {
		return
	}
	page := s.timelinePage(uint64(since), int(limit))
	if page.Events == nil {
		page.Events = []core.Event{}
	}
	page.NextSince = uint64(since)
	if n := len(page.Events); n > 0 {
		page.NextSince = page.Events[n-1].Seq
	}
	fnet.WriteJSON(w, http.StatusOK, page)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	fnet.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	switch {
	case s.stopping.Load():
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "the control plane is shutting down")
	case !s.running.Load():
		writeError(w, http.StatusServiceUnavailable, "not_running", "the reconcile loop is not running")
	case s.notDurable.Load() != nil:
		writeError(w, http.StatusServiceUnavailable, "not_durable", "the last write to the log failed: "+*s.notDurable.Load())
	case s.node.Clustered() && s.leaderURL() == "":
		writeError(w, http.StatusServiceUnavailable, "no_leader", "this cp knows no leader to serve the API with (an election is under way, or no quorum)")
	case !s.node.Clustered() && !s.node.IsLeader():
		writeError(w, http.StatusServiceUnavailable, "not_leader", "this control plane does not lead its log now (it re-elects itself after a failed write)")
	default:
		fnet.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready", "mode": string(s.Mode()), "role": string(s.node.Role())})
	}
}

// apply proposes in through the log and answers a refusal: a write that
// was not made durable is a 503 with the reason, the core's error as
// writeCoreError maps it. ok means the core accepted in.
func (s *Server) apply(w http.ResponseWriter, r *http.Request, in core.Input) (applied, bool) {
	a, err := s.propose(r.Context(), in)
	if err != nil {
		writeProposeError(w, err)
		return applied{}, false
	}
	if a.Err != nil {
		writeCoreError(w, a.Err)
		return applied{}, false
	}
	return a, true
}

// Retry-After for a write the log did not take.
const retryAfterNotDurable = 1

// writeProposeError answers a proposal the log did not acknowledge: nothing
// changed, so the client may retry (with its idempotency key).
func writeProposeError(w http.ResponseWriter, err error) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterNotDurable))
	switch {
	case errors.Is(err, raftlog.ErrNotDurable):
		writeError(w, http.StatusServiceUnavailable, "not_durable", "the change was not made durable and is not applied: "+err.Error())
	case errors.Is(err, raftlog.ErrNotLeader):
		writeError(w, http.StatusServiceUnavailable, "not_leader", "this control plane cannot take writes now (it re-elects itself after a failed write): "+err.Error())
	case errors.Is(err, raftlog.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "the control plane is shutting down")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, "timeout", "the change was not acknowledged in time (it may still be applied): "+err.Error())
	default:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}
