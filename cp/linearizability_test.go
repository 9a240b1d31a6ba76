package cp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/fluxforge/fluxforge/core"
)

// The history checker (as etcd's robustness tests do): concurrent clients
// submit, read, cancel and set the mode through random cps of a cluster
// while its leaders are killed and restarted; porcupine checks that the
// history is linearizable. A call that failed or timed out may or may not
// have happened: its output is unknown and it may take effect at any point
// after its call (its return is the end of time).
//
// The model is partitioned: each idempotency key's operations (its submit,
// the reads and cancels of the task it made) are one partition, the mode's
// another. No agent runs, so a task stays QUEUED until cancelled.

type linOp struct {
	kind string // submit, get, cancel, set_mode, get_mode
	key  string
	id   core.TaskID
	mode core.Mode
}

type linOut struct {
	unknown   bool // failed or timed out: may or may not have happened
	none      bool // refused before anything was proposed: left out of the history
	status    int
	id        core.TaskID
	cancelled bool
	mode      core.Mode
}

// keyState is one key's task in the model: submitted or not, its id ("" =
// made by a call whose answer was lost: any id), cancelled or not.
type keyState struct {
	submitted bool
	id        core.TaskID
	cancelled bool
}

func linModel() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
			parts := map[string][]porcupine.Operation{}
			var order []string
			for _, op := range h {
				in := op.Input.(linOp)
				p := in.key
				if in.kind == "set_mode" || in.kind == "get_mode" {
					p = "\x00mode"
				}
				if _, ok := parts[p]; !ok {
					order = append(order, p)
				}
				parts[p] = append(parts[p], op)
			}
			out := make([][]porcupine.Operation, 0, len(order))
			for _, p := range order {
				out = append(out, parts[p])
			}
			return out
		},
		Init: func() []any { return []any{keyState{}, core.ModeNormal} },
		Step: func(state, input, output any) []any {
			in, out := input.(linOp), output.(linOut)
			switch in.kind {
			case "set_mode":
				if out.unknown {
					return []any{state, in.mode}
				}
				if out.status == http.StatusOK {
					return []any{in.mode}
				}
				return []any{state}
			case "get_mode":
				if m, ok := state.(core.Mode); ok && (out.unknown || out.mode == m) {
					return []any{state}
				}
				return nil
			}
			s, ok := state.(keyState)
			if !ok {
				// The mode partition's initial state: a key partition
				// starts from the zero keyState.
				s = keyState{}
				if _, isMode := state.(core.Mode); !isMode {
					return nil
				}
			}
			switch in.kind {
			case "submit":
				made := keyState{submitted: true, id: out.id}
				switch {
				case out.unknown && s.submitted:
					return []any{s}
				case out.unknown:
					return []any{s, keyState{submitted: true}}
				case out.status == http.StatusCreated && !s.submitted:
					return []any{made}
				case out.status == http.StatusOK && s.submitted && (s.id == "" || s.id == out.id):
					s.id = out.id
					return []any{s}
				}
				return nil
			case "get":
				if !s.submitted || s.id != "" && s.id != in.id {
					return nil
				}
				if out.unknown || out.status == http.StatusOK && out.cancelled == s.cancelled {
					s.id = in.id
					return []any{s}
				}
				return nil
			case "cancel":
				if !s.submitted {
					return nil
				}
				done := s
				done.cancelled, done.id = true, in.id
				switch {
				case out.unknown:
					return []any{s, done}
				case out.status == http.StatusOK && !s.cancelled:
					return []any{done}
				case out.status == http.StatusConflict && s.cancelled:
					return []any{s}
				}
				return nil
			}
			return nil
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(linOp), output.(linOut)
			res := fmt.Sprintf("%d %s cancelled=%v %s", out.status, out.id, out.cancelled, out.mode)
			if out.unknown {
				res = "?"
			}
			return fmt.Sprintf("%s(%s %s %s) -> %s", in.kind, in.key, in.id, in.mode, res)
		},
	}
	return nm.ToModel()
}

func TestClusterHistoryIsLinearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("kills leaders of a real raft cluster")
	}
	tc := startCluster(t, 3)
	tc.awaitLeader()
	start := time.Now()
	now := func() int64 { return time.Since(start).Nanoseconds() }
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	hc := &http.Client{Timeout: 3 * time.Second}
	urls := make([]string, len(tc.nodes))
	for i, cn := range tc.nodes {
		urls[i] = cn.url
	}
	const clients = 4
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), 7))
			type known struct {
				key string
				id  core.TaskID
			}
			var mine []known
			n := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				url := urls[r.IntN(len(urls))]
				var in linOp
				switch x := r.IntN(10); {
				case x < 4 || len(mine) == 0:
					// A new key, or a retry of an old one.
					key := fmt.Sprintf("c%d-k%d", c, n)
					if len(mine) > 0 && x == 0 {
						key = mine[r.IntN(len(mine))].key
					} else {
						n++
					}
					in = linOp{kind: "submit", key: key}
				case x < 7:
					k := mine[r.IntN(len(mine))]
					in = linOp{kind: "get", key: k.key, id: k.id}
				case x < 9:
					k := mine[r.IntN(len(mine))]
					in = linOp{kind: "cancel", key: k.key, id: k.id}
				default:
					if r.IntN(2) == 0 {
						in = linOp{kind: "set_mode", mode: []core.Mode{core.ModeNormal, core.ModeDegraded}[r.IntN(2)]}
					} else {
						in = linOp{kind: "get_mode"}
					}
				}
				call := now()
				out := linCall(hc, url, in)
				ret := now()
				if out.unknown {
					ret = math.MaxInt64
				}
				if in.kind == "submit" && out.id != "" {
					found := false
					for _, k := range mine {
						found = found || k.key == in.key
					}
					if !found {
						mine = append(mine, known{in.key, out.id})
					}
				}
				if out.none {
					continue
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		}()
	}
	// Kill the leader three times, restarting it each time.
	for range 3 {
		time.Sleep(400 * time.Millisecond) // let traffic flow under this leader
		l := tc.leader()
		if l == nil {
			l = tc.awaitLeader()
		}
		tc.stop(l)
		tc.awaitLeader()
		tc.start(l)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()

	ok, unknown := 0, 0
	for _, op := range history {
		if op.Output.(linOut).unknown {
			unknown++
		} else {
			ok++
		}
	}
	res, info := porcupine.CheckOperationsVerbose(linModel(), history, 60*time.Second)
	t.Logf("history: %d operations (%d answered, %d unknown): %s", len(history), ok, unknown, res)
	if ok < 50 {
		t.Fatalf("only %d operations answered: the cluster did not serve", ok)
	}
	if res != porcupine.Ok {
		m := linModel()
		for _, part := range m.Partition(history) {
			if porcupine.CheckOperations(m, part) {
				continue
			}
			for _, op := range part {
				t.Logf("client %d [%d, %d] %s", op.ClientId, op.Call/1e6, op.Return/1e6, m.DescribeOperation(op.Input, op.Output))
			}
			break
		}
		path := t.TempDir() + "/history.html"
		_ = porcupine.VisualizePath(linModel(), info, path)
		t.Fatalf("history is %s (visualization: %s)", res, path)
	}
}

// linCall performs in against the cp at url.
func linCall(hc *http.Client, url string, in linOp) linOut {
	var (
		method, path, body string
		hdr                []string
	)
	switch in.kind {
	case "submit":
		method, path, body, hdr = "POST", "/v1/tasks", `{"kind":"sleep","duration_ms":1000}`, []string{HeaderIdempotencyKey, in.key}
	case "get":
		method, path = "GET", "/v1/tasks/"+string(in.id)
	case "cancel":
		method, path = "POST", "/v1/tasks/"+string(in.id)+"/cancel"
	case "set_mode":
		method, path, body = "POST", "/admin/mode", fmt.Sprintf(`{"mode":%q}`, in.mode)
	case "get_mode":
		method, path = "GET", "/admin/mode"
	}
	status, _, raw, err := rawCall(hc, method, url+path, body, hdr...)
	var opErr *net.OpError
	switch {
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return linOut{none: true} // the cp is down: nothing was sent
	case err != nil:
		return linOut{unknown: true}
	case status == http.StatusServiceUnavailable && definitelyRefused(raw):
		return linOut{none: true}
	case status >= 500:
		return linOut{unknown: true}
	}
	out := linOut{status: status}
	switch in.kind {
	case "submit", "get", "cancel":
		var tv TaskView
		if status/100 == 2 && json.Unmarshal(raw, &tv) == nil {
			out.id, out.cancelled = tv.ID, tv.State == core.TaskCancelled
		}
	case "set_mode", "get_mode":
		var mv ModeView
		if status/100 == 2 && json.Unmarshal(raw, &mv) == nil {
			out.mode = mv.Mode
		}
	}
	return out
}

func rawCall(hc *http.Client, method, url, body string, hdr ...string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// definitelyRefused reports whether a 503 body says the write was never
// proposed: no leader to send it to, or the node it reached was not the
// leader (raft refuses before appending).
func definitelyRefused(raw []byte) bool {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(raw, &e) != nil {
		return false
	}
	switch e.Error {
	case "no_leader", "not_leader", "no_state", "leader_unreachable":
		return true
	}
	return false
}
