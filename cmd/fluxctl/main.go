// Command fluxctl is the FluxForge operator CLI. It talks to the control
// plane's HTTP API and prints human tables (or the raw JSON with -o json).
//
//	fluxctl snapshot
//	fluxctl mode get
//	fluxctl mode set DRAINING -reason "restart for upgrade"
//	fluxctl submit -sleep 200ms -domain zone-a -priority high -key job-42
//	fluxctl submit -exec -- /bin/echo hi
//	fluxctl tasks -state QUEUED -domain zone-a -limit 50
//	fluxctl task t-000042
//	fluxctl cancel t-000042
//	fluxctl agents
//	fluxctl agent edge-7
//	fluxctl quarantine edge-7 -reason "bad disk" | fluxctl release edge-7
//	fluxctl purge -all | -domain zone-a | -older-than 10m
//	fluxctl timeline -since 120 -limit 50
//	fluxctl bench -n 20000 -c 32   (load generator: submissions/s, p50/p99)
//
// The control plane is -cp (default http://127.0.0.1:8080, env FLUX_CP); the
// admin token comes from FLUX_ADMIN_TOKEN. Global flags go before or after
// the subcommand.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// cli holds the global options and the output streams.
type cli struct {
	cpURL  string
	output string
	token  string
	stdout io.Writer
	stderr io.Writer
	http   *http.Client
}

const usage = `Usage: fluxctl [-cp URL] [-o table|json] COMMAND [flags] [args]

Commands:
  snapshot                      scheduler snapshot (mode, queue, domains, agents)
  mode get | mode set MODE      read or set the mode (NORMAL, DEGRADED, READ_ONLY, DRAINING) [-reason]
  submit                        submit a task: -sleep DURATION | -exec -- ARGV...; -domain -priority -timeout -max-attempts -key
  tasks                         list tasks [-state -domain -limit -after]
  task ID                       one task with its attempts and why it waits
  cancel ID                     cancel a task [-reason]
  agents                        list agents
  agent ID                      one agent with its health score components
  quarantine ID | release ID    operator quarantine [-reason]
  purge                         cancel queued tasks: -all | -domain D | -older-than DURATION
  timeline                      audit events [-since SEQ -limit N | -tail N]
  bench                         load generator: -n -c -sleep; prints submissions/s and latency percentiles

Environment: FLUX_CP (control plane URL), FLUX_ADMIN_TOKEN (admin token).
`

// run executes one command and returns the exit status: 0 ok, 1 the
// request failed, 2 usage error.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := &cli{cpURL: "http://127.0.0.1:8080", output: "table", token: getenv("FLUX_ADMIN_TOKEN"),
		stdout: stdout, stderr: stderr, http: &http.Client{Timeout: 30 * time.Second}}
	defer c.http.CloseIdleConnections()
	if v := getenv("FLUX_CP"); v != "" {
		c.cpURL = v
	}
	fs := flag.NewFlagSet("fluxctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	c.common(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := rest[0], rest[1:]
	err := c.dispatch(cmd, rest)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "fluxctl %s: %v\n", cmd, err)
		return 2
	default:
		fmt.Fprintf(stderr, "fluxctl %s: %v\n", cmd, err)
		return 1
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// common registers the global flags on fs, so they work after the
// subcommand too.
func (c *cli) common(fs *flag.FlagSet) {
	fs.StringVar(&c.cpURL, "cp", c.cpURL, "control plane base URL (env FLUX_CP)")
	fs.StringVar(&c.output, "o", c.output, "output: table or json")
}

// parse parses a subcommand's flags, allowing flags and positional
// arguments in any order.
func (c *cli) parse(fs *flag.FlagSet, args []string, positional int) ([]string, error) {
	fs.SetOutput(c.stderr)
	c.common(fs)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if positional >= 0 && len(pos) != positional {
		return nil, usagef("want %d argument(s), got %d: %q", positional, len(pos), pos)
	}
	if c.output != "table" && c.output != "json" {
		return nil, usagef("-o must be table or json, not %q", c.output)
	}
	return pos, nil
}

func (c *cli) dispatch(cmd string, args []string) error {
	switch cmd {
	case "snapshot":
		return c.snapshot(args)
	case "mode":
		return c.mode(args)
	case "submit":
		return c.submit(args)
	case "tasks":
		return c.tasks(args)
	case "task":
		return c.task(args)
	case "cancel":
		return c.cancel(args)
	case "agents":
		return c.agents(args)
	case "agent":
		return c.agent(args)
	case "quarantine", "release":
		return c.quarantine(cmd, args)
	case "purge":
		return c.purge(args)
	case "timeline":
		return c.timeline(args)
	case "bench":
		return c.bench(args)
	case "help":
		fmt.Fprint(c.stdout, usage)
		return nil
	}
	return usagef("unknown command %q (see fluxctl help)", cmd)
}

// apiError is the control plane's JSON error.
type apiError struct {
	Status  int
	Code    string `json:"error"`
	Message string `json:"message"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// call sends a request and returns the raw JSON response body.
func (c *cli) call(method, path string, body any, headers ...string) ([]byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, strings.TrimRight(c.cpURL, "/")+path, rd)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode/100 != 2 {
		e := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(raw, e) != nil || e.Code == "" {
			e.Code, e.Message = http.StatusText(resp.StatusCode), strings.TrimSpace(string(raw))
		}
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			e.Message += " (retry after " + ra + "s)"
		}
		if resp.StatusCode == http.StatusUnauthorized {
			e.Message += " (set FLUX_ADMIN_TOKEN)"
		}
		return nil, resp.Header, e
	}
	return raw, resp.Header, nil
}

// show prints raw as indented JSON with -o json, or calls table with the
// decoded value.
func show[T any](c *cli, raw []byte, table func(w *tabwriter.Writer, v T)) error {
	if c.output == "json" {
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return err
		}
		buf.WriteByte('\n')
		_, err := c.stdout.Write(buf.Bytes())
		return err
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	table(w, v)
	return w.Flush()
}

// The response shapes the tables need (a subset of the API's fields).
type (
	snapshotView struct {
		Mode                 string  `json:"mode"`
		ModeSetBy            string  `json:"mode_set_by"`
		ModeReason           string  `json:"mode_reason"`
		Drained              bool    `json:"drained"`
		ReschedulingPaused   bool    `json:"rescheduling_paused"`
		PausedReason         string  `json:"paused_reason"`
		QueueDepth           int     `json:"queue_depth"`
		QueueCapacity        int     `json:"queue_capacity"`
		OldestTaskAgeSeconds float64 `json:"oldest_task_age_seconds"`
		InFlight             int     `json:"in_flight"`
		Agents               struct {
			Known, Connected, Quarantined int
		} `json:"agents"`
		Domains []struct {
			Name              string  `json:"name"`
			State             string  `json:"state"`
			FailureRate       float64 `json:"failure_rate"`
			Volume            int     `json:"volume"`
			Agents            int     `json:"agents"`
			AgentsConnected   int     `json:"agents_connected"`
			AgentsQuarantined int     `json:"agents_quarantined"`
			Slots             int     `json:"slots"`
			FreeSlots         int     `json:"free_slots"`
			Active            int     `json:"active"`
			Queued            int     `json:"queued"`
			Reason            string  `json:"reason"`
		} `json:"domains"`
		Blocked map[string]struct {
			Outcome string `json:"outcome"`
			Reason  string `json:"reason"`
		} `json:"blocked"`
	}
	attemptView struct {
		Attempt    int       `json:"attempt"`
		AgentID    string    `json:"agent_id"`
		Domain     string    `json:"domain"`
		AssignedAt time.Time `json:"assigned_at"`
		EndedAt    time.Time `json:"ended_at"`
		Outcome    string    `json:"outcome"`
		Error      string    `json:"error"`
	}
	taskView struct {
		ID             string `json:"id"`
		IdempotencyKey string `json:"idempotency_key"`
		Spec           struct {
			Kind           string   `json:"kind"`
			Argv           []string `json:"argv"`
			DurationMS     int64    `json:"duration_ms"`
			Domain         string   `json:"domain"`
			Priority       string   `json:"priority"`
			TimeoutSeconds int      `json:"timeout_seconds"`
			MaxAttempts    int      `json:"max_attempts"`
		} `json:"spec"`
		State         string        `json:"state"`
		Attempt       int           `json:"attempt"`
		Failures      int           `json:"failures"`
		AgentID       string        `json:"agent_id"`
		SubmittedAt   time.Time     `json:"submitted_at"`
		UpdatedAt     time.Time     `json:"updated_at"`
		Reason        string        `json:"reason"`
		Output        string        `json:"output"`
		ExitCode      int           `json:"exit_code"`
		WaitingReason string        `json:"waiting_reason"`
		Attempts      []attemptView `json:"attempts"`
	}
	taskList struct {
		Tasks     []taskView `json:"tasks"`
		Count     int        `json:"count"`
		NextAfter string     `json:"next_after"`
	}
	healthView struct {
		Score     float64 `json:"score"`
		Heartbeat float64 `json:"heartbeat"`
		Success   float64 `json:"success"`
		Flaps     float64 `json:"flaps"`
		Latency   float64 `json:"latency"`
		FlapCount int     `json:"flap_count"`
	}
	agentView struct {
		ID               string     `json:"id"`
		Domain           string     `json:"domain"`
		Address          string     `json:"address"`
		Slots            int        `json:"slots"`
		Running          int        `json:"running"`
		Connected        bool       `json:"connected"`
		Stopping         bool       `json:"stopping"`
		AllowsExec       bool       `json:"allows_exec"`
		Quarantined      bool       `json:"quarantined"`
		QuarantinedBy    string     `json:"quarantined_by"`
		QuarantinedUntil time.Time  `json:"quarantined_until"`
		Quarantines      int        `json:"quarantine_count"`
		Health           healthView `json:"health"`
		LastHeartbeat    time.Time  `json:"last_heartbeat"`
		Tasks            []struct {
			TaskID  string `json:"task_id"`
			Attempt int    `json:"attempt"`
		} `json:"tasks"`
	}
	agentList struct {
		Agents []agentView `json:"agents"`
		Count  int         `json:"count"`
	}
	modeView struct {
		Mode   string `json:"mode"`
		SetBy  string `json:"set_by"`
		Reason string `json:"reason"`
	}
	eventView struct {
		Seq     uint64    `json:"seq"`
		Time    time.Time `json:"time"`
		Type    string    `json:"type"`
		TaskID  string    `json:"task_id"`
		AgentID string    `json:"agent_id"`
		Domain  string    `json:"domain"`
		Attempt int       `json:"attempt"`
		Actor   string    `json:"actor"`
		Reason  string    `json:"reason"`
		Count   int       `json:"count"`
	}
	timelineView struct {
		Events    []eventView `json:"events"`
		LastSeq   uint64      `json:"last_seq"`
		NextSince uint64      `json:"next_since"`
	}
	purgeView struct {
		Purged     int `json:"purged"`
		QueueDepth int `json:"queue_depth"`
	}
)

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (c *cli) snapshot(args []string) error {
	if _, err := c.parse(flag.NewFlagSet("snapshot", flag.ContinueOnError), args, 0); err != nil {
		return err
	}
	raw, _, err := c.call("GET", "/scheduler/debug/snapshot", nil)
	if err != nil {
		return err
	}
	return show(c, raw, func(w *tabwriter.Writer, s snapshotView) {
		fmt.Fprintf(w, "mode:\t%s (set by %s: %s)\n", s.Mode, s.ModeSetBy, s.ModeReason)
		if s.Mode == "DRAINING" {
			fmt.Fprintf(w, "drained:\t%s\n", yes(s.Drained))
		}
		if s.ReschedulingPaused {
			fmt.Fprintf(w, "rescheduling:\tPAUSED (%s)\n", s.PausedReason)
		}
		fmt.Fprintf(w, "queue:\t%d / %d (oldest %.0fs)\n", s.QueueDepth, s.QueueCapacity, s.OldestTaskAgeSeconds)
		fmt.Fprintf(w, "in flight:\t%d\n", s.InFlight)
		fmt.Fprintf(w, "agents:\t%d known, %d connected, %d quarantined\n", s.Agents.Known, s.Agents.Connected, s.Agents.Quarantined)
		fmt.Fprintln(w)
		fmt.Fprintln(w, "DOMAIN\tSTATE\tFAILURE RATE\tVOLUME\tAGENTS\tCONNECTED\tQUARANTINED\tSLOTS\tFREE\tACTIVE\tQUEUED\tREASON")
		for _, d := range s.Domains {
			fmt.Fprintf(w, "%s\t%s\t%.2f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", d.Name, d.State, d.FailureRate, d.Volume,
				d.Agents, d.AgentsConnected, d.AgentsQuarantined, d.Slots, d.FreeSlots, d.Active, d.Queued, dash(d.Reason))
		}
		if len(s.Blocked) > 0 {
			fmt.Fprintln(w)
			fmt.Fprintln(w, "WAITING FOR\tOUTCOME\tREASON")
			keys := make([]string, 0, len(s.Blocked))
			for k := range s.Blocked {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				name := k
				if name == "" {
					name = "(any domain)"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", name, s.Blocked[k].Outcome, s.Blocked[k].Reason)
			}
		}
	})
}

func (c *cli) mode(args []string) error {
	fs := flag.NewFlagSet("mode", flag.ContinueOnError)
	reason := fs.String("reason", "", "why (recorded on the timeline)")
	pos, err := c.parse(fs, args, -1)
	if err != nil {
		return err
	}
	var raw []byte
	switch {
	case len(pos) == 1 && pos[0] == "get":
		raw, _, err = c.call("GET", "/admin/mode", nil)
	case len(pos) == 2 && pos[0] == "set":
		raw, _, err = c.call("POST", "/admin/mode", map[string]string{"mode": strings.ToUpper(pos[1]), "reason": *reason})
	default:
		return usagef("use: mode get | mode set MODE [-reason TEXT]")
	}
	if err != nil {
		return err
	}
	return show(c, raw, func(w *tabwriter.Writer, m modeView) {
		fmt.Fprintf(w, "%s\t(set by %s: %s)\n", m.Mode, m.SetBy, m.Reason)
	})
}

func (c *cli) submit(args []string) error {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	sleep := fs.Duration("sleep", -1, "a sleep task of this duration (e.g. 200ms)")
	exec := fs.Bool("exec", false, "an exec task: the arguments after -- are its argv (no shell)")
	domain := fs.String("domain", "", "run only in this failure domain")
	priority := fs.String("priority", "", "high, normal or low")
	timeout := fs.Duration("timeout", 0, "task timeout (whole seconds; default the cp's)")
	attempts := fs.Int("max-attempts", 0, "attempts before the task is DEAD (default the cp's)")
	key := fs.String("key", "", "Idempotency-Key: a retry with the same key returns the same task")
	pos, err := c.parse(fs, args, -1)
	if err != nil {
		return err
	}
	body := map[string]any{}
	switch {
	case *exec && *sleep >= 0:
		return usagef("-sleep and -exec exclude each other")
	case *exec:
		if len(pos) == 0 {
			return usagef("-exec needs the argv after --, e.g. submit -exec -- /bin/echo hi")
		}
		body["kind"], body["argv"] = "exec", pos
	case *sleep >= 0:
		if len(pos) > 0 {
			return usagef("unexpected arguments %q for a sleep task", pos)
		}
		body["kind"], body["duration_ms"] = "sleep", sleep.Milliseconds()
	default:
		return usagef("say what to run: -sleep DURATION or -exec -- ARGV...")
	}
	if *domain != "" {
		body["domain"] = *domain
	}
	if *priority != "" {
		body["priority"] = *priority
	}
	if *timeout > 0 {
		body["timeout_seconds"] = int(timeout.Round(time.Second).Seconds())
	}
	if *attempts > 0 {
		body["max_attempts"] = *attempts
	}
	var hdr []string
	if *key != "" {
		hdr = []string{"Idempotency-Key", *key}
	}
	raw, h, err := c.call("POST", "/v1/tasks", body, hdr...)
	if err != nil {
		return err
	}
	return show(c, raw, func(w *tabwriter.Writer, t taskView) {
		note := "submitted"
		if h.Get("Idempotent-Replayed") == "true" {
			note = "already submitted (idempotent replay)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", t.ID, t.State, note)
	})
}

func (c *cli) tasks(args []string) error {
	fs := flag.NewFlagSet("tasks", flag.ContinueOnError)
	state := fs.String("state", "", "QUEUED, ASSIGNED, RUNNING, SUCCEEDED, FAILED, CANCELLED or DEAD")
	domain := fs.String("domain", "", "only tasks constrained to this domain")
	limit := fs.Int("limit", 0, "at most this many (1-1000, default 100)")
	after := fs.String("after", "", "page on after this task id")
	if _, err := c.parse(fs, args, 0); err != nil {
		return err
	}
	q := url.Values{}
	if *state != "" {
		q.Set("state", strings.ToUpper(*state))
	}
	if *domain != "" {
		q.Set("domain", *domain)
	}
	if *limit != 0 {
		q.Set("limit", strconv.Itoa(*limit))
	}
	if *after != "" {
		q.Set("after", *after)
	}
	path := "/v1/tasks"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	raw, _, err := c.call("GET", path, nil)
	if err != nil {
		return err
	}
	return show(c, raw, func(w *tabwriter.Writer, l taskList) {
		fmt.Fprintln(w, "ID\tSTATE\tKIND\tDOMAIN\tPRIORITY\tATTEMPT\tAGENT\tREASON")
		for _, t := range l.Tasks {
			reason := t.Reason
			if t.WaitingReason != "" {
				reason = t.WaitingReason
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", t.ID, t.State, t.Spec.Kind, dash(t.Spec.Domain),
				t.Spec.Priority, t.Attempt, dash(t.AgentID), dash(reason))
		}
		if l.NextAfter != "" {
			fmt.Fprintf(w, "(more: -after %s)\n", l.NextAfter)
		}
	})
}

func (c *cli) task(args []string) error {
	pos, err := c.parse(flag.NewFlagSet("task", flag.ContinueOnError), args, 1)
	if err != nil {
		return err
	}
	raw, _, err := c.call("GET", "/v1/tasks/"+url.PathEscape(pos[0]), nil)
	if err != nil {
		return err
	}
	return show(c, raw, printTask)
}

func printTask(w *tabwriter.Writer, t taskView) {
	what := fmt.Sprintf("sleep %dms", t.Spec.DurationMS)
	if t.Spec.Kind == "exec" {
		what = "exec " + strings.Join(t.Spec.Argv, " ")
	}
	fmt.Fprintf(w, "id:\t%s\n", t.ID)
	fmt.Fprintf(w, "state:\t%s\n", t.State)
	if t.WaitingReason != "" {
		fmt.Fprintf(w, "waiting:\t%s\n", t.WaitingReason)
	}
	if t.Reason != "" {
		fmt.Fprintf(w, "reason:\t%s\n", t.Reason)
	}
	fmt.Fprintf(w, "task:\t%s\n", what)
	fmt.Fprintf(w, "domain:\t%s\n", dash(t.Spec.Domain))
	fmt.Fprintf(w, "priority:\t%s\n", t.Spec.Priority)
	fmt.Fprintf(w, "timeout:\t%ds\n", t.Spec.TimeoutSeconds)
	fmt.Fprintf(w, "attempts:\t%d (failures %d of %d)\n", t.Attempt, t.Failures, t.Spec.MaxAttempts)
	fmt.Fprintf(w, "agent:\t%s\n", dash(t.AgentID))
	if t.IdempotencyKey != "" {
		fmt.Fprintf(w, "idempotency key:\t%s\n", t.IdempotencyKey)
	}
	fmt.Fprintf(w, "submitted:\t%s\n", t.SubmittedAt.Format(time.RFC3339))
	if t.State == "SUCCEEDED" || t.State == "FAILED" {
		fmt.Fprintf(w, "exit code:\t%d\n", t.ExitCode)
	}
	if t.Output != "" {
		fmt.Fprintf(w, "output:\t%q\n", t.Output)
	}
	if len(t.Attempts) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "ATTEMPT\tAGENT\tDOMAIN\tASSIGNED\tOUTCOME\tERROR")
		for _, a := range t.Attempts {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", a.Attempt, a.AgentID, a.Domain, a.AssignedAt.Format(time.RFC3339),
				dash(a.Outcome), dash(a.Error))
		}
	}
}

func (c *cli) cancel(args []string) error {
	fs := flag.NewFlagSet("cancel", flag.ContinueOnError)
	reason := fs.String("reason", "", "why")
	pos, err := c.parse(fs, args, 1)
	if err != nil {
		return err
	}
	raw, _, err := c.call("POST", "/v1/tasks/"+url.PathEscape(pos[0])+"/cancel", map[string]string{"reason": *reason})
	if err != nil {
		return err
	}
	return show(c, raw, func(w *tabwriter.Writer, t taskView) { fmt.Fprintf(w, "%s\t%s\n", t.ID, t.State) })
}

func (c *cli) agents(args []string) error {
	if _, err := c.parse(flag.NewFlagSet("agents", flag.ContinueOnError), args, 0); err != nil {
		return err
	}
	raw, _, err := c.call("GET", "/v1/agents", nil)
	if err != nil {
		return err
	}
	return show(c, raw, func(w *tabwriter.Writer, l agentList) {
		fmt.Fprintln(w, "AGENT\tDOMAIN\tCONNECTED\tQUARANTINED\tSCORE\tRUNNING\tSLOTS\tLAST HEARTBEAT")
		for _, a := range l.Agents {
			q := yes(a.Quarantined)
			if a.Quarantined {
				q += " (" + a.QuarantinedBy + ")"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.2f\t%d\t%d\t%s\n", a.ID, a.Domain, yes(a.Connected), q, a.Health.Score,
				a.Running, a.Slots, a.LastHeartbeat.Format(time.RFC3339))
		}
	})
}

func (c *cli) agent(args []string) error {
	pos, err := c.parse(flag.NewFlagSet("agent", flag.ContinueOnError), args, 1)
	if err != nil {
		return err
	}
	raw, _, err := c.call("GET", "/v1/agents/"+url.PathEscape(pos[0]), nil)
	if err != nil {
		return err
	}
	return show(c, raw, printAgent)
}

func printAgent(w *tabwriter.Writer, a agentView) {
	fmt.Fprintf(w, "agent:\t%s\n", a.ID)
	fmt.Fprintf(w, "domain:\t%s\n", a.Domain)
	fmt.Fprintf(w, "address:\t%s\n", dash(a.Address))
	fmt.Fprintf(w, "connected:\t%s (last heartbeat %s)\n", yes(a.Connected), a.LastHeartbeat.Format(time.RFC3339))
	q := yes(a.Quarantined)
	if a.Quarantined {
		q += " by " + a.QuarantinedBy
		if !a.QuarantinedUntil.IsZero() {
			q += " until at least " + a.QuarantinedUntil.Format(time.RFC3339)
		}
	}
	fmt.Fprintf(w, "quarantined:\t%s (%d recent)\n", q, a.Quarantines)
	h := a.Health
	fmt.Fprintf(w, "health score:\t%.2f (heartbeat %.2f, success %.2f, flaps %.2f [%d], latency %.2f)\n",
		h.Score, h.Heartbeat, h.Success, h.Flaps, h.FlapCount, h.Latency)
	fmt.Fprintf(w, "slots:\t%d (%d running)\n", a.Slots, a.Running)
	fmt.Fprintf(w, "exec allowed:\t%s\n", yes(a.AllowsExec))
	for _, t := range a.Tasks {
		fmt.Fprintf(w, "task:\t%s attempt %d\n", t.TaskID, t.Attempt)
	}
}

func (c *cli) quarantine(cmd string, args []string) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	reason := fs.String("reason", "", "why (recorded on the timeline)")
	pos, err := c.parse(fs, args, 1)
	if err != nil {
		return err
	}
	raw, _, err := c.call("POST", "/v1/agents/"+url.PathEscape(pos[0])+"/"+cmd, map[string]string{"reason": *reason})
	if err != nil {
		return err
	}
	return show(c, raw, printAgent)
}

func (c *cli) purge(args []string) error {
	fs := flag.NewFlagSet("purge", flag.ContinueOnError)
	all := fs.Bool("all", false, "every queued task")
	domain := fs.String("domain", "", "queued tasks constrained to this domain")
	older := fs.Duration("older-than", 0, "queued tasks waiting at least this long (e.g. 10m)")
	reason := fs.String("reason", "", "why (recorded on the timeline)")
	if _, err := c.parse(fs, args, 0); err != nil {
		return err
	}
	body := map[string]any{}
	n := 0
	if *all {
		body["all"] = true
		n++
	}
	if *domain != "" {
		body["domain"] = *domain
		n++
	}
	if *older != 0 {
		if *older < time.Second {
			return usagef("-older-than must be at least 1s")
		}
		body["older_than_seconds"] = int64(older.Seconds())
		n++
	}
	if n != 1 {
		return usagef("give exactly one of -all, -domain D, -older-than DURATION")
	}
	if *reason != "" {
		body["reason"] = *reason
	}
	raw, _, err := c.call("POST", "/scheduler/queue/purge", body)
	if err != nil {
		return err
	}
	return show(c, raw, func(w *tabwriter.Writer, p purgeView) {
		fmt.Fprintf(w, "purged %d queued task(s); queue depth now %d\n", p.Purged, p.QueueDepth)
	})
}

func (c *cli) timeline(args []string) error {
	fs := flag.NewFlagSet("timeline", flag.ContinueOnError)
	since := fs.Uint64("since", 0, "events after this sequence number")
	limit := fs.Int("limit", 100, "at most this many (1-10000)")
	tail := fs.Int("tail", 0, "only the latest N events (1-10000)")
	if _, err := c.parse(fs, args, 0); err != nil {
		return err
	}
	if *tail != 0 {
		if *since != 0 {
			return usagef("-tail and -since do not go together")
		}
		if *tail < 1 || *tail > 10000 {
			return usagef("-tail must be between 1 and 10000")
		}
		// Ask for the newest sequence number first, then page from there.
		raw, _, err := c.call("GET", "/timeline?since=0&limit=1", nil)
		if err != nil {
			return err
		}
		var tl timelineView
		if err := json.Unmarshal(raw, &tl); err != nil {
			return fmt.Errorf("timeline: %w", err)
		}
		*since = tl.LastSeq - min(tl.LastSeq, uint64(*tail))
		*limit = *tail
	}
	raw, _, err := c.call("GET", fmt.Sprintf("/timeline?since=%d&limit=%d", *since, *limit), nil)
	if err != nil {
		return err
	}
	return show(c, raw, func(w *tabwriter.Writer, tl timelineView) {
		fmt.Fprintln(w, "SEQ\tTIME\tTYPE\tSUBJECT\tACTOR\tREASON")
		for _, e := range tl.Events {
			var subj []string
			for _, s := range []string{e.TaskID, e.AgentID, e.Domain} {
				if s != "" {
					subj = append(subj, s)
				}
			}
			if e.Attempt > 0 {
				subj = append(subj, fmt.Sprintf("attempt %d", e.Attempt))
			}
			if e.Count > 0 {
				subj = append(subj, fmt.Sprintf("%d tasks", e.Count))
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format("15:04:05.000"), e.Type,
				dash(strings.Join(subj, " ")), e.Actor, dash(e.Reason))
		}
		if len(tl.Events) > 0 && tl.NextSince < tl.LastSeq {
			fmt.Fprintf(w, "(more: -since %d)\n", tl.NextSince)
		}
	})
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
