package net

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

// HTTPClient performs protocol exchanges over HTTP, synchronously: the
// daemons own the goroutines that call it and turn it into an asynchronous
// Transport. It is safe for concurrent use.
type HTTPClient struct {
	HTTP  *http.Client // keep-alive client; nil means a default with a 10s timeout
	Token string       // agent token sent on every call
	CPURL string       // base URL of the control plane, for messages To CPNode
	// CPs, when set, are the cps of a cluster to follow (see CPTargets):
	// each exchange goes to the current one, a follower's not_leader
	// answer moves it to the leader named, an unreachable cp to the next.
	// CPURL is then unused.
	CPs *CPTargets
}

var defaultHTTP = &http.Client{Timeout: 10 * time.Second}

// StatusError is a non-2xx protocol response.
type StatusError struct {
	Status int
	Code   string
	Msg    string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("net: HTTP %d %s: %s", e.Status, e.Code, e.Msg)
}

// Do sends the heartbeat m to the control plane and returns its reply.
// Assignments and cancels travel the other way in poll replies (Poll):
// over HTTP nothing is sent to an agent.
func (c *HTTPClient) Do(ctx context.Context, m Message) (*Message, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if m.Kind != KindHeartbeat {
		return nil, fmt.Errorf("%w: %s is not sent over HTTP by itself (agents poll for assignments and cancels)", ErrBadMessage, m.Kind)
	}
	resp, err := c.post(ctx, PathHeartbeat, Encode(m.Heartbeat))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	reply := &Message{From: m.To, To: m.From, Seq: m.Seq, Kind: KindHeartbeatReply, HeartbeatReply: new(core.HeartbeatReply)}
	if err := DecodeReply(resp.Body, BodyMax, reply.HeartbeatReply); err != nil {
		return nil, err
	}
	return reply, nil
}

// post sends body to path on the current cp and returns a 2xx response
// (the caller closes its body), or the error: a *StatusError for another
// status. Following a cluster (CPs set), a follower's not_leader answer
// naming the leader sends the request there at once (one hop), and a cp
// that cannot be reached makes the next one current for the next call.
func (c *HTTPClient) post(ctx context.Context, path string, body []byte) (*http.Response, error) {
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	for hop := 0; ; hop++ {
		base := c.CPURL
		if c.CPs != nil {
			base = c.CPs.Current()
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+path, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		if c.Token != "" {
			req.Header.Set(HeaderAuthorization, "Bearer "+c.Token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			if c.CPs != nil && ctx.Err() == nil {
				c.CPs.Unreachable(base)
			}
			return nil, err
		}
		if resp.StatusCode/100 == 2 {
			return resp, nil
		}
		var e struct {
			Error     string `json:"error"`
			Message   string `json:"message"`
			LeaderURL string `json:"leader_url"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		resp.Body.Close()
		if c.CPs != nil && resp.StatusCode == http.StatusServiceUnavailable && e.Error == "not_leader" &&
			c.CPs.Redirect(base, e.LeaderURL) && hop == 0 {
			continue
		}
		return nil, &StatusError{Status: resp.StatusCode, Code: e.Error, Msg: e.Message}
	}
}

// CheckToken reports whether r carries "Authorization: Bearer <want>",
// compared in constant time. An empty want accepts every request.
func CheckToken(r *http.Request, want string) bool {
	if want == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get(HeaderAuthorization), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// WriteError writes the protocol's JSON error body.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(Encode(map[string]string{"error": code, "message": msg}))
}

// WriteJSON writes v with status.
func WriteJSON(w http.ResponseWriter, status int, v any) { WriteJSONBody(w, status, Encode(v)) }

// WriteJSONBody writes body, a JSON document already encoded, with status.
func WriteJSONBody(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// CheckContentLength refuses, before any of it is read, a body whose
// declared Content-Length is over max bytes (an error wrapping
// ErrTooLarge: 413 through DecodeStatus). A body of unknown length
// (chunked) passes: Decode bounds it while reading.
func CheckContentLength(r *http.Request, max int64) error {
	if r.ContentLength > max {
		return fmt.Errorf("%w: body of %d bytes is larger than %d bytes", ErrTooLarge, r.ContentLength, max)
	}
	return nil
}

// DecodeStatus maps a Decode error to the HTTP status and error code to
// answer with.
func DecodeStatus(err error) (int, string) {
	if errors.Is(err, ErrTooLarge) {
		return http.StatusRequestEntityTooLarge, "too_large"
	}
	return http.StatusBadRequest, "bad_request"
}

// Poll sends the long poll p to the control plane and returns its reply.
// The exchange lasts up to p.WaitMillis plus the round trip: give ctx (or
// the client's timeout) room for it.
func (c *HTTPClient) Poll(ctx context.Context, p PollRequest) (*PollReply, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	resp, err := c.post(ctx, PathPoll, Encode(p))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r PollReply
	if err := DecodeReply(resp.Body, PollReplyMax, &r); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// NewCPClient returns the HTTP client an agent talks to the control plane
// at cpURL with: HTTP/2, so the long poll and the heartbeats share one TCP
// connection (cleartext HTTP/2 with prior knowledge for http:// URLs, ALPN
// for https://), or HTTP/1.1 only with http1 (for proxies that cannot carry
// h2c: the poll and the heartbeats then use a connection each).
func NewCPClient(cpURL string, http1 bool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	var p http.Protocols
	switch {
	case http1:
		p.SetHTTP1(true)
	case strings.HasPrefix(cpURL, "https://"):
		p.SetHTTP1(true) // a server without h2 still works
		p.SetHTTP2(true)
	default:
		p.SetUnencryptedHTTP2(true)
	}
	tr.Protocols = &p
	if !http1 {
		tr.HTTP2 = &http.HTTP2Config{
			// Notice a dead connection under a held poll: ping when
			// nothing was read for a while.
			SendPingTimeout: 15 * time.Second,
			PingTimeout:     10 * time.Second,
		}
	}
	return &http.Client{Transport: tr}
}
