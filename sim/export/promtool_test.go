package export

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fluxforge/fluxforge/sim"
)

func readRules(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func run(t *testing.T, o sim.Options) *sim.Result {
	t.Helper()
	res, err := sim.Run(o)
	if err != nil {
		t.Fatalf("%s: %v", o.Name, err)
	}
	return &res
}

// writeTest writes a generated test and its stripped rules to a temporary
// directory and returns the test's path.
func writeTest(t *testing.T, name string, pt PromtoolTest, rules []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), StripAnnotations(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".yml")
	if err := os.WriteFile(path, pt.YAML, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func promtoolTest(t *testing.T, path string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH: install the Debian package prometheus (deploy/check.sh does); CI has it")
	}
	out, err := exec.Command(bin, "test", "rules", path).CombinedOutput()
	return string(out), err
}

// TestPromtoolIncidents generates rule tests from simulated incidents and
// runs promtool on them: each incident fires the alert it exists for, at
// the time the oracle says, and a calm run fires nothing.
func TestPromtoolIncidents(t *testing.T) {
	rules := readRules(t)
	for _, c := range []struct {
		opts     sim.Options
		mustFire []string
	}{
		{saturationOptions(1), []string{AlertQueueSaturated}},
		{starvationOptions(1), []string{AlertQueueTaskStale}},
		{flapOptions(1), []string{AlertAgentFlapping}},
		{zoneOutageOptions(1), []string{AlertZoneIsolated}},
		{calmOptions(1), nil},
	} {
		t.Run(c.opts.Name, func(t *testing.T) {
			res := run(t, c.opts)
			pt, err := Promtool(res, rules, PromtoolOptions{RuleFile: "rules.yml", MustFire: c.mustFire})
			if err != nil {
				t.Fatal(err)
			}
			fires := 0
			for _, ch := range pt.Checks {
				t.Logf("%s at %v: %d firing (%s)", ch.Alert, ch.At, len(ch.Firing), ch.Why)
				if len(ch.Firing) > 0 {
					fires++
				}
			}
			if want := len(c.mustFire); fires != want {
				t.Errorf("%d firing checks, want %d", fires, want)
			}
			out, err := promtoolTest(t, writeTest(t, c.opts.Name, pt, rules))
			if err != nil {
				t.Fatalf("promtool test rules: %v\n%s", err, out)
			}
		})
	}
}

// TestPromtoolGeneratedTestsHaveTeeth runs generated tests against rules
// with a changed threshold: promtool must then fail, so the generated tests
// really pin the alert's behaviour.
func TestPromtoolGeneratedTestsHaveTeeth(t *testing.T) {
	rules := readRules(t)
	for _, c := range []struct {
		opts     sim.Options
		alert    string
		from, to string
	}{
		{saturationOptions(1), AlertQueueSaturated, "expr: flux_queue_depth > 0.8 * flux_queue_capacity", "expr: flux_queue_depth > 0.99 * flux_queue_capacity"},
		{starvationOptions(1), AlertQueueTaskStale, "expr: flux_queue_oldest_task_age > 60", "expr: flux_queue_oldest_task_age > 6000"},
		{flapOptions(1), AlertAgentFlapping, "expr: changes(flux_agent_connected[5m]) > 3", "expr: changes(flux_agent_connected[5m]) > 1"},
		{zoneOutageOptions(1), AlertZoneIsolated, `expr: flux_domain_state{state="ISOLATED"} == 1`, `expr: flux_domain_state{state="PROBING"} == 1`},
	} {
		t.Run(c.opts.Name, func(t *testing.T) {
			pt, err := Promtool(run(t, c.opts), rules, PromtoolOptions{RuleFile: "rules.yml", MustFire: []string{c.alert}})
			if err != nil {
				t.Fatal(err)
			}
			mutated := bytes.Replace(rules, []byte(c.from), []byte(c.to), 1)
			if bytes.Equal(mutated, rules) {
				t.Fatalf("alerts.yml has no %q", c.from)
			}
			out, err := promtoolTest(t, writeTest(t, c.opts.Name, pt, mutated))
			if err == nil {
				t.Fatalf("promtool passed against rules with %q:\n%s", c.to, out)
			}
		})
	}
}

func TestPromtoolRefusesRunsWithoutTheIncident(t *testing.T) {
	rules := readRules(t)
	calm := run(t, calmOptions(1))
	_, err := Promtool(calm, rules, PromtoolOptions{RuleFile: "r.yml", MustFire: []string{AlertQueueSaturated}})
	if err == nil || !strings.Contains(err.Error(), "does not show the incident") {
		t.Errorf("calm run must not prove the saturation alert: %v", err)
	}
	_, err = Promtool(run(t, flapOptions(1)), rules, PromtoolOptions{RuleFile: "r.yml"})
	if err == nil || !strings.Contains(err.Error(), "calm run crosses the threshold of FluxAgentFlapping") {
		t.Errorf("a flapping run is not calm: %v", err)
	}
	changed := bytes.Replace(rules, []byte("expr: flux_queue_depth > 0.8 * flux_queue_capacity"), []byte("expr: flux_queue_depth > 700"), 1)
	_, err = Promtool(calm, changed, PromtoolOptions{RuleFile: "r.yml", MustFire: []string{AlertQueueSaturated}})
	if err == nil || !strings.Contains(err.Error(), "update sim/export") {
		t.Errorf("a changed rule must be noticed: %v", err)
	}
	_, err = Promtool(calm, rules, PromtoolOptions{RuleFile: "r.yml", MustFire: []string{"NoSuchAlert"}})
	if err == nil {
		t.Error("unknown alert accepted")
	}
}

func TestPromtoolDeterministic(t *testing.T) {
	rules := readRules(t)
	a, err := Promtool(run(t, flapOptions(7)), rules, PromtoolOptions{RuleFile: "r.yml", MustFire: []string{AlertAgentFlapping}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Promtool(run(t, flapOptions(7)), rules, PromtoolOptions{RuleFile: "r.yml", MustFire: []string{AlertAgentFlapping}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.YAML, b.YAML) {
		t.Error("the same run gave different tests")
	}
}

func TestParseAlertRulesAndStrip(t *testing.T) {
	rules := readRules(t)
	parsed, err := ParseAlertRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"FluxReconcileLatencyHigh":       "5m0s",
		"FluxSchedulerDecisionsFlatline": "5m0s",
		"FluxAPIErrorRateHigh":           "5m0s",
		AlertQueueSaturated:              "1m0s",
		AlertQueueTaskStale:              "1m0s",
		AlertAgentFlapping:               "1m0s",
		"FluxZoneIsolated":               "15s",
		"FluxTLSCertExpiringSoon":        "10m0s",
		"FluxNoLeader":                   "30s",
		"FluxRaftApplyLagging":           "2m0s",
		"FluxLogDiskSlow":                "10m0s",
	}
	if len(parsed) != len(want) {
		t.Fatalf("parsed %d rules, want %d: %+v", len(parsed), len(want), parsed)
	}
	for _, r := range parsed {
		if want[r.Name] != r.For.String() {
			t.Errorf("%s: for %v, want %s", r.Name, r.For, want[r.Name])
		}
		if r.Labels["severity"] == "" {
			t.Errorf("%s: no severity label", r.Name)
		}
		if _, err := oracleFor(r); err != nil && strings.Contains(err.Error(), "changed") {
			t.Error(err)
		}
	}
	stripped := StripAnnotations(rules)
	if bytes.Contains(stripped, []byte(" annotations:")) || bytes.Contains(stripped, []byte("runbook_action:")) {
		t.Error("annotations left after StripAnnotations")
	}
	again, err := ParseAlertRules(stripped)
	if err != nil {
		t.Fatal(err)
	}
	for i := range parsed {
		if parsed[i].Name != again[i].Name || parsed[i].Expr != again[i].Expr || parsed[i].For != again[i].For ||
			len(parsed[i].Labels) != len(again[i].Labels) {
			t.Errorf("stripping changed rule %d: %+v -> %+v", i, parsed[i], again[i])
		}
	}
	if bin, err := exec.LookPath("promtool"); err == nil {
		path := filepath.Join(t.TempDir(), "stripped.yml")
		if err := os.WriteFile(path, stripped, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "check", "rules", path).CombinedOutput(); err != nil {
			t.Errorf("promtool check rules on the stripped rules: %v\n%s", err, out)
		}
	}
}

func TestValuesString(t *testing.T) {
	nan := math.NaN()
	for _, c := range []struct {
		in   []float64
		want string
	}{
		{[]float64{1}, "1"},
		{[]float64{1, 1, 1}, "1+0x2"},
		{[]float64{nan, nan, 0.5, 2, 2}, "_x2 0.5 2+0x1"},
		{[]float64{nan, 3, nan}, "_ 3 _"},
		{[]float64{1e-05, -2}, "1e-05 -2"},
	} {
		if got := valuesString(c.in); got != c.want {
			t.Errorf("valuesString(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}
