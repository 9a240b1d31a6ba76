// Command sim replays a runbook incident in the deterministic simulator and
// prints a readable timeline and a pass/fail report. The same seed prints the
// same bytes.
//
//	go run ./cmd/sim -scenario=agent-flap -seed=7
//	go run ./cmd/sim -list
//
// Swarm testing runs many random shapes (fleet, zones, workload, a random
// subset of every fault kind and code-level fault point at random
// intensity, then a heal phase in which liveness must hold), -parallel at a
// time, each run still single-threaded and deterministic. The report on
// stdout depends only on -seed and -swarm. A failing run prints the command
// that reproduces it, then is shrunk (fewer agents, zones, slots, tasks, a
// shorter active phase, fewer fault kinds, lower intensities) to a smaller
// shape that fails the same way, printed as a command too. Progress goes to
// stderr when it is a terminal.
//
//	go run ./cmd/sim -swarm 1000 -seed 1
//	go run ./cmd/sim -swarm-run 1:17                # run 17 of swarm 1 again
//	go run ./cmd/sim -swarm-shape 'seed=...,faults=crash:40' -trace t.jsonl
//
// The nightly swarm (10,000 runs, about 4,400 simulated hours; minutes on
// two cores):
//
//	go run ./cmd/sim -swarm 10000 -seed $(date +%Y%m%d)
//
// Replay of a real cp's recorded log (see replay.go): a stopped cp's data
// dir or a `fluxctl log export` file; the output ends with the
// applied_index and state_hash the cp reported there.
//
//	go run ./cmd/sim -replay /var/lib/fluxforge [-until-index N]
//	go run ./cmd/sim -replay export.jsonl -set quarantine-threshold=0.5
//	go run ./cmd/sim -replay export.jsonl -set help
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

func run(args []string, stdout, stderr io.Writer) int { return runWith(args, stdout, stderr, false) }

// runWith is run; forceProgress prints progress as if stderr were a
// terminal (tests).
func runWith(args []string, stdout, stderr io.Writer, forceProgress bool) int {
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
	sw := addSwarmFlags(fs)
	sw.forceProgress = forceProgress
	rp := addReplayFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sim: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if rp.active() {
		return rp.run(stdout, stderr)
	}
	if sw.active() {
		return sw.run(*seed, *tracePath, stdout, stderr)
	}
	if *list {
		for _, sc := range scenarios.All() {
			fmt.Fprintf(stdout, "%-18s %s\n", sc.Name, sc.Description)
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
