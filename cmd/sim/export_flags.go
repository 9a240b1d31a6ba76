package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/fluxforge/fluxforge/scenarios"
	"github.com/fluxforge/fluxforge/sim"
	"github.com/fluxforge/fluxforge/sim/export"
)

// exportFlags are the artefact flags (package sim/export): a promtool rule
// test proving the alert rules against the incident, and an HTML report.
type exportFlags struct {
	promtoolTest, promtoolRules, promtoolProof, report *string
}

func addExportFlags(fs *flag.FlagSet) *exportFlags {
	return &exportFlags{
		promtoolTest: fs.String("promtool-test", "", "write the run's metric series as a `promtool test rules` input with the alerts the incident "+
			"must fire and when (queue-saturation, starvation (run without aging), agent-flap, zone-outage; -promtool-proof calm for a calm run); "+
			"the rules it loads are written beside it as FILE.rules.yml"),
		promtoolRules: fs.String("promtool-rules", filepath.Join("deploy", "prometheus", "alerts.yml"), "the alert rules the -promtool-test file checks"),
		promtoolProof: fs.String("promtool-proof", "", "which proof -promtool-test writes (default: the scenario's; one of "+proofNames()+")"),
		report:        fs.String("report", "", "write a self-contained HTML report of the run (charts, incident timeline, expectations) to this file"),
	}
}

func proofNames() string {
	var names []string
	for _, p := range export.AlertProofs() {
		names = append(names, p.Name)
	}
	return strings.Join(names, ", ")
}

// write produces the requested artefacts for the run of sc with p; it
// returns a non-zero exit status when one cannot be produced.
func (e *exportFlags) write(sc scenarios.Scenario, p scenarios.Params, rep scenarios.Report, stderr io.Writer) int {
	if *e.report != "" {
		if err := e.writeReport(sc, rep); err != nil {
			fmt.Fprintf(stderr, "sim: -report: %v\n", err)
			return 1
		}
	}
	if *e.promtoolTest != "" {
		if err := e.writePromtool(sc, p, stderr); err != nil {
			fmt.Fprintf(stderr, "sim: -promtool-test: %v\n", err)
			return 1
		}
	}
	return 0
}

func (e *exportFlags) writeReport(sc scenarios.Scenario, rep scenarios.Report) error {
	in := export.ReportInput{Title: sc.Name, Description: sc.Description, Options: rep.Options, Result: &rep.Result, Passed: rep.Passed}
	var v *sim.Violation
	if rep.Err != nil && errors.As(rep.Err, &v) {
		in.Err = rep.Err
	}
	for _, c := range rep.Checks {
		if c.Name == "invariants hold" && !c.Passed {
			continue // shown from Err
		}
		in.Expectations = append(in.Expectations, export.Expectation{Name: c.Name, Passed: c.Passed, Detail: c.Detail})
	}
	return writeFile(*e.report, func(w io.Writer) error { return export.Report(w, in) })
}

func (e *exportFlags) writePromtool(sc scenarios.Scenario, p scenarios.Params, stderr io.Writer) error {
	name := *e.promtoolProof
	if name == "" {
		name = sc.Name
	}
	proof, ok := export.AlertProofFor(name)
	if !ok || proof.Scenario != sc.Name {
		return fmt.Errorf("no alert proof %q for scenario %s (proofs: %s)", name, sc.Name, proofNames())
	}
	rules, err := os.ReadFile(*e.promtoolRules)
	if err != nil {
		return fmt.Errorf("%w (run from the repository root or set -promtool-rules)", err)
	}
	p.Trace = nil
	_, opts := sc.Options(p)
	if proof.Modify != nil {
		proof.Modify(&opts)
	}
	opts.Name = proof.Name
	res, err := sim.Run(opts)
	if err != nil {
		return fmt.Errorf("proof %s: %w", proof.Name, err)
	}
	rulesPath := strings.TrimSuffix(*e.promtoolTest, filepath.Ext(*e.promtoolTest)) + ".rules.yml"
	pt, err := export.Promtool(&res, rules, export.PromtoolOptions{RuleFile: filepath.Base(rulesPath), MustFire: proof.MustFire})
	if err != nil {
		return err
	}
	if err := writeFile(rulesPath, func(w io.Writer) error { _, err := w.Write(export.StripAnnotations(rules)); return err }); err != nil {
		return err
	}
	if err := writeFile(*e.promtoolTest, func(w io.Writer) error { _, err := w.Write(pt.YAML); return err }); err != nil {
		return err
	}
	if proof.Variant != "" {
		fmt.Fprintf(stderr, "sim: -promtool-test: proof %s runs a variant of %s: %s\n", proof.Name, sc.Name, proof.Variant)
	}
	for _, c := range pt.Checks {
		if len(c.Firing) > 0 {
			fmt.Fprintf(stderr, "sim: -promtool-test: %s must fire at %v: %s\n", c.Alert, c.At, c.Why)
		}
	}
	fmt.Fprintf(stderr, "sim: -promtool-test: wrote %s and %s; check with: promtool test rules %s\n", *e.promtoolTest, rulesPath, *e.promtoolTest)
	return nil
}

func writeFile(path string, fill func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
