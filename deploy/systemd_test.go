package deploy_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// unitFile is a systemd unit: section → key → values in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value in a section: %q", path, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func parseEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for n, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !regexp.MustCompile(`^FLUX_[A-Z0-9_]+$`).MatchString(k) {
			t.Fatalf("%s:%d: want FLUX_NAME=value, got %q", path, n+1, line)
		}
		env[k] = v
	}
	return env
}

// unitEnv returns the Environment= assignments of a unit.
func unitEnv(u unitFile) map[string]string {
	env := map[string]string{}
	for _, e := range u["Service"]["Environment"] {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	return env
}

// TestSystemdUnits checks the units carry the runbook's environment and
// ports, read tokens from an EnvironmentFile, and are hardened.
func TestSystemdUnits(t *testing.T) {
	hardening := map[string]string{
		"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
		"PrivateTmp": "yes", "PrivateDevices": "yes", "RestrictSUIDSGID": "yes", "CapabilityBoundingSet": "",
	}
	for _, c := range []struct {
		unit, envFile, example string
		wantEnv                map[string]string
	}{
		{"flux-cp.service", "/etc/fluxforge/cp.env", "cp.env.example",
			map[string]string{"FLUX_LOG_LEVEL": "info", "FLUX_SCHEDULER_MODE": "NORMAL", "FLUX_LISTEN": ":8080", "FLUX_DATA_DIR": "/var/lib/fluxforge"}},
		{"flux-agent.service", "/etc/fluxforge/agent.env", "agent.env.example",
			map[string]string{"FLUX_LOG_LEVEL": "info", "FLUX_LISTEN": ":9090"}},
	} {
		t.Run(c.unit, func(t *testing.T) {
			u := parseUnit(t, filepath.Join("systemd", c.unit))
			svc := u["Service"]
			if svc == nil || u["Unit"] == nil || u["Install"] == nil {
				t.Fatalf("want [Unit], [Service] and [Install] sections, got %v", u)
			}
			if got := svc["EnvironmentFile"]; !slices.Equal(got, []string{c.envFile}) {
				t.Errorf("EnvironmentFile = %v, want %s", got, c.envFile)
			}
			if got := svc["ExecStart"]; len(got) != 1 || !strings.HasPrefix(got[0], "/usr/local/bin/flux-") {
				t.Errorf("ExecStart = %v", got)
			}
			env := unitEnv(u)
			example := parseEnvFile(t, filepath.Join("systemd", c.example))
			for k, v := range c.wantEnv {
				if env[k] != v {
					t.Errorf("Environment %s=%q, want %q", k, env[k], v)
				}
				if example[k] != v {
					t.Errorf("%s: %s=%q, want %q", c.example, k, example[k], v)
				}
			}
			if c.unit == "flux-cp.service" && !slices.Equal(svc["StateDirectory"], []string{"fluxforge"}) {
				t.Errorf("StateDirectory = %v, want fluxforge (the cp's FLUX_DATA_DIR)", svc["StateDirectory"])
			}
			for k, v := range hardening {
				if got := svc[k]; !slices.Equal(got, []string{v}) {
					t.Errorf("hardening: %s = %v, want %q", k, got, v)
				}
			}
			for _, k := range []string{"FLUX_ADMIN_TOKEN", "FLUX_AGENT_TOKEN"} {
				if _, ok := env[k]; ok {
					t.Errorf("token %s must come from the EnvironmentFile, not Environment=", k)
				}
			}
		})
	}
}

// TestEnvExamplesMatchFlags builds each daemon, reads its -h, and checks
// that every FLUX_ variable the unit and its env example set is the twin of
// a real flag (FLUX_QUEUE_CAPACITY ↔ -queue-capacity).
func TestEnvExamplesMatchFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the daemons")
	}
	for _, c := range []struct{ cmd, unit, example string }{
		{"cp", "flux-cp.service", "cp.env.example"},
		{"agent", "flux-agent.service", "agent.env.example"},
	} {
		t.Run(c.cmd, func(t *testing.T) {
			if files, _ := filepath.Glob(filepath.Join("..", "cmd", c.cmd, "*.go")); len(files) == 0 {
				t.Skipf("cmd/%s does not exist yet", c.cmd)
			}
			bin := filepath.Join(t.TempDir(), c.cmd)
			build := exec.Command("go", "build", "-o", bin, "./cmd/"+c.cmd)
			build.Dir = ".."
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build ./cmd/%s: %v\n%s", c.cmd, err, out)
			}
			out, _ := exec.Command(bin, "-h").CombinedOutput() // -h exits non-zero
			flags := map[string]bool{}
			for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
				flags["FLUX_"+strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))] = true
			}
			if len(flags) == 0 {
				t.Fatalf("no flags in %s -h:\n%s", c.cmd, out)
			}
			vars := parseEnvFile(t, filepath.Join("systemd", c.example))
			for k := range unitEnv(parseUnit(t, filepath.Join("systemd", c.unit))) {
				vars[k] = ""
			}
			for k := range vars {
				if !flags[k] {
					t.Errorf("%s sets %s, but %s has no flag -%s", c.example, k, c.cmd,
						strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, "FLUX_"), "_", "-")))
				}
			}
		})
	}
}

// TestSystemdAnalyzeVerify runs systemd-analyze verify on the units (with
// ExecStart pointed at an existing binary) when it is available: unknown
// keys and bad values are reported on its output.
func TestSystemdAnalyzeVerify(t *testing.T) {
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not on PATH")
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true binary")
	}
	for _, unit := range []string{"flux-cp.service", "flux-agent.service"} {
		raw, err := os.ReadFile(filepath.Join("systemd", unit))
		if err != nil {
			t.Fatal(err)
		}
		fixed := regexp.MustCompile(`(?m)^ExecStart=\S+`).ReplaceAll(raw, []byte("ExecStart="+truePath))
		path := filepath.Join(t.TempDir(), unit)
		if err := os.WriteFile(path, fixed, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(tool, "verify", "--man=no", path).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
	}
}
