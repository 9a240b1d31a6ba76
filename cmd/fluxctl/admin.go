package main

import (
	"flag"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp"
	"github.com/fluxforge/fluxforge/cp/client"
)

// The scheduler-wide commands: snapshot, mode, purge.

func (c *cli) snapshot(args []string) error {
	if _, err := c.parse(flag.NewFlagSet("snapshot", flag.ContinueOnError), args, 0); err != nil {
		return err
	}
	r, err := c.api().Snapshot(c.ctx())
	if err != nil {
		return err
	}
	return show(c, r, func(w *tabwriter.Writer, s core.DebugView) {
		fmt.Fprintf(w, "mode:\t%s (set by %s: %s)\n", s.Mode, s.ModeSetBy, s.ModeReason)
		if s.Mode == core.ModeDraining {
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
	var r *client.Response[cp.ModeView]
	switch {
	case len(pos) == 1 && pos[0] == "get":
		r, err = c.api().Mode(c.ctx())
	case len(pos) == 2 && pos[0] == "set":
		r, err = c.api().SetMode(c.ctx(), cp.ModeRequest{Mode: strings.ToUpper(pos[1]), Reason: *reason})
	default:
		return usagef("use: mode get | mode set MODE [-reason TEXT]")
	}
	if err != nil {
		return err
	}
	return show(c, r, func(w *tabwriter.Writer, m cp.ModeView) {
		fmt.Fprintf(w, "%s\t(set by %s: %s)\n", m.Mode, m.SetBy, m.Reason)
	})
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
	req := cp.PurgeRequest{All: *all, Domain: *domain, Reason: *reason}
	n := 0
	if *all {
		n++
	}
	if *domain != "" {
		n++
	}
	if *older != 0 {
		if *older < time.Second {
			return usagef("-older-than must be at least 1s")
		}
		req.OlderThanSeconds = int64(older.Seconds())
		n++
	}
	if n != 1 {
		return usagef("give exactly one of -all, -domain D, -older-than DURATION")
	}
	r, err := c.api().Purge(c.ctx(), req)
	if err != nil {
		return err
	}
	return show(c, r, func(w *tabwriter.Writer, p cp.PurgeResult) {
		fmt.Fprintf(w, "purged %d queued task(s); queue depth now %d\n", p.Purged, p.QueueDepth)
	})
}
