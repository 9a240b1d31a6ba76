package main

import (
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp"
)

// The agent commands: agents, agent, quarantine, release.

func (c *cli) agents(args []string) error {
	if _, err := c.parse(flag.NewFlagSet("agents", flag.ContinueOnError), args, 0); err != nil {
		return err
	}
	r, err := c.api().Agents(c.ctx())
	if err != nil {
		return err
	}
	return show(c, r, func(w *tabwriter.Writer, l cp.AgentList) {
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
	r, err := c.api().Agent(c.ctx(), core.AgentID(pos[0]))
	if err != nil {
		return err
	}
	return show(c, r, printAgent)
}

func printAgent(w *tabwriter.Writer, a core.AgentView) {
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

// quarantine runs "quarantine ID" and "release ID".
func (c *cli) quarantine(cmd string, args []string) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	reason := fs.String("reason", "", "why (recorded on the timeline)")
	pos, err := c.parse(fs, args, 1)
	if err != nil {
		return err
	}
	action := c.api().Quarantine
	if cmd == "release" {
		action = c.api().Release
	}
	r, err := action(c.ctx(), core.AgentID(pos[0]), *reason)
	if err != nil {
		return err
	}
	return show(c, r, printAgent)
}
