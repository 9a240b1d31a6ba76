// Package client is a Go client of the control plane's HTTP API (see package
// cp for the routes). It decodes answers into the cp's own types (cp.TaskView,
// cp.TaskList, cp.BatchResponse, cp.AgentList, cp.ModeView, cp.PurgeResult, cp.TimelinePage,
// core.Snapshot, core.AgentView), so it cannot drift from what the server
// encodes; cp does not import it.
//
//	c := client.New("http://127.0.0.1:8080", os.Getenv("FLUX_ADMIN_TOKEN"))
//	r, err := c.Snapshot(ctx)
//	if err != nil { ... }          // an *Error for every non-2xx answer
//	fmt.Println(r.Value.Mode, r.Value.QueueDepth)
//
// Every call returns a Response: the decoded value, the body exactly as the
// cp sent it (fluxctl -o json prints it) and the headers.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp"
)

// DefaultTimeout bounds a whole request (connect, send, read) of a client
// made by New.
const DefaultTimeout = 30 * time.Second

// bodyMax bounds a response body read into memory.
const bodyMax = 64 << 20

// Client talks to one control plane. The zero value is not usable: set
// BaseURL (or use New).
type Client struct {
	BaseURL string       // e.g. http://127.0.0.1:8080; a trailing slash is fine
	Token   string       // admin token, sent as Authorization: Bearer; none when empty
	HTTP    *http.Client // http.DefaultClient when nil
}

// New returns a client of the cp at baseURL with its own http.Client of
// DefaultTimeout.
func New(baseURL, token string) *Client {
	return &Client{BaseURL: baseURL, Token: token, HTTP: &http.Client{Timeout: DefaultTimeout}}
}

// CloseIdleConnections closes the keep-alive connections the client holds.
func (c *Client) CloseIdleConnections() { c.httpClient().CloseIdleConnections() }

func (c *Client) httpClient() *http.Client {
	if c.HTTP == nil {
		return http.DefaultClient
	}
	return c.HTTP
}

// Error is a non-2xx answer. Code and Message are the cp's JSON error
// ({"error":"<code>","message":"..."}); for a body that is not one (a proxy's
// page, plain text), Code is the status text and Message the trimmed body.
type Error struct {
	Status     int
	Code       string `json:"error"`
	Message    string `json:"message"`
	RetryAfter string // the Retry-After header (seconds), when the cp sent one
}

func (e *Error) Error() string {
	s := fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message)
	if e.RetryAfter != "" {
		s += " (retry after " + e.RetryAfter + "s)"
	}
	return s
}

// Response is a decoded 2xx answer.
type Response[T any] struct {
	Value  T
	Body   []byte // the JSON as the cp sent it
	Header http.Header
	Status int
}

// Replayed reports whether a submission was answered from the idempotency
// cache (Idempotent-Replayed: true).
func (r *Response[T]) Replayed() bool { return r.Header.Get(cp.HeaderReplayed) == "true" }

// Do sends one request: body (when not nil) is encoded as JSON, headers are
// name, value pairs. It returns the raw 2xx answer, or an *Error.
func (c *Client) Do(ctx context.Context, method, path string, body any, headers ...string) (*Response[json.RawMessage], error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, bodyMax))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(raw, e) != nil || e.Code == "" {
			e.Code, e.Message = http.StatusText(resp.StatusCode), strings.TrimSpace(string(raw))
		}
		e.RetryAfter = resp.Header.Get("Retry-After")
		return nil, e
	}
	return &Response[json.RawMessage]{Value: raw, Body: raw, Header: resp.Header, Status: resp.StatusCode}, nil
}

// call sends a request and decodes a 2xx answer into T.
func call[T any](ctx context.Context, c *Client, method, path string, body any, headers ...string) (*Response[T], error) {
	r, err := c.Do(ctx, method, path, body, headers...)
	if err != nil {
		return nil, err
	}
	out := &Response[T]{Body: r.Body, Header: r.Header, Status: r.Status}
	if err := json.Unmarshal(r.Body, &out.Value); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	return out, nil
}

// Snapshot is GET /scheduler/debug/snapshot.
func (c *Client) Snapshot(ctx context.Context) (*Response[core.DebugView], error) {
	return call[core.DebugView](ctx, c, http.MethodGet, "/scheduler/debug/snapshot", nil)
}

// Mode is GET /admin/mode (admin token).
func (c *Client) Mode(ctx context.Context) (*Response[cp.ModeView], error) {
	return call[cp.ModeView](ctx, c, http.MethodGet, "/admin/mode", nil)
}

// SetMode is POST /admin/mode (admin token).
func (c *Client) SetMode(ctx context.Context, req cp.ModeRequest) (*Response[cp.ModeView], error) {
	return call[cp.ModeView](ctx, c, http.MethodPost, "/admin/mode", req)
}

// Submit is POST /v1/tasks, with an Idempotency-Key when key is not empty.
// Response.Replayed tells a replay from a new task.
func (c *Client) Submit(ctx context.Context, req cp.SubmitRequest, key string) (*Response[cp.TaskView], error) {
	var hdr []string
	if key != "" {
		hdr = []string{cp.HeaderIdempotencyKey, key}
	}
	return call[cp.TaskView](ctx, c, http.MethodPost, "/v1/tasks", req, hdr...)
}

// SubmitBatch is POST /v1/batch/tasks: up to cp.BatchTasksMax tasks, each
// with its own optional IdempotencyKey. A 200 holds one cp.BatchResult per
// task, in order (201 created, 200 replayed, or the task's refusal); a
// refusal of the whole batch (malformed, too many tasks, READ_ONLY,
// DRAINING, not durable) is an *Error, and then nothing was submitted.
func (c *Client) SubmitBatch(ctx context.Context, tasks []cp.BatchTask) (*Response[cp.BatchResponse], error) {
	return call[cp.BatchResponse](ctx, c, http.MethodPost, "/v1/batch/tasks", cp.BatchRequest{Tasks: tasks})
}

// TaskQuery filters GET /v1/tasks; zero fields are left out.
type TaskQuery struct {
	State  string // QUEUED, ASSIGNED, ...
	Domain string
	Limit  int
	After  string // page on after this task id (TaskList.NextAfter)
}

// Tasks is GET /v1/tasks.
func (c *Client) Tasks(ctx context.Context, q TaskQuery) (*Response[cp.TaskList], error) {
	v := url.Values{}
	if q.State != "" {
		v.Set("state", q.State)
	}
	if q.Domain != "" {
		v.Set("domain", q.Domain)
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.After != "" {
		v.Set("after", q.After)
	}
	path := "/v1/tasks"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	return call[cp.TaskList](ctx, c, http.MethodGet, path, nil)
}

// Task is GET /v1/tasks/{id}.
func (c *Client) Task(ctx context.Context, id core.TaskID) (*Response[cp.TaskView], error) {
	return call[cp.TaskView](ctx, c, http.MethodGet, "/v1/tasks/"+url.PathEscape(string(id)), nil)
}

// Cancel is POST /v1/tasks/{id}/cancel.
func (c *Client) Cancel(ctx context.Context, id core.TaskID, reason string) (*Response[cp.TaskView], error) {
	return call[cp.TaskView](ctx, c, http.MethodPost, "/v1/tasks/"+url.PathEscape(string(id))+"/cancel", cp.ReasonRequest{Reason: reason})
}

// Agents is GET /v1/agents.
func (c *Client) Agents(ctx context.Context) (*Response[cp.AgentList], error) {
	return call[cp.AgentList](ctx, c, http.MethodGet, "/v1/agents", nil)
}

// Agent is GET /v1/agents/{id}.
func (c *Client) Agent(ctx context.Context, id core.AgentID) (*Response[core.AgentView], error) {
	return call[core.AgentView](ctx, c, http.MethodGet, "/v1/agents/"+url.PathEscape(string(id)), nil)
}

// Quarantine is POST /v1/agents/{id}/quarantine (admin token).
func (c *Client) Quarantine(ctx context.Context, id core.AgentID, reason string) (*Response[core.AgentView], error) {
	return c.agentAction(ctx, id, "quarantine", reason)
}

// Release is POST /v1/agents/{id}/release (admin token).
func (c *Client) Release(ctx context.Context, id core.AgentID, reason string) (*Response[core.AgentView], error) {
	return c.agentAction(ctx, id, "release", reason)
}

func (c *Client) agentAction(ctx context.Context, id core.AgentID, action, reason string) (*Response[core.AgentView], error) {
	return call[core.AgentView](ctx, c, http.MethodPost, "/v1/agents/"+url.PathEscape(string(id))+"/"+action, cp.ReasonRequest{Reason: reason})
}

// Purge is POST /scheduler/queue/purge (admin token).
func (c *Client) Purge(ctx context.Context, req cp.PurgeRequest) (*Response[cp.PurgeResult], error) {
	return call[cp.PurgeResult](ctx, c, http.MethodPost, "/scheduler/queue/purge", req)
}

// Timeline is GET /timeline?since=SINCE&limit=LIMIT.
func (c *Client) Timeline(ctx context.Context, since uint64, limit int) (*Response[cp.TimelinePage], error) {
	return call[cp.TimelinePage](ctx, c, http.MethodGet, fmt.Sprintf("/timeline?since=%d&limit=%d", since, limit), nil)
}

// RaftMembers is GET /admin/raft/members.
func (c *Client) RaftMembers(ctx context.Context) (*Response[cp.MembersView], error) {
	return call[cp.MembersView](ctx, c, http.MethodGet, "/admin/raft/members", nil)
}

// RaftAdd is POST /admin/raft/members (admin token).
func (c *Client) RaftAdd(ctx context.Context, id, raftAddr string) (*Response[cp.MembersView], error) {
	return call[cp.MembersView](ctx, c, http.MethodPost, "/admin/raft/members", cp.AddMemberRequest{ID: id, RaftAddr: raftAddr})
}

// RaftRemove is DELETE /admin/raft/members/{id} (admin token).
func (c *Client) RaftRemove(ctx context.Context, id string) (*Response[cp.MembersView], error) {
	return call[cp.MembersView](ctx, c, http.MethodDelete, "/admin/raft/members/"+url.PathEscape(id), nil)
}

// RaftTransfer is POST /admin/raft/transfer-leadership (admin token).
func (c *Client) RaftTransfer(ctx context.Context) (*Response[map[string]string], error) {
	return call[map[string]string](ctx, c, http.MethodPost, "/admin/raft/transfer-leadership", nil)
}
