package export

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/sim"
)

// parsedPage is what a strict XML parse of a report finds.
type parsedPage struct {
	series   []string        // data-series|data-labels of every drawn series
	ids      map[string]bool // element ids
	texts    string          // all character data
	elements map[string]int  // element counts by local name
}

// parsePage parses the report as XML (XHTML): any ill-formedness fails.
func parsePage(t *testing.T, page []byte) parsedPage {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(page))
	d.Strict = true
	p := parsedPage{ids: map[string]bool{}, elements: map[string]int{}}
	var text strings.Builder
	depth := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			line, col := d.InputPos()
			t.Fatalf("report is not well-formed XML at %d:%d: %v", line, col, err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			depth++
			p.elements[tok.Name.Local]++
			var series, labels string
			for _, a := range tok.Attr {
				switch a.Name.Local {
				case "id":
					if p.ids[a.Value] {
						t.Errorf("duplicate id %q", a.Value)
					}
					p.ids[a.Value] = true
				case "data-series":
					series = a.Value
				case "data-labels":
					labels = a.Value
				case "href", "src":
					if !strings.HasPrefix(a.Value, "#") {
						t.Errorf("external reference %s=%q: the page must be self-contained", a.Name.Local, a.Value)
					}
				}
			}
			if series != "" {
				p.series = append(p.series, series+"|"+labels)
			}
			if tok.Name.Local == "script" || tok.Name.Local == "link" || tok.Name.Local == "img" {
				t.Errorf("<%s> in a self-contained page", tok.Name.Local)
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			text.Write(tok)
		}
	}
	if depth != 0 {
		t.Fatalf("unbalanced elements: depth %d at the end", depth)
	}
	p.texts = text.String()
	return p
}

func TestReportHoldsEverySeries(t *testing.T) {
	o := flapOptions(3)
	o.Faults = append(o.Faults, sim.Fault{Kind: sim.FaultZoneOutage, Zone: "z2", At: 9 * time.Minute, Until: 11 * time.Minute})
	res := run(t, o)
	var buf bytes.Buffer
	in := ReportInput{Title: "agent-flap <&>", Description: "a flapping agent & a zone outage", Options: o, Result: res,
		Expectations: []Expectation{{Name: "the agent is quarantined", Passed: true}, {Name: "nothing lost", Passed: false, Detail: "2 lost <oops>"}}}
	if err := Report(&buf, in); err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("FLUX_REPORT_DIR"); dir != "" {
		if err := os.WriteFile(dir+"/report_test.html", buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := parsePage(t, buf.Bytes())
	want := []string{
		"flux_queue_depth|", "flux_queue_oldest_task_age|", "flux_tasks_in_flight|",
		"flux_agents_connected|domain=z1", "flux_agents_connected|domain=z2", "flux_agents_connected|domain=z3",
		"flux_agents_quarantined|domain=z1", "flux_agents_quarantined|domain=z2", "flux_agents_quarantined|domain=z3",
		"flux_domain_state|domain=z1", "flux_domain_state|domain=z2", "flux_domain_state|domain=z3",
		"flux_scheduler_mode|", "flux_scheduler_decisions_total|outcome=assigned",
	}
	for _, w := range want {
		if !slices.Contains(p.series, w) {
			t.Errorf("the report has no series %s (has %v)", w, p.series)
		}
	}
	for _, id := range []string{"verdict", "expectations", "totals", "chart-timeline", "chart-queue", "chart-age",
		"chart-connected", "chart-quarantined", "chart-domains", "chart-mode", "chart-decisions", "timeline"} {
		if !p.ids[id] {
			t.Errorf("the report has no element #%s", id)
		}
	}
	for _, s := range []string{"agent-flap <&>", "FAIL", "✗ nothing lost", "2 lost <oops>", "✓ the agent is quarantined",
		"agent.quarantined z1-a01", "fault: zone z2 partitioned", "heal: zone z2 back"} {
		if !strings.Contains(p.texts, s) {
			t.Errorf("the report's text lacks %q", s)
		}
	}
	// The zone outage shows in the domain states: z2 leaves OPEN.
	if !strings.Contains(buf.String(), "z2 ISOLATED") && !strings.Contains(buf.String(), "z2 PROBING") {
		t.Error("the domain band does not show z2 leaving OPEN during its outage")
	}
	if p.elements["svg"] < 8 {
		t.Errorf("%d inline svg charts, want at least 8", p.elements["svg"])
	}

	var again bytes.Buffer
	if err := Report(&again, in); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("the same run gave different pages")
	}
}

func TestReportPassingRunAndErrors(t *testing.T) {
	o := calmOptions(1)
	res := run(t, o)
	var buf bytes.Buffer
	if err := Report(&buf, ReportInput{Title: "calm", Options: o, Result: res, Passed: true,
		Expectations: []Expectation{{Name: "fine", Passed: true}}}); err != nil {
		t.Fatal(err)
	}
	p := parsePage(t, buf.Bytes())
	if !strings.Contains(p.texts, "PASS") || strings.Contains(p.texts, "FAIL") {
		t.Error("a passing run must say PASS only")
	}
	if err := Report(io.Discard, ReportInput{Title: "x"}); err == nil {
		t.Error("a report without a result must fail")
	}
	if err := Report(io.Discard, ReportInput{Title: "x", Result: &sim.Result{}}); err == nil {
		t.Error("a report of a run without samples must fail")
	}
}
