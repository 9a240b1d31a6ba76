package main

import (
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/fluxforge/fluxforge/cp"
	"github.com/fluxforge/fluxforge/cp/client"
)

// raft members | add ID ADDR | remove ID | transfer: the cps of a cluster.
func (c *cli) raft(args []string) error {
	pos, err := c.parse(flag.NewFlagSet("raft", flag.ContinueOnError), args, -1)
	if err != nil {
		return err
	}
	var r *client.Response[cp.MembersView]
	switch {
	case len(pos) == 1 && pos[0] == "members":
		r, err = c.api().RaftMembers(c.ctx())
	case len(pos) == 3 && pos[0] == "add":
		r, err = c.api().RaftAdd(c.ctx(), pos[1], pos[2])
	case len(pos) == 2 && pos[0] == "remove":
		r, err = c.api().RaftRemove(c.ctx(), pos[1])
	case len(pos) == 1 && pos[0] == "transfer":
		t, err := c.api().RaftTransfer(c.ctx())
		if err != nil {
			return err
		}
		return show(c, t, func(w *tabwriter.Writer, v map[string]string) {
			fmt.Fprintf(w, "leadership moved from %s to %s\n", v["from"], v["leader"])
		})
	default:
		return usagef("use: raft members | raft add ID HOST:PORT | raft remove ID | raft transfer")
	}
	if err != nil {
		return err
	}
	return show(c, r, func(w *tabwriter.Writer, v cp.MembersView) {
		fmt.Fprintf(w, "asked:\t%s\nleader:\t%s\n\n", v.NodeID, dash(v.Leader))
		fmt.Fprintln(w, "ID\tROLE\tRAFT ADDRESS\tAPI URL\tVOTER")
		for _, m := range v.Members {
			role := "follower"
			if m.Leader {
				role = "leader"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", m.ID, role, m.RaftAddr, dash(m.APIURL), yes(m.Voter))
		}
	})
}
