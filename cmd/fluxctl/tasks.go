package main

import (
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp"
	"github.com/fluxforge/fluxforge/cp/client"
)

// The task commands: submit, tasks, task, cancel.

func (c *cli) submit(args []string) error {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	sleep := fs.Duration("sleep", -1, "a sleep task of this duration (e.g. 200ms)")
	exec := fs.Bool("exec", false, "an exec task: the arguments after -- are its argv (no shell)")
	domain := fs.String("domain", "", "run only in this failure domain")
	priority := fs.String("priority", "", "high, normal or low")
	timeout := fs.Duration("timeout", 0, "task timeout (whole seconds; default the cp's)")
	attempts := fs.Int("max-attempts", 0, "attempts before the task is DEAD (default the cp's)")
	key := fs.String("key", "", "Idempotency-Key: a retry with the same key returns the same task")
	file := fs.String("f", "", "submit the tasks of this file (- for stdin), one task JSON a line, in batches")
	batch := fs.Int("batch", cp.BatchTasksMax, "with -f: tasks per batch request (1-1000)")
	pos, err := c.parse(fs, args, -1)
	if err != nil {
		return err
	}
	if *file != "" {
		var other []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name != "f" && f.Name != "batch" && f.Name != "cp" && f.Name != "o" {
				other = append(other, "-"+f.Name)
			}
		})
		if len(other) > 0 || len(pos) > 0 {
			return usagef("-f takes the tasks from the file: %s and arguments do not apply", strings.Join(other, " "))
		}
		return c.submitFile(*file, *batch)
	}
	req := cp.SubmitRequest{Domain: *domain, Priority: *priority}
	switch {
	case *exec && *sleep >= 0:
		return usagef("-sleep and -exec exclude each other")
	case *exec:
		if len(pos) == 0 {
			return usagef("-exec needs the argv after --, e.g. submit -exec -- /bin/echo hi")
		}
		req.Kind, req.Argv = core.KindExec, pos
	case *sleep >= 0:
		if len(pos) > 0 {
			return usagef("unexpected arguments %q for a sleep task", pos)
		}
		req.Kind, req.DurationMS = core.KindSleep, sleep.Milliseconds()
	default:
		return usagef("say what to run: -sleep DURATION or -exec -- ARGV...")
	}
	if *timeout > 0 {
		req.TimeoutSeconds = int(timeout.Round(time.Second).Seconds())
	}
	if *attempts > 0 {
		req.MaxAttempts = *attempts
	}
	r, err := c.api().Submit(c.ctx(), req, *key)
	if err != nil {
		return err
	}
	return show(c, r, func(w *tabwriter.Writer, t cp.TaskView) {
		note := "submitted"
		if r.Replayed() {
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
	r, err := c.api().Tasks(c.ctx(), client.TaskQuery{State: strings.ToUpper(*state), Domain: *domain, Limit: *limit, After: *after})
	if err != nil {
		return err
	}
	return show(c, r, func(w *tabwriter.Writer, l cp.TaskList) {
		fmt.Fprintln(w, "ID\tSTATE\tKIND\tDOMAIN\tPRIORITY\tATTEMPT\tAGENT\tREASON")
		for _, t := range l.Tasks {
			reason := t.Reason
			if t.WaitingReason != "" {
				reason = t.WaitingReason
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", t.ID, t.State, t.Spec.Kind, dash(t.Spec.Domain),
				t.Spec.Priority, t.Attempt, dash(string(t.AgentID)), dash(reason))
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
	r, err := c.api().Task(c.ctx(), core.TaskID(pos[0]))
	if err != nil {
		return err
	}
	return show(c, r, printTask)
}

func printTask(w *tabwriter.Writer, t cp.TaskView) {
	what := fmt.Sprintf("sleep %dms", t.Spec.DurationMS)
	if t.Spec.Kind == core.KindExec {
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
	fmt.Fprintf(w, "agent:\t%s\n", dash(string(t.AgentID)))
	if t.IdempotencyKey != "" {
		fmt.Fprintf(w, "idempotency key:\t%s\n", t.IdempotencyKey)
	}
	fmt.Fprintf(w, "submitted:\t%s\n", t.SubmittedAt.Format(time.RFC3339))
	if t.State == core.TaskSucceeded || t.State == core.TaskFailed {
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
				dash(string(a.Outcome)), dash(a.Error))
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
	r, err := c.api().Cancel(c.ctx(), core.TaskID(pos[0]), *reason)
	if err != nil {
		return err
	}
	return show(c, r, func(w *tabwriter.Writer, t cp.TaskView) { fmt.Fprintf(w, "%s\t%s\n", t.ID, t.State) })
}
