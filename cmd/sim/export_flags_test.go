package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestExportFlagsWriteReportAndPromtoolTest(t *testing.T) {
	dir := t.TempDir()
	report, test := filepath.Join(dir, "r.html"), filepath.Join(dir, "flap.yml")
	var stdout, stderr bytes.Buffer
	code := run([]string{"-scenario", "agent-flap", "-seed", "2", "-quiet", "-report", report,
		"-promtool-test", test, "-promtool-rules", "../../deploy/prometheus/alerts.yml"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "FluxAgentFlapping must fire at") {
		t.Errorf("stderr does not say when the alert must fire:\n%s", stderr.String())
	}
	page, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(page))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("report is not well-formed: %v", err)
		}
	}
	if !bytes.Contains(page, []byte("agent-flap, seed 2")) || !bytes.Contains(page, []byte(`data-series="flux_queue_depth"`)) {
		t.Error("report lacks its title or the queue series")
	}
	if _, err := os.Stat(filepath.Join(dir, "flap.rules.yml")); err != nil {
		t.Fatalf("rules beside the test: %v", err)
	}
	if bin, err := exec.LookPath("promtool"); err == nil {
		if out, err := exec.Command(bin, "test", "rules", test).CombinedOutput(); err != nil {
			t.Fatalf("promtool test rules: %v\n%s", err, out)
		}
	}
}

func TestExportFlagsRefuseScenariosWithoutAProof(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"-scenario", "poison-task", "-quiet", "-promtool-test", filepath.Join(t.TempDir(), "x.yml"),
		"-promtool-rules", "../../deploy/prometheus/alerts.yml"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "no alert proof") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	code = run([]string{"-scenario", "agent-flap", "-quiet", "-promtool-proof", "calm", "-promtool-test", filepath.Join(t.TempDir(), "calm.yml"),
		"-promtool-rules", "../../deploy/prometheus/alerts.yml"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("calm proof: exit %d, stderr %q", code, stderr.String())
	}
}
