package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/sim/swarm"
)

// swarmCheck is an extra invariant for swarm runs; tests inject failures
// with it.
var swarmCheck swarm.Check

// swarmFlags are the swarm-testing flags.
type swarmFlags struct {
	runs          *int
	parallel      *int
	one           *string
	shape         *string
	shrink        *int
	shrinkMax     *int
	forceProgress bool // tests: progress as if stderr were a terminal
}

func addSwarmFlags(fs *flag.FlagSet) *swarmFlags {
	return &swarmFlags{
		runs:      fs.Int("swarm", 0, "swarm testing: run this many runs of random shapes drawn from -seed"),
		parallel:  fs.Int("parallel", runtime.NumCPU(), "swarm runs at once (each run stays single-threaded)"),
		one:       fs.String("swarm-run", "", "run one swarm run again, as SEED:INDEX"),
		shape:     fs.String("swarm-shape", "", "run one swarm shape given in full (as a failing swarm prints it)"),
		shrink:    fs.Int("shrink", 3, "shrink the first this many failing swarm runs"),
		shrinkMax: fs.Int("shrink-attempts", 500, "runs one shrink may try"),
	}
}

// active reports whether a swarm mode was asked for.
func (f *swarmFlags) active() bool { return *f.runs != 0 || *f.one != "" || *f.shape != "" }

// run runs the swarm mode the flags ask for and returns the exit status.
func (f *swarmFlags) run(seed uint64, tracePath string, stdout, stderr io.Writer) int {
	modes := 0
	for _, on := range []bool{*f.runs != 0, *f.one != "", *f.shape != ""} {
		if on {
			modes++
		}
	}
	switch {
	case modes > 1:
		fmt.Fprintln(stderr, "sim: -swarm, -swarm-run and -swarm-shape exclude each other")
		return 2
	case *f.runs < 0 || *f.runs > 10_000_000:
		fmt.Fprintln(stderr, "sim: -swarm must be in [1, 10000000]")
		return 2
	case *f.parallel < 1 || *f.parallel > 1024:
		fmt.Fprintln(stderr, "sim: -parallel must be in [1, 1024]")
		return 2
	case *f.shrink < 0 || *f.shrinkMax < 0:
		fmt.Fprintln(stderr, "sim: -shrink and -shrink-attempts must not be negative")
		return 2
	}
	if *f.runs > 0 {
		if tracePath != "" {
			fmt.Fprintln(stderr, "sim: -trace needs a single run (-swarm-run or -swarm-shape)")
			return 2
		}
		return f.swarm(seed, stdout, stderr)
	}
	var s swarm.Shape
	var err error
	repro := ""
	if *f.one != "" {
		s, repro, err = parseRun(*f.one)
	} else {
		s, err = swarm.Parse(*f.shape)
		repro = shapeCommand(s)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sim: %v\n", err)
		return 2
	}
	var trace io.Writer
	if tracePath != "" {
		fh, err := os.Create(tracePath)
		if err != nil {
			fmt.Fprintf(stderr, "sim: %v\n", err)
			return 2
		}
		bw := bufio.NewWriterSize(fh, 1<<20)
		defer func() {
			if err := bw.Flush(); err != nil {
				fmt.Fprintf(stderr, "sim: trace: %v\n", err)
			}
			if err := fh.Close(); err != nil {
				fmt.Fprintf(stderr, "sim: trace: %v\n", err)
			}
		}()
		trace = bw
	}
	o := swarm.RunTraced(s, swarmCheck, trace)
	fmt.Fprintf(stdout, "swarm run %s\n", repro)
	fmt.Fprintf(stdout, "shape: %s\n", s)
	fmt.Fprintf(stdout, "simulated %v, %d simulator events, %d tasks accepted, %d leases expired at the cp\n",
		o.Simulated, o.SimEvents, o.Submitted, o.StuckLeases)
	if line := firedLine(o.Fired); line != "" {
		fmt.Fprintf(stdout, "fault points fired: %s\n", line)
	}
	if o.Failed() {
		fmt.Fprintf(stdout, "FAIL (%s): %s\nresult: FAIL\n", o.Failure, o.Err)
		return 1
	}
	fmt.Fprintln(stdout, "result: PASS")
	return 0
}

// parseRun reads SEED:INDEX.
func parseRun(v string) (swarm.Shape, string, error) {
	a, b, ok := strings.Cut(v, ":")
	seed, err1 := strconv.ParseUint(a, 10, 64)
	index, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || index < 0 {
		return swarm.Shape{}, "", fmt.Errorf("-swarm-run %q: want SEED:INDEX", v)
	}
	return swarm.Generate(seed, index), runCommand(seed, index), nil
}

func runCommand(seed uint64, index int) string {
	return fmt.Sprintf("go run ./cmd/sim -swarm-run %d:%d", seed, index)
}

func shapeCommand(s swarm.Shape) string {
	return fmt.Sprintf("go run ./cmd/sim -swarm-shape '%s'", s)
}

// swarm runs -swarm runs on -parallel goroutines, then reports them in run
// order, so stdout depends only on -seed and -swarm.
func (f *swarmFlags) swarm(seed uint64, stdout, stderr io.Writer) int {
	n := *f.runs
	prog := newProgress(stderr, "swarm", n, f.forceProgress)
	outs := runParallel(n, *f.parallel, func(i int) swarm.Outcome {
		return swarm.Run(swarm.Generate(seed, i), swarmCheck)
	}, prog)
	prog.finish()

	fmt.Fprintf(stdout, "swarm seed %d: %d runs\n", seed, n)
	var simulated time.Duration
	var events, stuck uint64
	var submitted, failed, shrunk int
	fired := map[core.FaultPoint]int{}
	kinds := map[swarm.Kind]int{}
	for i, o := range outs {
		simulated += o.Simulated
		events += o.SimEvents
		submitted += o.Submitted
		stuck += o.StuckLeases
		for p, c := range o.Fired {
			fired[p] += c
		}
		for _, k := range o.Shape.Faults {
			kinds[k.Kind]++
		}
		if !o.Failed() {
			continue
		}
		failed++
		fmt.Fprintf(stdout, "\nFAIL run %d (%s): %s\n", i, o.Failure, o.Headline())
		fmt.Fprintf(stdout, "  repro:  %s\n", runCommand(seed, i))
		fmt.Fprintf(stdout, "  shape:  %s\n", o.Shape)
		if shrunk >= *f.shrink {
			continue
		}
		shrunk++
		sp := newProgress(stderr, fmt.Sprintf("shrinking run %d", i), *f.shrinkMax, f.forceProgress)
		tries := 0
		small, used := swarm.Shrink(o.Shape, func(s swarm.Shape) bool {
			tries++
			sp.update(tries, 0)
			return swarm.Run(s, swarmCheck).Failure == o.Failure
		}, *f.shrinkMax)
		sp.finish()
		so := swarm.Run(small, swarmCheck)
		fmt.Fprintf(stdout, "  shrunk: %s\n", shapeCommand(small))
		fmt.Fprintf(stdout, "          (%d attempts) %s\n", used, so.Headline())
	}
	if failed > 0 {
		fmt.Fprintln(stdout)
	}
	fmt.Fprintf(stdout, "runs %d, failed %d, simulated %.1f hours, %d simulator events, %d tasks accepted, %d leases expired at the cp\n",
		n, failed, simulated.Hours(), events, submitted, stuck)
	var kl []string
	for _, k := range swarm.Kinds() {
		kl = append(kl, fmt.Sprintf("%s %d", k, kinds[k]))
	}
	fmt.Fprintf(stdout, "runs per fault kind: %s\n", strings.Join(kl, ", "))
	fmt.Fprintf(stdout, "fault points fired: %s\n", firedLine(fired))
	if failed > 0 {
		fmt.Fprintln(stdout, "result: FAIL")
		return 1
	}
	fmt.Fprintln(stdout, "result: PASS")
	return 0
}

// firedLine lists fault point counts in a fixed order.
func firedLine(fired map[core.FaultPoint]int) string {
	keys := make([]core.FaultPoint, 0, len(fired))
	for p := range fired {
		keys = append(keys, p)
	}
	slices.Sort(keys)
	var parts []string
	for _, p := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", p, fired[p]))
	}
	return strings.Join(parts, ", ")
}

// runParallel runs job(0..n-1) on parallel goroutines and returns the
// results by index. Each job is one self-contained simulation.
func runParallel(n, parallel int, job func(int) swarm.Outcome, prog *progress) []swarm.Outcome {
	outs := make([]swarm.Outcome, n)
	next := make(chan int)
	done := make(chan int, parallel)
	var wg sync.WaitGroup
	for range min(parallel, max(n, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				outs[i] = job(i)
				done <- i
			}
		}()
	}
	go func() {
		for i := range n {
			next <- i
		}
		close(next)
		wg.Wait()
		close(done)
	}()
	count, failed := 0, 0
	for i := range done {
		count++
		if outs[i].Failed() {
			failed++
		}
		prog.update(count, failed)
	}
	return outs
}

// progress prints "label: done/total, failed, elapsed" on one line of
// stderr, only when stderr is a terminal: logs and pipes stay clean, and
// stdout is never touched.
type progress struct {
	w           io.Writer
	on          bool
	label       string
	total       int
	start, last time.Time
	printed     bool
}

func newProgress(w io.Writer, label string, total int, force bool) *progress {
	return &progress{w: w, on: force || isTerminal(w), label: label, total: total, start: time.Now()}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (p *progress) update(done, failed int) {
	if !p.on {
		return
	}
	now := time.Now()
	if done < p.total && p.printed && now.Sub(p.last) < 200*time.Millisecond {
		return
	}
	p.last, p.printed = now, true
	fmt.Fprintf(p.w, "\r%s: %d/%d runs, %d failed, %v elapsed\x1b[K", p.label, done, p.total, failed, now.Sub(p.start).Round(time.Second))
}

// finish ends the progress line.
func (p *progress) finish() {
	if p.on && p.printed {
		fmt.Fprintln(p.w)
	}
}
