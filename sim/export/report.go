package export

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/sim"
)

// Expectation is one checked expectation of a scenario, for the report.
type Expectation struct {
	Name   string
	Passed bool
	Detail string
}

// ReportInput is what a report shows.
type ReportInput struct {
	// Title is the scenario's name; Description says what it replays.
	Title, Description string
	Options            sim.Options // the run's options: fleet, faults, operator actions
	Result             *sim.Result
	Expectations       []Expectation
	Passed             bool
	// Err is a violated invariant or another error that ended the run.
	Err error
}

// Bounds of a report.
const (
	reportMarkersMax = 60 // timeline markers drawn on the charts; the rest are listed
	reportRowsMax    = 32 // domains drawn in band and per-domain charts
)

// Chart geometry, in SVG user units.
const (
	chartW      = 1000
	plotLeft    = 64
	plotRight   = 170 // room for the legend
	plotTop     = 14
	plotBottom  = 26
	lineChartH  = 190
	bandRowH    = 20
	stripH      = 74
	plotW       = chartW - plotLeft - plotRight
	legendX     = chartW - plotRight + 14
	markerColor = "#6b7280"
)

var palette = []string{"#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d"}

var stateColors = map[string]string{
	"OPEN": "#bbf7d0", "THROTTLED": "#fde68a", "PROBING": "#fdba74", "ISOLATED": "#f87171",
	"NORMAL": "#bbf7d0", "DEGRADED": "#fdba74", "READ_ONLY": "#f87171", "DRAINING": "#93c5fd",
}

// marker is a numbered point of the incident timeline.
type marker struct {
	n    int
	at   time.Duration
	kind string // "sim" (fault, heal, operator) or "cp"
	text string
}

// Report writes one self-contained XHTML page (inline CSS and SVG, no
// scripts, no external assets) showing the run: the expectations' results,
// the totals, the incident timeline, and time series of the queue, the
// oldest task's age, agents connected and quarantined per domain, domain
// states, the scheduler mode and decisions per second, with the timeline
// marked on every chart's time axis. The page is well-formed XML.
func Report(w io.Writer, in ReportInput) error {
	if in.Result == nil {
		return fmt.Errorf("export: report needs a result")
	}
	g, err := newGrid(in.Result)
	if err != nil {
		return err
	}
	r := &reporter{in: in, g: g, end: max(in.Result.End, time.Duration(g.n-1)*g.step)}
	r.markers = timelineMarkers(in.Result)
	bw := bufio.NewWriter(w)
	r.w = bw
	r.page()
	return bw.Flush()
}

type reporter struct {
	in      ReportInput
	g       *grid
	end     time.Duration
	markers []marker
	w       *bufio.Writer
}

func (r *reporter) p(format string, args ...any) { fmt.Fprintf(r.w, format, args...) }

// esc escapes text and attribute values for XML.
func esc(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch c {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '"':
			b.WriteString("&quot;")
		case '\'':
			b.WriteString("&#39;")
		default:
			if c < 0x20 && c != '\n' && c != '\t' || c == 0xFFFD {
				b.WriteRune('?')
			} else {
				b.WriteRune(c)
			}
		}
	}
	return b.String()
}

func clockString(d time.Duration) string {
	s := int64(d / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%02d:%02d", s/60, s%60)
}

const css = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111827; background: #f9fafb; margin: 0; }
main { max-width: 1040px; margin: 0 auto; padding: 20px 20px 40px; }
h1 { font-size: 22px; margin: 0 0 4px; display: flex; align-items: center; gap: 12px; }
h2 { font-size: 16px; margin: 22px 0 8px; }
.badge { font-size: 13px; font-weight: 700; padding: 2px 10px; border-radius: 999px; color: #fff; }
.pass { background: #16a34a; } .fail { background: #dc2626; }
.meta { color: #4b5563; margin: 0 0 6px; } .desc { margin: 0 0 10px; max-width: 900px; }
ul.expect { list-style: none; padding: 0; margin: 0; }
ul.expect li { padding: 4px 10px; margin: 3px 0; border-radius: 6px; background: #fff; border-left: 5px solid #16a34a; }
ul.expect li.failed { border-left-color: #dc2626; background: #fef2f2; }
ul.expect .detail { color: #991b1b; display: block; font-size: 13px; }
.cards { display: flex; flex-wrap: wrap; gap: 8px; }
.card { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 6px 12px; min-width: 104px; }
.card b { display: block; font-size: 18px; } .card span { color: #6b7280; font-size: 12px; }
.card.bad b { color: #dc2626; }
figure { margin: 10px 0; background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 8px 8px 2px; }
figcaption { font-weight: 600; margin: 0 0 2px 6px; } figcaption span { font-weight: 400; color: #6b7280; font-size: 12px; }
svg { display: block; width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; fill: #374151; }
svg .axis { stroke: #9ca3af; stroke-width: 1; }
svg .grid { stroke: #f3f4f6; stroke-width: 1; }
svg .marker { stroke: #6b7280; stroke-width: 1; stroke-dasharray: 3 3; opacity: 0.55; }
svg .fault { fill: #fee2e2; opacity: 0.75; }
svg .threshold { stroke-width: 1.2; stroke-dasharray: 6 4; fill: none; }
svg .series { fill: none; stroke-width: 1.8; stroke-linejoin: round; }
table.timeline { border-collapse: collapse; width: 100%; background: #fff; font-size: 13px; }
table.timeline td, table.timeline th { border-bottom: 1px solid #f3f4f6; padding: 3px 8px; text-align: left; vertical-align: top; }
table.timeline td.n { color: #fff; font-weight: 700; text-align: center; width: 26px; }
td.sim { background: #b91c1c; } td.cp { background: #4b5563; }
td.time { font-variant-numeric: tabular-nums; white-space: nowrap; width: 60px; }
.note { color: #6b7280; font-size: 12px; }
`

func (r *reporter) page() {
	in, res := r.in, r.in.Result
	title := fmt.Sprintf("%s, seed %d", in.Title, res.Seed)
	r.p("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n")
	r.p("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n")
	r.p("<title>FluxForge simulation: %s</title>\n<style>%s</style>\n</head>\n<body>\n<main>\n", esc(title), css)

	verdict, cls := "PASS", "pass"
	if !in.Passed {
		verdict, cls = "FAIL", "fail"
	}
	r.p("<h1>%s <span class=\"badge %s\" id=\"verdict\">%s</span></h1>\n", esc(title), cls, verdict)
	if in.Description != "" {
		r.p("<p class=\"desc\">%s</p>\n", esc(in.Description))
	}
	o := in.Options
	r.p("<p class=\"meta\">%d agents in %d zones, %d slots each · %s of virtual time, sampled every %s · trace %s</p>\n",
		o.Agents, o.Zones, o.SlotsPerAgent, esc(r.end.String()), esc(r.g.step.String()), esc(res.TraceHash))

	r.p("<h2>Expectations</h2>\n<ul class=\"expect\" id=\"expectations\">\n")
	if in.Err != nil {
		r.p("<li class=\"failed\">✗ the run ended with an error<span class=\"detail\">%s</span></li>\n", esc(in.Err.Error()))
	}
	for _, e := range in.Expectations {
		if e.Passed {
			r.p("<li>✓ %s</li>\n", esc(e.Name))
		} else {
			r.p("<li class=\"failed\">✗ %s<span class=\"detail\">%s</span></li>\n", esc(e.Name), esc(e.Detail))
		}
	}
	if len(in.Expectations) == 0 && in.Err == nil {
		r.p("<li>no expectations were given</li>\n")
	}
	r.p("</ul>\n")
	r.cards()

	r.p("<h2>Incident timeline and signals</h2>\n")
	r.strip()
	r.queueChart()
	r.ageChart()
	r.perDomainChart("Agents connected per domain", core.MetricAgentsConnected, "agents", false)
	r.perDomainChart("Agents quarantined per domain", core.MetricAgentsQuarantined, "agents", true)
	r.domainStates()
	r.modeBand()
	r.decisionsChart()
	r.timelineTable()
	r.p("<p class=\"note\">Generated by sim/export from a deterministic FluxForge simulator run: the same scenario and seed give the same page. Metric names are the control plane's Prometheus names.</p>\n")
	r.p("</main>\n</body>\n</html>\n")
}

func (r *reporter) cards() {
	res := r.in.Result
	refused := 0
	for _, n := range res.Refused {
		refused += n
	}
	type card struct {
		label, value string
		bad          bool
	}
	cs := []card{
		{"submitted", fmt.Sprint(res.Submitted), false},
		{"succeeded", fmt.Sprint(res.Succeeded), false},
		{"failed", fmt.Sprint(res.Failed), res.Failed > 0},
		{"dead (poison)", fmt.Sprint(res.Dead), res.Dead > 0},
		{"cancelled", fmt.Sprint(res.Cancelled), false},
		{"unfinished", fmt.Sprint(res.NonTerminal), res.NonTerminal > 0},
		{"lost", fmt.Sprint(res.Lost), res.Lost > 0},
		{"refused (429/409)", fmt.Sprint(refused), false},
		{"requeues", fmt.Sprint(res.Requeues), false},
		{"quarantines", fmt.Sprint(res.Quarantines), false},
		{"max queue depth", fmt.Sprint(res.MaxQueueDepth), false},
		{"max oldest task age", fmt.Sprintf("%.0fs", res.MaxOldestAgeSeconds), res.MaxOldestAgeSeconds > 60},
		{"final mode", string(res.Final.Mode), false},
		{"cp generations", fmt.Sprint(max(res.CPGenerations, 1)), false},
	}
	r.p("<div class=\"cards\" id=\"totals\">\n")
	for _, c := range cs {
		cls := "card"
		if c.bad {
			cls += " bad"
		}
		r.p("<div class=\"%s\"><b>%s</b><span>%s</span></div>\n", cls, esc(c.value), esc(c.label))
	}
	r.p("</div>\n")
}

// timelineMarkers returns the simulator's notes and the notable
// control-plane events, in time order, numbered.
func timelineMarkers(res *sim.Result) []marker {
	var ms []marker
	for _, n := range res.Notes {
		ms = append(ms, marker{at: n.At, kind: "sim", text: n.Text})
	}
	for _, e := range res.Events {
		// Domain and queue events, scheduler.* and mode changes but the
		// initial mode of each cp.
		notable := e.Kind == core.EventDomain || e.Kind == core.EventQueue ||
			e.Kind == core.EventMode && (e.Type != core.EventModeChanged || e.Seq > 1)
		switch e.Type {
		case core.EventAgentQuarantined, core.EventAgentReleased, core.EventAgentLost, core.EventAgentRestarted:
			notable = true
		}
		if !notable {
			continue
		}
		var b strings.Builder
		b.WriteString(string(e.Type))
		for _, f := range []string{string(e.AgentID), e.Domain} {
			if f != "" {
				b.WriteString(" " + f)
			}
		}
		if e.From != "" || e.To != "" {
			fmt.Fprintf(&b, " %s→%s", e.From, e.To)
		}
		if e.Reason != "" {
			b.WriteString(": " + e.Reason)
		}
		ms = append(ms, marker{at: e.Time.Sub(sim.Epoch()), kind: fmt.Sprintf("cp%d", e.Gen), text: b.String()})
	}
	slices.SortStableFunc(ms, func(a, b marker) int { return int(a.at - b.at) })
	for i := range ms {
		ms[i].n = i + 1
	}
	return ms
}

// ---- SVG helpers ----

func (r *reporter) x(t time.Duration) float64 {
	if r.end <= 0 {
		return plotLeft
	}
	return plotLeft + float64(t)/float64(r.end)*plotW
}

func f1(v float64) string { return fmt.Sprintf("%.1f", v) }

func (r *reporter) svgOpen(h int, label string) {
	r.p("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"%s\">\n", chartW, h, esc(label))
}

// faultWindows shades the faults' time windows between y0 and y1.
func (r *reporter) faultWindows(y0, y1 float64) {
	for _, f := range r.in.Options.Faults {
		until := f.Until
		if until == 0 || until > r.end {
			until = r.end
		}
		if f.Kind == sim.FaultCPRestart {
			continue // an instant, shown as a marker
		}
		x0, x1 := r.x(f.At), r.x(until)
		r.p("<rect class=\"fault\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\"><title>%s</title></rect>\n",
			f1(x0), f1(y0), f1(max(x1-x0, 1)), f1(y1-y0), esc(faultText(f)))
	}
}

func faultText(f sim.Fault) string {
	var b strings.Builder
	fmt.Fprintf(&b, "fault %s %s–%s", f.Kind, clockString(f.At), clockString(f.Until))
	if len(f.Agents) > 0 {
		fmt.Fprintf(&b, " %v", f.Agents)
	}
	if f.Zone != "" {
		fmt.Fprintf(&b, " zone %s", f.Zone)
	}
	return b.String()
}

// markerLines draws the timeline's markers as vertical lines between y0 and y1.
func (r *reporter) markerLines(y0, y1 float64) {
	for i, m := range r.markers {
		if i >= reportMarkersMax {
			break
		}
		x := r.x(m.at)
		r.p("<line class=\"marker\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"><title>%d %s %s</title></line>\n",
			f1(x), f1(y0), f1(x), f1(y1), m.n, clockString(m.at), esc(m.text))
	}
}

// timeAxis draws the x axis at y with ticks.
func (r *reporter) timeAxis(y float64) {
	r.p("<line class=\"axis\" x1=\"%d\" y1=\"%s\" x2=\"%d\" y2=\"%s\"/>\n", plotLeft, f1(y), plotLeft+plotW, f1(y))
	step := tickStep(r.end)
	for t := time.Duration(0); t <= r.end; t += step {
		x := r.x(t)
		r.p("<line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", f1(x), f1(y), f1(x), f1(y+4))
		r.p("<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s</text>\n", f1(x), f1(y+16), clockString(t))
	}
}

func tickStep(end time.Duration) time.Duration {
	for _, s := range []time.Duration{10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute,
		10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour} {
		if end/s <= 12 {
			return s
		}
	}
	return 24 * time.Hour
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 || math.IsNaN(v) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func formatTick(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}

// plotLine is one series of a line chart.
type plotLine struct {
	metric, labels, legend, color string
	values                        []float64
}

type threshold struct {
	value float64
	label string
	color string
}

// lineChart draws lines over the run's grid with a y axis from 0.
func (r *reporter) lineChart(id, title, sub string, lines []plotLine, thresholds []threshold) {
	top, integral := 0.0, true
	for _, l := range lines {
		for _, v := range l.values {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				top = max(top, v)
				integral = integral && v == math.Trunc(v)
			}
		}
	}
	// A threshold far above the data would flatten it: it is drawn only
	// when the data comes within a quarter of it, else listed with an
	// arrow (above the chart).
	var drawn, offScale []threshold
	for _, t := range thresholds {
		if top >= t.value/4 {
			drawn = append(drawn, t)
		} else {
			t.label += " ↑"
			offScale = append(offScale, t)
		}
	}
	for _, t := range drawn {
		top = max(top, t.value*1.05)
		integral = integral && t.value == math.Trunc(t.value)
	}
	ticks := 4
	if integral && top <= 8 {
		top = max(math.Ceil(top), 1)
		ticks = int(top)
	} else {
		top = niceMax(top)
	}
	h := lineChartH
	y0, y1 := float64(plotTop), float64(h-plotBottom)
	y := func(v float64) float64 { return y1 - v/top*(y1-y0) }

	r.p("<figure id=\"%s\">\n<figcaption>%s <span>%s</span></figcaption>\n", id, esc(title), esc(sub))
	r.svgOpen(h, title)
	for i := 0; i <= ticks; i++ {
		v := top * float64(i) / float64(ticks)
		r.p("<line class=\"grid\" x1=\"%d\" y1=\"%s\" x2=\"%d\" y2=\"%s\"/>", plotLeft, f1(y(v)), plotLeft+plotW, f1(y(v)))
		r.p("<text x=\"%d\" y=\"%s\" text-anchor=\"end\">%s</text>\n", plotLeft-6, f1(y(v)+4), formatTick(v))
	}
	r.faultWindows(y0, y1)
	r.markerLines(y0, y1)
	for _, t := range drawn {
		r.p("<line class=\"threshold\" stroke=\"%s\" x1=\"%d\" y1=\"%s\" x2=\"%d\" y2=\"%s\"><title>%s</title></line>\n",
			t.color, plotLeft, f1(y(t.value)), plotLeft+plotW, f1(y(t.value)), esc(t.label))
	}
	legendY := y0 + 6
	for _, t := range append(drawn, offScale...) {
		r.p("<line class=\"threshold\" stroke=\"%s\" x1=\"%d\" y1=\"%s\" x2=\"%d\" y2=\"%s\"/>", t.color, legendX, f1(legendY), legendX+18, f1(legendY))
		r.p("<text x=\"%d\" y=\"%s\">%s</text>\n", legendX+24, f1(legendY+4), esc(t.label))
		legendY += 16
	}
	for _, l := range lines {
		var d strings.Builder
		pen := false
		for k, v := range l.values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				pen = false
				continue
			}
			cmd := "L"
			if !pen {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%s %s ", cmd, f1(r.x(time.Duration(k)*r.g.step)), f1(y(v)))
			pen = true
		}
		r.p("<path class=\"series\" stroke=\"%s\" data-series=\"%s\" data-labels=\"%s\" d=\"%s\"><title>%s</title></path>\n",
			l.color, esc(l.metric), esc(l.labels), strings.TrimSpace(d.String()), esc(l.legend))
		r.p("<line x1=\"%d\" y1=\"%s\" x2=\"%d\" y2=\"%s\" stroke=\"%s\" stroke-width=\"3\"/>", legendX, f1(legendY), legendX+18, f1(legendY), l.color)
		r.p("<text x=\"%d\" y=\"%s\">%s</text>\n", legendX+24, f1(legendY+4), esc(l.legend))
		legendY += 16
	}
	if len(lines) == 0 {
		r.p("<text x=\"%d\" y=\"%s\">not recorded in this run</text>\n", plotLeft+10, f1((y0+y1)/2))
	}
	r.timeAxis(y1)
	r.p("</svg>\n</figure>\n")
}

// ---- the charts ----

func (r *reporter) single(name string) []float64 {
	if s := r.g.named(name); len(s) == 1 {
		return s[0].values
	}
	return nil
}

func (r *reporter) queueChart() {
	var lines []plotLine
	var th []threshold
	if v := r.single(core.MetricQueueDepth); v != nil {
		lines = append(lines, plotLine{metric: core.MetricQueueDepth, legend: "queue depth", color: palette[0], values: v})
	}
	if c := r.single(core.MetricQueueCapacity); c != nil {
		capacity := c[len(c)-1]
		for _, v := range c {
			if !math.IsNaN(v) {
				capacity = v
				break
			}
		}
		th = append(th, threshold{capacity, fmt.Sprintf("capacity %s", formatTick(capacity)), "#111827"},
			threshold{0.8 * capacity, fmt.Sprintf("alert > %s", formatTick(0.8*capacity)), "#dc2626"})
	}
	if v := r.single(core.MetricTasksInFlight); v != nil {
		lines = append(lines, plotLine{metric: core.MetricTasksInFlight, legend: "in flight", color: palette[2], values: v})
	}
	r.lineChart("chart-queue", "Queue", "flux_queue_depth, flux_tasks_in_flight; FluxQueueSaturated above 80% of capacity", lines, th)
}

func (r *reporter) ageChart() {
	var lines []plotLine
	if v := r.single(core.MetricQueueOldestTaskAge); v != nil {
		lines = append(lines, plotLine{metric: core.MetricQueueOldestTaskAge, legend: "oldest task age (s)", color: palette[1], values: v})
	}
	r.lineChart("chart-age", "Oldest queued task age", "flux_queue_oldest_task_age, seconds; FluxQueueTaskStale above 60s",
		lines, []threshold{{60, "alert > 60s", "#dc2626"}})
}

func (r *reporter) perDomainChart(title, metric, unit string, quarantine bool) {
	var lines []plotLine
	for i, s := range r.g.named(metric) {
		if i >= reportRowsMax {
			break
		}
		d := s.label("domain")
		lines = append(lines, plotLine{metric: metric, labels: "domain=" + d, legend: d, color: palette[i%len(palette)], values: s.values})
	}
	id := "chart-connected"
	sub := metric + ", " + unit
	if quarantine {
		id = "chart-quarantined"
	}
	r.lineChart(id, title, sub, lines, nil)
}

func (r *reporter) decisionsChart() {
	var lines []plotLine
	for i, s := range r.g.named(core.MetricSchedulerDecisions) {
		rate := make([]float64, len(s.values))
		nonzero := false
		for k := range s.values {
			rate[k] = math.NaN()
			if k == 0 || math.IsNaN(s.values[k]) || math.IsNaN(s.values[k-1]) {
				continue
			}
			d := s.values[k] - s.values[k-1]
			if d < 0 {
				d = s.values[k] // a cp restart resets the counter
			}
			rate[k] = d / r.g.step.Seconds()
			nonzero = nonzero || rate[k] != 0
		}
		if !nonzero {
			continue
		}
		o := s.label("outcome")
		color := palette[i%len(palette)]
		if o == "assigned" {
			color = "#16a34a"
		}
		lines = append(lines, plotLine{metric: core.MetricSchedulerDecisions, labels: "outcome=" + o, legend: o, color: color, values: rate})
	}
	r.lineChart("chart-decisions", "Scheduler decisions per second", "rate of flux_scheduler_decisions_total by outcome", lines, nil)
}

// bandRow is one row of a state band chart: the state at each sample.
type bandRow struct {
	metric, labels, label string
	states                []string // "" where unknown
}

func (r *reporter) bandChart(id, title, sub string, rows []bandRow, legend []string) {
	h := plotTop + max(len(rows)*bandRowH, len(legend)*14, bandRowH) + plotBottom + 6
	y1 := float64(h - plotBottom)
	r.p("<figure id=\"%s\">\n<figcaption>%s <span>%s</span></figcaption>\n", id, esc(title), esc(sub))
	r.svgOpen(h, title)
	for i, row := range rows {
		yTop := float64(plotTop + i*bandRowH)
		r.p("<text x=\"%d\" y=\"%s\" text-anchor=\"end\">%s</text>\n", plotLeft-6, f1(yTop+bandRowH/2+4), esc(row.label))
		r.p("<g data-series=\"%s\" data-labels=\"%s\">\n", esc(row.metric), esc(row.labels))
		for k := 0; k < len(row.states); {
			j := k + 1
			for j < len(row.states) && row.states[j] == row.states[k] {
				j++
			}
			if st := row.states[k]; st != "" {
				from, to := time.Duration(k)*r.g.step, min(time.Duration(j)*r.g.step, r.end)
				x0, x1 := r.x(from), r.x(to)
				r.p("<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%d\" fill=\"%s\"><title>%s %s %s–%s</title></rect>\n",
					f1(x0), f1(yTop+2), f1(max(x1-x0, 0.5)), bandRowH-4, stateColor(st), esc(row.label), esc(st), clockString(from), clockString(to))
				if x1-x0 > 70 && st != "OPEN" && st != "NORMAL" {
					r.p("<text x=\"%s\" y=\"%s\">%s</text>\n", f1(x0+4), f1(yTop+bandRowH/2+4), esc(st))
				}
			}
			k = j
		}
		r.p("</g>\n")
	}
	if len(rows) == 0 {
		r.p("<text x=\"%d\" y=\"%d\">not recorded in this run</text>\n", plotLeft+10, plotTop+14)
	}
	r.markerLines(float64(plotTop), y1)
	ly := float64(plotTop + 4)
	for _, st := range legend {
		r.p("<rect x=\"%d\" y=\"%s\" width=\"14\" height=\"10\" fill=\"%s\"/><text x=\"%d\" y=\"%s\">%s</text>\n",
			legendX, f1(ly), stateColor(st), legendX+20, f1(ly+9), esc(st))
		ly += 14
	}
	r.timeAxis(y1)
	r.p("</svg>\n</figure>\n")
}

func stateColor(st string) string {
	if c, ok := stateColors[st]; ok {
		return c
	}
	return "#e5e7eb"
}

// stateRows turns one-hot gauges (metric{..., key=STATE} 1) into rows, one
// per value of groupBy ("" for a single row).
func (r *reporter) stateRows(metric, key, groupBy string) []bandRow {
	var rows []bandRow
	index := map[string]int{}
	for _, s := range r.g.named(metric) {
		group := ""
		if groupBy != "" {
			group = s.label(groupBy)
		}
		i, ok := index[group]
		if !ok {
			if len(rows) >= reportRowsMax {
				continue
			}
			i = len(rows)
			index[group] = i
			label, labels := group, groupBy+"="+group
			if groupBy == "" {
				label, labels = "mode", ""
			}
			rows = append(rows, bandRow{metric: metric, labels: labels, label: label, states: make([]string, r.g.n)})
		}
		for k, v := range s.values {
			if v == 1 {
				rows[i].states[k] = s.label(key)
			}
		}
	}
	return rows
}

func (r *reporter) domainStates() {
	r.bandChart("chart-domains", "Domain states", "flux_domain_state; FluxZoneIsolated on ISOLATED",
		r.stateRows(core.MetricDomainState, "state", "domain"), []string{"OPEN", "THROTTLED", "PROBING", "ISOLATED"})
}

func (r *reporter) modeBand() {
	r.bandChart("chart-mode", "Scheduler mode", core.MetricSchedulerMode,
		r.stateRows(core.MetricSchedulerMode, "mode", ""), []string{"NORMAL", "DEGRADED", "READ_ONLY", "DRAINING"})
}

// strip is the incident timeline on the time axis: fault windows as bars,
// numbered markers for notes and notable cp events.
func (r *reporter) strip() {
	r.p("<figure id=\"chart-timeline\">\n<figcaption>Incident timeline <span>faults (red bars) and numbered events; hover for details, list below</span></figcaption>\n")
	r.svgOpen(stripH, "incident timeline")
	y1 := float64(stripH - plotBottom)
	r.p("<text x=\"%d\" y=\"%d\" text-anchor=\"end\">faults</text>\n", plotLeft-6, plotTop+12)
	for i, f := range r.in.Options.Faults {
		until := f.Until
		if until == 0 || until > r.end {
			until = r.end
		}
		x0, x1 := r.x(f.At), r.x(until)
		yy := float64(plotTop + 2 + (i%3)*5)
		r.p("<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"10\" rx=\"2\" fill=\"#dc2626\" opacity=\"0.8\"><title>%s</title></rect>\n",
			f1(x0), f1(yy), f1(max(x1-x0, 2)), esc(faultText(f)))
		if x1-x0 > 60 {
			r.p("<text x=\"%s\" y=\"%s\" style=\"fill:#fff;font-size:10px\">%s</text>\n", f1(x0+3), f1(yy+8.5), esc(string(f.Kind)))
		}
	}
	r.p("<text x=\"%d\" y=\"%d\" text-anchor=\"end\">events</text>\n", plotLeft-6, plotTop+34)
	lastX := -100.0
	row := 0
	for i, m := range r.markers {
		if i >= reportMarkersMax {
			break
		}
		x := r.x(m.at)
		if x-lastX < 14 {
			row = (row + 1) % 2
		} else {
			row = 0
		}
		lastX = x
		color := "#4b5563"
		if m.kind == "sim" {
			color = "#b91c1c"
		}
		yy := float64(plotTop+26) + float64(row)*10
		r.p("<g><title>%d %s %s</title><line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"%s\"/>", m.n, clockString(m.at), esc(m.text),
			f1(x), f1(yy+2), f1(x), f1(y1), color)
		r.p("<text x=\"%s\" y=\"%s\" text-anchor=\"middle\" style=\"fill:%s;font-size:9px;font-weight:700\">%d</text></g>\n", f1(x), f1(yy), color, m.n)
	}
	r.timeAxis(y1)
	r.p("</svg>\n</figure>\n")
}

func (r *reporter) timelineTable() {
	r.p("<h2>Timeline</h2>\n")
	if len(r.markers) == 0 {
		r.p("<p class=\"note\">No faults, operator actions or notable control-plane events.</p>\n")
		return
	}
	r.p("<table class=\"timeline\" id=\"timeline\">\n<tr><th>#</th><th>time</th><th>source</th><th>what</th></tr>\n")
	for _, m := range r.markers {
		cls := "cp"
		if m.kind == "sim" {
			cls = "sim"
		}
		r.p("<tr><td class=\"n %s\">%d</td><td class=\"time\">%s</td><td>%s</td><td>%s</td></tr>\n", cls, m.n, clockString(m.at), esc(m.kind), esc(m.text))
	}
	r.p("</table>\n")
	if len(r.markers) > reportMarkersMax {
		r.p("<p class=\"note\">The charts mark the first %d of %d events.</p>\n", reportMarkersMax, len(r.markers))
	}
	if r.in.Result.EventsDropped > 0 {
		r.p("<p class=\"note\">%d timeline events were dropped by the simulator's bound.</p>\n", r.in.Result.EventsDropped)
	}
}
