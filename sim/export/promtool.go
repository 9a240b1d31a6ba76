package export

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/sim"
)

// oracle decides, from the recorded series and independently of Prometheus,
// whether an alert's condition holds for a series at sample k. Where the
// simulator's sampling leaves room for doubt (a range window's edge) it
// answers sure=false, possible=true, and the generator picks check times
// without doubt.
type oracle struct {
	alert  string
	expr   string // the expression of alerts.yml it models, whitespace-normalized
	metric string
	cond   func(g *grid, s *series, k int) (sure, possible bool)
}

func above(threshold float64) func(*grid, *series, int) (bool, bool) {
	return func(g *grid, s *series, k int) (bool, bool) {
		v := s.at(k, g.step)
		ok := !math.IsNaN(v) && v > threshold
		return ok, ok
	}
}

// aboveFractionOf: the series is above fraction times the value of another
// (label-less) metric at the same time, computed in float64 as PromQL does.
func aboveFractionOf(fraction float64, other string) func(*grid, *series, int) (bool, bool) {
	return func(g *grid, s *series, k int) (bool, bool) {
		v, c := s.at(k, g.step), math.NaN()
		if o := g.named(other); len(o) == 1 {
			c = o[0].at(k, g.step)
		}
		ok := !math.IsNaN(v) && !math.IsNaN(c) && v > fraction*c
		return ok, ok
	}
}

func changesAbove(window time.Duration, threshold int) func(*grid, *series, int) (bool, bool) {
	return func(g *grid, s *series, k int) (bool, bool) {
		w := int(window / g.step)
		// The range [t-window, t] holds samples k-w..k; one sample less is
		// sure to be inside, one more surely covers it.
		return s.changes(k-w+1, k) > threshold, s.changes(k-w-1, k) > threshold
	}
}

// Alert names of deploy/prometheus/alerts.yml the generator has oracles for.
const (
	AlertQueueSaturated = "FluxQueueSaturated"
	AlertQueueTaskStale = "FluxQueueTaskStale"
	AlertAgentFlapping  = "FluxAgentFlapping"
	AlertZoneIsolated   = "FluxZoneIsolated"
)

// equalsWhere: the series has label key=value and equals v.
func equalsWhere(key, value string, v float64) func(*grid, *series, int) (bool, bool) {
	return func(g *grid, s *series, k int) (bool, bool) {
		ok := s.label(key) == value && s.at(k, g.step) == v
		return ok, ok
	}
}

// The alerts count a cluster's leader only (unless ... flux_raft_leader ==
// 0); the simulator runs one cp, its own leader, which records no
// flux_raft_leader series, so the clause never filters its series.
var oracles = []oracle{
	{AlertQueueSaturated, "flux_queue_depth > 0.8 * flux_queue_capacity unless on (job, instance) flux_raft_leader == 0", core.MetricQueueDepth, aboveFractionOf(0.8, core.MetricQueueCapacity)},
	{AlertQueueTaskStale, "flux_queue_oldest_task_age > 60 unless on (job, instance) flux_raft_leader == 0", core.MetricQueueOldestTaskAge, above(60)},
	{AlertAgentFlapping, "changes(flux_agent_connected[5m]) > 3 unless on (job, instance) flux_raft_leader == 0", core.MetricAgentConnected, changesAbove(5*time.Minute, 3)},
	{AlertZoneIsolated, `flux_domain_state{state="ISOLATED"} == 1 unless on (job, instance) flux_raft_leader == 0`, core.MetricDomainState, equalsWhere("state", "ISOLATED", 1)},
}

// PromtoolOptions configure a generated rule test.
type PromtoolOptions struct {
	// RuleFile is the rule_files entry of the test: the path of the rules
	// (usually StripAnnotations of alerts.yml), relative to the test file.
	RuleFile string
	// Job and Instance label every series, as a Prometheus scrape would;
	// "fluxforge-sim" and the run's name by default.
	Job, Instance string
	// MustFire are the alerts the incident must fire. Empty means a calm
	// run: every alert of the rules must stay silent throughout.
	MustFire []string
	// SilenceEvery is how often a calm run checks every alert (default 1m).
	SilenceEvery time.Duration
}

// Check is one assertion of a generated test.
type Check struct {
	Alert  string
	At     time.Duration
	Firing [][]sim.Label // the firing alerts' series labels (with job and instance); none: silent
	Why    string
}

// PromtoolTest is a generated rule test and what it asserts.
type PromtoolTest struct {
	YAML   []byte
	Checks []Check
}

// Promtool writes the series a run recorded as a `promtool test rules`
// input for rules (the content of alerts.yml), with checks that each alert
// of o.MustFire fires at the first time the oracle is sure it must, and is
// silent just before the incident reaches its threshold and once it has
// resolved; or, for a calm run, that no alert ever fires. It fails when the
// run does not show the incident (the alert cannot fire), or a calm run
// crosses a threshold.
func Promtool(res *sim.Result, rules []byte, o PromtoolOptions) (PromtoolTest, error) {
	parsed, err := ParseAlertRules(rules)
	if err != nil {
		return PromtoolTest{}, err
	}
	g, err := newGrid(res)
	if err != nil {
		return PromtoolTest{}, err
	}
	if o.Job == "" {
		o.Job = "fluxforge-sim"
	}
	if o.Instance == "" {
		o.Instance = res.Name
	}
	if o.Instance == "" {
		o.Instance = "sim"
	}
	if o.RuleFile == "" {
		return PromtoolTest{}, fmt.Errorf("export: PromtoolOptions.RuleFile is required")
	}
	if o.SilenceEvery <= 0 {
		o.SilenceEvery = time.Minute
	}
	rule := func(name string) (AlertRule, bool) {
		i := slices.IndexFunc(parsed, func(r AlertRule) bool { return r.Name == name })
		if i < 0 {
			return AlertRule{}, false
		}
		return parsed[i], true
	}

	var checks []Check
	if len(o.MustFire) == 0 {
		checks, err = calmChecks(g, parsed, o)
	} else {
		for _, name := range o.MustFire {
			r, ok := rule(name)
			if !ok {
				return PromtoolTest{}, fmt.Errorf("export: alert %s is not in the rules", name)
			}
			c, err := fireChecks(g, r, o, res.Name)
			if err != nil {
				return PromtoolTest{}, err
			}
			checks = append(checks, c...)
		}
	}
	if err != nil {
		return PromtoolTest{}, err
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "# Generated from a FluxForge simulator run by sim/export: do not edit.\n")
	fmt.Fprintf(&b, "# Run: %s, seed %d, %v of virtual time sampled every %v.\n", res.Name, res.Seed, res.End, g.step)
	fmt.Fprintf(&b, "# Check with: promtool test rules <this file>\n")
	for _, c := range checks {
		fmt.Fprintf(&b, "#   %s at %s: %s\n", c.Alert, promDuration(c.At), c.Why)
	}
	fmt.Fprintf(&b, "rule_files:\n  - %s\n", yamlQuote(o.RuleFile))
	fmt.Fprintf(&b, "evaluation_interval: %s\n", promDuration(g.step))
	fmt.Fprintf(&b, "tests:\n")
	fmt.Fprintf(&b, "  - name: %s\n", yamlQuote(fmt.Sprintf("%s seed %d", res.Name, res.Seed)))
	fmt.Fprintf(&b, "    interval: %s\n", promDuration(g.step))
	fmt.Fprintf(&b, "    input_series:\n")
	for _, s := range g.series {
		fmt.Fprintf(&b, "      - series: %s\n", yamlQuote(seriesString(s.name, withTarget(s.labels, o))))
		fmt.Fprintf(&b, "        values: %s\n", yamlQuote(valuesString(s.values)))
	}
	fmt.Fprintf(&b, "    alert_rule_test:\n")
	for _, c := range checks {
		r, _ := rule(c.Alert)
		fmt.Fprintf(&b, "      # %s\n", c.Why)
		fmt.Fprintf(&b, "      - eval_time: %s\n", promDuration(c.At))
		fmt.Fprintf(&b, "        alertname: %s\n", c.Alert)
		if len(c.Firing) == 0 {
			fmt.Fprintf(&b, "        exp_alerts: []\n")
			continue
		}
		fmt.Fprintf(&b, "        exp_alerts:\n")
		for _, ls := range c.Firing {
			fmt.Fprintf(&b, "          - exp_labels:\n")
			all := slices.Clone(ls)
			for k, v := range r.Labels {
				all = append(all, sim.Label{Name: k, Value: v})
			}
			slices.SortFunc(all, func(a, b sim.Label) int { return strings.Compare(a.Name, b.Name) })
			for _, l := range all {
				fmt.Fprintf(&b, "              %s: %s\n", l.Name, yamlQuote(l.Value))
			}
		}
	}
	return PromtoolTest{YAML: b.Bytes(), Checks: checks}, nil
}

func oracleFor(r AlertRule) (oracle, error) {
	for _, o := range oracles {
		if o.alert == r.Name {
			if o.expr != r.Expr {
				return oracle{}, fmt.Errorf("export: alert %s changed: the rules say %q, the oracle models %q; update sim/export", r.Name, r.Expr, o.expr)
			}
			return o, nil
		}
	}
	return oracle{}, fmt.Errorf("export: no oracle for alert %s (have %s, %s, %s, %s)", r.Name, AlertQueueSaturated, AlertQueueTaskStale, AlertAgentFlapping, AlertZoneIsolated)
}

// firingState is an alert's state for one series at one evaluation.
type firingState int

const (
	notFiring firingState = iota
	firing
	unsure
)

// state reports whether the alert fires for s at evaluation k: its
// condition must have held at every evaluation of the last `for`.
func state(g *grid, o oracle, r AlertRule, s *series, k int) firingState {
	n := int((r.For + g.step - 1) / g.step)
	if k-n < 0 {
		return notFiring // the rule has not been evaluated for `for` yet
	}
	allSure := true
	for j := k - n; j <= k; j++ {
		sure, possible := o.cond(g, s, j)
		if !possible {
			return notFiring
		}
		allSure = allSure && sure
	}
	if allSure {
		return firing
	}
	return unsure
}

// statesAt returns the firing series at k, and whether every series is
// decided.
func statesAt(g *grid, o oracle, r AlertRule, k int) (fired []*series, decided bool) {
	decided = true
	for _, s := range g.named(o.metric) {
		switch state(g, o, r, s, k) {
		case firing:
			fired = append(fired, s)
		case unsure:
			decided = false
		}
	}
	return fired, decided
}

func fireChecks(g *grid, r AlertRule, opts PromtoolOptions, run string) ([]Check, error) {
	o, err := oracleFor(r)
	if err != nil {
		return nil, err
	}
	if len(g.named(o.metric)) == 0 {
		return nil, fmt.Errorf("export: the run recorded no %s, which %s watches", o.metric, r.Name)
	}
	first := -1
	for k := 0; k < g.n && first < 0; k++ {
		for _, s := range g.named(o.metric) {
			if _, possible := o.cond(g, s, k); possible {
				first = k
				break
			}
		}
	}
	if first < 0 {
		return nil, fmt.Errorf("export: %s never reaches the threshold of %s (%s): the run does not show the incident", run, r.Name, r.Expr)
	}
	var checks []Check
	if first > 0 {
		checks = append(checks, Check{Alert: r.Name, At: time.Duration(first-1) * g.step,
			Why: fmt.Sprintf("silent before the incident: %s first holds at %s", r.Expr, promDuration(time.Duration(first)*g.step))})
	}
	fire := -1
	for k := first; k < g.n; k++ {
		fired, decided := statesAt(g, o, r, k)
		if decided && len(fired) > 0 {
			fire = k
			checks = append(checks, Check{Alert: r.Name, At: time.Duration(k) * g.step, Firing: labelsOf(fired, opts),
				Why: fmt.Sprintf("fires: %s has held for %v (for: %v)", r.Expr, time.Duration(k-first)*g.step, r.For)})
			break
		}
	}
	if fire < 0 {
		return nil, fmt.Errorf("export: %s reaches the threshold of %s at %s but never holds it for %v: the alert cannot fire",
			run, r.Name, promDuration(time.Duration(first)*g.step), r.For)
	}
	for k := fire + 1; k < g.n; k++ {
		if fired, decided := statesAt(g, o, r, k); decided && len(fired) == 0 {
			checks = append(checks, Check{Alert: r.Name, At: time.Duration(k) * g.step,
				Why: "resolved: the condition no longer held for a whole `for` window"})
			break
		}
	}
	return checks, nil
}

func calmChecks(g *grid, rules []AlertRule, opts PromtoolOptions) ([]Check, error) {
	every := max(int(opts.SilenceEvery/g.step), 1)
	var checks []Check
	for k := every; k < g.n; k += every {
		for _, r := range rules {
			if o, err := oracleFor(r); err == nil {
				for _, s := range g.named(o.metric) {
					if _, possible := o.cond(g, s, k); possible {
						return nil, fmt.Errorf("export: the calm run crosses the threshold of %s (%s) at %s for %s",
							r.Name, r.Expr, promDuration(time.Duration(k)*g.step), seriesString(s.name, s.labels))
					}
				}
			}
			checks = append(checks, Check{Alert: r.Name, At: time.Duration(k) * g.step, Why: "calm: silent"})
		}
	}
	return checks, nil
}

func withTarget(labels []sim.Label, o PromtoolOptions) []sim.Label {
	out := append(slices.Clone(labels), sim.Label{Name: "instance", Value: o.Instance}, sim.Label{Name: "job", Value: o.Job})
	slices.SortFunc(out, func(a, b sim.Label) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func labelsOf(ss []*series, o PromtoolOptions) [][]sim.Label {
	out := make([][]sim.Label, 0, len(ss))
	for _, s := range ss {
		out = append(out, withTarget(s.labels, o))
	}
	return out
}

// seriesString formats a series selector: name{a="b",...}.
func seriesString(name string, labels []sim.Label) string {
	var b strings.Builder
	b.WriteString(name)
	if len(labels) > 0 {
		b.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(l.Name)
			b.WriteString(`="`)
			b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(l.Value))
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	return b.String()
}

// valuesString writes values in promtool's expanding notation: runs of one
// value as "v+0xN", runs of missing samples as "_xN".
func valuesString(vs []float64) string {
	var parts []string
	for i := 0; i < len(vs); {
		j := i + 1
		for j < len(vs) && (vs[j] == vs[i] || math.IsNaN(vs[j]) && math.IsNaN(vs[i])) {
			j++
		}
		n := j - i
		switch {
		case math.IsNaN(vs[i]) && n == 1:
			parts = append(parts, "_")
		case math.IsNaN(vs[i]):
			parts = append(parts, fmt.Sprintf("_x%d", n))
		case n == 1:
			parts = append(parts, formatFloat(vs[i]))
		default:
			parts = append(parts, fmt.Sprintf("%s+0x%d", formatFloat(vs[i]), n-1))
		}
		i = j
	}
	return strings.Join(parts, " ")
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// promDuration formats d as Prometheus reads it: whole seconds or
// milliseconds.
func promDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

// yamlQuote single-quotes s for YAML.
func yamlQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
