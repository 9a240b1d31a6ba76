// Command sim replays a runbook incident in the deterministic simulator and
// prints a readable timeline and a pass/fail report. The same seed prints the
// same bytes.
//
//	go run ./cmd/sim -scenario=agent-flap -seed=7
//	go run ./cmd/sim -list
//
// Exit status: 0 when every expectation and invariant holds, 1 when one
// fails, 2 on a usage error (unknown scenario, bad flag).
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/fluxforge/fluxforge/scenarios"
	"github.com/fluxforge/fluxforge/sim"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("scenario", "agent-flap", "scenario to run (see -list)")
	seed := fs.Uint64("seed", 1, "random seed; the same seed gives the same output")
	list := fs.Bool("list", false, "list the scenarios and exit")
	duration := fs.Duration("duration", 0, "virtual duration (0: the scenario's own)")
	agents := fs.Int("agents", 0, "number of agents (0: the scenario's own)")
	zones := fs.Int("zones", 0, "number of zones (0: the scenario's own)")
	tracePath := fs.String("trace", "", "write the JSON-lines trace of every event to this file")
	quiet := fs.Bool("quiet", false, "print only the report, not the timeline")
	exp := addExportFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sim: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *list {
		for _, sc := range scenarios.All() {
			fmt.Fprintf(stdout, "%-17s %s\n", sc.Name, sc.Description)
		}
		return 0
	}
	sc, ok := scenarios.Lookup(*name)
	if !ok {
		fmt.Fprintf(stderr, "sim: %v\n", scenarios.ErrUnknown{Name: *name})
		return 2
	}
	if *agents < 0 || *zones < 0 || *duration < 0 {
		fmt.Fprintln(stderr, "sim: -agents, -zones and -duration must not be negative")
		return 2
	}
	p := scenarios.Params{Seed: *seed, Duration: *duration, Agents: *agents, Zones: *zones}
	var traceFile *os.File
	var traceBuf *bufio.Writer
	if *tracePath != "" {
		f, err := os.Create(*tracePath)
		if err != nil {
			fmt.Fprintf(stderr, "sim: %v\n", err)
			return 2
		}
		traceFile, traceBuf = f, bufio.NewWriterSize(f, 1<<20)
		p.Trace = traceBuf
	}
	rep := sc.Run(p)
	if traceFile != nil {
		if err := traceBuf.Flush(); err != nil {
			fmt.Fprintf(stderr, "sim: trace: %v\n", err)
		}
		if err := traceFile.Close(); err != nil {
			fmt.Fprintf(stderr, "sim: trace: %v\n", err)
		}
	}
	var v *sim.Violation
	if rep.Err != nil && !errors.As(rep.Err, &v) {
		fmt.Fprintln(stderr, rep.Err) // already "sim: ..."
		return 2
	}
	if err := rep.Write(stdout, *quiet); err != nil {
		fmt.Fprintf(stderr, "sim: %v\n", err)
		return 1
	}
	if code := exp.write(sc, p, rep, stderr); code != 0 {
		return code
	}
	if !rep.Passed {
		return 1
	}
	return 0
}
