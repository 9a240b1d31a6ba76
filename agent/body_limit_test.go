package agent

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	fnet "github.com/fluxforge/fluxforge/net"
)

// unreadBody records whether the handler read it: a body declared too
// large must be refused before any of it is read.
type unreadBody struct{ read bool }

func (b *unreadBody) Read(p []byte) (int, error) {
	b.read = true
	for i := range p {
		p[i] = '!'
	}
	return len(p), nil
}

// TestAgentRefusesDeclaredTooLarge: an order whose Content-Length is over
// its bound gets 413 with a JSON error before a byte is read, is logged
// like other refusals, and starts or stops nothing; one of unknown length
// (chunked) gets 413 once reading passes the bound; 2 MB of garbage over a
// real connection is too large, not bad JSON.
func TestAgentRefusesDeclaredTooLarge(t *testing.T) {
	stub := newStubCP(t)
	logs := &lockedLog{}
	d := startDaemon(t, stub.srv.URL, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(logs, nil)) })
	h := d.Handler()
	check := func(t *testing.T, rec *httptest.ResponseRecorder) {
		t.Helper()
		var e map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != http.StatusRequestEntityTooLarge ||
			len(e) != 2 || e["error"] != "too_large" || e["message"] == "" {
			t.Fatalf("status %d, body %s", rec.Code, rec.Body)
		}
	}
	for _, tc := range []struct {
		path string
		max  int64
	}{{fnet.PathAssign, assignBodyMax}, {fnet.PathCancel, cancelBodyMax}} {
		t.Run("declared "+tc.path, func(t *testing.T) {
			body := &unreadBody{}
			req := httptest.NewRequest("POST", tc.path, body)
			req.ContentLength = tc.max + 1
			req.Header.Set("Authorization", "Bearer "+testToken)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			check(t, rec)
			if body.read {
				t.Fatal("the body was read")
			}
		})
	}
	t.Run("chunked", func(t *testing.T) {
		body := io.MultiReader(strings.NewReader(`{"task_id":"`), strings.NewReader(strings.Repeat("a", assignBodyMax)))
		req := httptest.NewRequest("POST", fnet.PathAssign, body)
		req.ContentLength = -1
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		check(t, rec)
	})
	t.Run("garbage over the wire", func(t *testing.T) {
		req, _ := http.NewRequest("POST", d.srv.URL+fnet.PathAssign, bytes.NewReader(bytes.Repeat([]byte{0xff}, 2<<20)))
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct{ Error, Message string }
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge || e.Error != "too_large" {
			t.Fatalf("status %d, body %+v, %v", resp.StatusCode, e, err)
		}
	})
	if st := d.Status(); st.Stats.Accepted != 0 || st.Stats.Rejected != 0 || st.Stats.Cancelled != 0 || len(st.Running) != 0 {
		t.Fatalf("a refused order changed the agent: %+v", st)
	}
	d.stop(t)
	n := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"msg":"validation error"`) && strings.Contains(line, `"status":413`) {
			n++
		}
	}
	if n != 4 {
		t.Errorf("%d refusals logged, want 4:\n%s", n, logs.String())
	}
}
