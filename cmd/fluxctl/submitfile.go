package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/fluxforge/fluxforge/cp"
)

// submit -f: many tasks through POST /v1/batch/tasks.
//
// The input holds one task a line: the JSON body of a single submit plus an
// optional "idempotency_key" (cp.BatchTask), e.g.
//
//	{"kind":"sleep","duration_ms":200,"domain":"zone-a","idempotency_key":"job-1"}
//	{"kind":"exec","argv":["/bin/echo","hi"],"priority":"high"}
//
// Blank lines are skipped. The whole input is read and checked first: if a
// line is not a task (bad JSON, an unknown field, not an object), every such
// line is reported by number and nothing is sent, so a typo never leaves
// half a file submitted. Then the tasks go in batches of -batch (at most
// 1,000, and at most 16 MiB a request). A task the cp refuses (invalid,
// idempotency conflict, queue full, degraded) is reported with its line
// and the others go on; a batch the cp refuses whole (READ_ONLY, DRAINING,
// not durable) stops the run: the batches before it stay submitted, and
// the error names the first line not sent. Sending the file again is safe
// for the tasks that carry an idempotency key (the sent ones replay).
//
// The summary counts created, replayed and refused tasks; -o json prints
// the cp's results instead ({"results":[...]}, one per task in file order).
// The exit status is 1 when any task was refused or not sent.

// taskLineErrorsMax bounds the bad lines reported.
const taskLineErrorsMax = 20

// batchBytesSlack leaves room in a batch body for {"tasks":[...]} and commas.
const batchBytesSlack = 1024

func (c *cli) submitFile(name string, batch int) error {
	if batch < 1 || batch > cp.BatchTasksMax {
		return usagef("-batch must be between 1 and %d, not %d", cp.BatchTasksMax, batch)
	}
	var in io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	tasks, lines, sizes, err := readTasks(in)
	if err != nil {
		return err
	}
	if len(tasks) == 0 {
		return fmt.Errorf("%s holds no tasks", name)
	}
	var results []cp.BatchResult
	for start := 0; start < len(tasks); {
		end, bytes := start, 0
		for end < len(tasks) && end-start < batch && (end == start || bytes+sizes[end]+1 <= cp.BatchBodyBytesMax-batchBytesSlack) {
			bytes += sizes[end] + 1
			end++
		}
		r, err := c.api().SubmitBatch(c.ctx(), tasks[start:end])
		if err == nil && len(r.Value.Results) != end-start {
			err = fmt.Errorf("the cp answered %d results for %d tasks", len(r.Value.Results), end-start)
		}
		if err != nil {
			if len(results) > 0 {
				if perr := c.reportTasks(results, lines); perr != nil {
					return perr
				}
			}
			return fmt.Errorf("the batch of lines %d-%d was refused, so lines %d-%d (%d tasks) were not sent: %w",
				lines[start], lines[end-1], lines[start], lines[len(lines)-1], len(tasks)-start, explain(err))
		}
		results = append(results, r.Value.Results...)
		start = end
	}
	if err := c.reportTasks(results, lines); err != nil {
		return err
	}
	if refused := countRefused(results); refused > 0 {
		return fmt.Errorf("%d of %d tasks refused", refused, len(results))
	}
	return nil
}

// readTasks reads one task a line, skipping blank lines, and returns the
// tasks, their line numbers and encoded sizes; or every bad line's error.
func readTasks(r io.Reader) (tasks []cp.BatchTask, lines, sizes []int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), cp.BatchBodyBytesMax)
	var bad []string
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		t, err := parseTask(line)
		if err != nil {
			bad = append(bad, fmt.Sprintf("line %d: %v", n, err))
			continue
		}
		raw, err := json.Marshal(t)
		if err != nil {
			return nil, nil, nil, err
		}
		tasks, lines, sizes = append(tasks, t), append(lines, n), append(sizes, len(raw))
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("longer than %d bytes", cp.BatchBodyBytesMax)
		}
		bad = append(bad, fmt.Sprintf("line %d: %v", n+1, err))
	}
	if len(bad) > 0 {
		more := ""
		if len(bad) > taskLineErrorsMax {
			more = fmt.Sprintf("\n  ... and %d more", len(bad)-taskLineErrorsMax)
			bad = bad[:taskLineErrorsMax]
		}
		return nil, nil, nil, fmt.Errorf("%d line(s) are not tasks; nothing was sent:\n  %s%s", len(bad), strings.Join(bad, "\n  "), more)
	}
	return tasks, lines, sizes, nil
}

// parseTask decodes one line as the API would: one JSON object, no unknown
// fields, nothing after it.
func parseTask(line []byte) (cp.BatchTask, error) {
	var t cp.BatchTask
	if line[0] != '{' {
		return t, errors.New("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return t, err
	}
	if dec.More() {
		return t, errors.New("more than one JSON value on the line")
	}
	return t, nil
}

func countRefused(results []cp.BatchResult) int {
	n := 0
	for _, r := range results {
		if r.Status >= 400 {
			n++
		}
	}
	return n
}

// reportTasks prints the results: the refused tasks by line and the counts,
// or with -o json the results as the cp sent them, in one list.
func (c *cli) reportTasks(results []cp.BatchResult, lines []int) error {
	if c.output == "json" {
		return writeJSON(c.stdout, cp.BatchResponse{Results: results})
	}
	created, replayed, refused := 0, 0, 0
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for i, r := range results {
		switch {
		case r.Status == http.StatusCreated:
			created++
		case r.Status == http.StatusOK:
			replayed++
		default:
			if refused == 0 {
				fmt.Fprintln(w, "LINE\tSTATUS\tERROR\tMESSAGE")
			}
			refused++
			fmt.Fprintf(w, "%d\t%d\t%s\t%s\n", lines[i], r.Status, r.Error, r.Message)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(c.stdout, "%d tasks: %d created, %d replayed (idempotent), %d refused\n",
		len(results), created, replayed, refused)
	return err
}
