package main

import (
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/fluxforge/fluxforge/cp"
)

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
		r, err := c.api().Timeline(c.ctx(), 0, 1)
		if err != nil {
			return err
		}
		last := r.Value.LastSeq
		*since = last - min(last, uint64(*tail))
		*limit = *tail
	}
	r, err := c.api().Timeline(c.ctx(), *since, *limit)
	if err != nil {
		return err
	}
	return show(c, r, func(w *tabwriter.Writer, tl cp.TimelinePage) {
		fmt.Fprintln(w, "SEQ\tTIME\tTYPE\tSUBJECT\tACTOR\tREASON")
		for _, e := range tl.Events {
			var subj []string
			for _, s := range []string{string(e.TaskID), string(e.AgentID), e.Domain} {
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
