package core_test

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

const module = "github.com/fluxforge/fluxforge"

// allowedImports is DESIGN.md's layout table: which project packages each
// package may import. The standard library is always allowed; third-party
// imports are listed explicitly.
var allowedImports = map[string][]string{
	"core":      {},
	"net":       {"core", "github.com/julienschmidt/httprouter"},
	"sim":       {"core", "net"},
	"scenarios": {"sim", "core", "net"},
	"cp":        {"core", "net", "github.com/julienschmidt/httprouter", "github.com/prometheus/", "github.com/benbjohnson/clock", "github.com/hashicorp/"},
	"agent":     {"core", "net", "github.com/julienschmidt/httprouter", "github.com/prometheus/", "github.com/benbjohnson/clock"},
	// Test harnesses shared by several packages' tests (jsontest).
	"internal": {"core", "pgregory.net/rapid"},
}

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestImportGraph keeps the package graph honest: core imports only the
// standard library, net only core, sim only core and net, and so on.
func TestImportGraph(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	root := repoRoot(t)
	for pkg, allowed := range allowedImports {
		dir := filepath.Join(root, pkg)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./"+pkg+"/...")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			if bytes.Contains(out, []byte("matched no packages")) {
				continue
			}
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			fields := strings.Fields(line)
			if len(fields) == 0 || fields[0] == "go:" {
				continue
			}
			for _, imp := range fields[1:] {
				if !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
					continue // standard library
				}
				ok := false
				if rest, isOurs := strings.CutPrefix(imp, module+"/"); isOurs {
					top := strings.SplitN(rest, "/", 2)[0]
					ok = top == pkg || slices.Contains(allowed, top)
				} else {
					for _, a := range allowed {
						if strings.HasPrefix(imp, a) {
							ok = true
						}
					}
				}
				if !ok {
					t.Errorf("%s imports %s, which DESIGN.md's layout does not allow", fields[0], imp)
				}
			}
		}
	}
}

// banned are calls that would make core or sim nondeterministic or
// concurrent. Test files are checked too, except for this one.
var banned = []struct {
	re   *regexp.Regexp
	what string
}{
	{regexp.MustCompile(`\btime\.Now\(`), "time.Now"},
	{regexp.MustCompile(`\btime\.Sleep\(`), "time.Sleep"},
	{regexp.MustCompile(`\btime\.(After|Tick|NewTimer|NewTicker|AfterFunc)\(`), "real timers"},
	{regexp.MustCompile(`\btime\.Since\(|\btime\.Until\(`), "time.Since/Until"},
	{regexp.MustCompile(`\bgo\s+(func\b|[A-Za-z_][A-Za-z0-9_.]*\()`), "goroutines"},
	{regexp.MustCompile(`\bchan\s+[A-Za-z_\[\]*{}]|<-\s*[A-Za-z_]`), "channels"},
	{regexp.MustCompile(`\brand\.(Int|Intn|IntN|Float64|Float32|Perm|Shuffle|Uint64|Uint32|Int64|Int64N|N)\(`), "the global RNG"},
	{regexp.MustCompile(`"os"|"net/http"|"io/ioutil"|"os/exec"|"sync"`), "I/O or locking packages"},
	{regexp.MustCompile(`\bclock\.New\(\)`), "the real clock"},
}

// TestNoNondeterminism keeps core/ and sim/ free of goroutines, real time,
// sleeps, global randomness and I/O.
func TestNoNondeterminism(t *testing.T) {
	root := repoRoot(t)
	for _, pkg := range []string{"core", "sim"} {
		files, _ := filepath.Glob(filepath.Join(root, pkg, "*.go"))
		for _, f := range files {
			base := filepath.Base(f)
			if base == "arch_test.go" || strings.HasSuffix(base, "_test.go") && pkg == "sim" && strings.Contains(base, "golden") {
				continue
			}
			// Tests may read golden files and run commands.
			isTest := strings.HasSuffix(base, "_test.go")
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(fh)
			for n := 1; sc.Scan(); n++ {
				line := sc.Text()
				if i := strings.Index(line, "//"); i >= 0 {
					line = line[:i]
				}
				for _, b := range banned {
					if isTest && (b.what == "I/O or locking packages") {
						continue
					}
					if b.re.MatchString(line) {
						t.Errorf("%s/%s:%d uses %s: %s", pkg, base, n, b.what, strings.TrimSpace(sc.Text()))
					}
				}
			}
			fh.Close()
		}
	}
}
