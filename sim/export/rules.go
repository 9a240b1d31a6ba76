package export

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"time"
)

// AlertRule is what the generator reads from an alerting rule.
type AlertRule struct {
	Name   string
	Expr   string // whitespace-normalized
	For    time.Duration
	Labels map[string]string // static labels (severity, signal)
}

// ParseAlertRules reads the alerting rules of a Prometheus rules file in the
// layout deploy/prometheus/alerts.yml uses (block style, two-space steps,
// `expr:` inline or as a `|` block). It is not a YAML parser: promtool
// checks the file itself; this only extracts names, expressions, `for` and
// labels, and refuses what it does not understand.
func ParseAlertRules(rules []byte) ([]AlertRule, error) {
	var (
		out   []AlertRule
		cur   *AlertRule
		block string // "labels", "annotations", "expr" while inside one
		keyIn int    // indentation of the current rule's keys
	)
	sc := bufio.NewScanner(bytes.NewReader(rules))
	for n := 1; sc.Scan(); n++ {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		indent := len(raw) - len(strings.TrimLeft(raw, " "))
		if name, ok := strings.CutPrefix(line, "- alert:"); ok {
			out = append(out, AlertRule{Name: unquote(name), Labels: map[string]string{}})
			cur, block, keyIn = &out[len(out)-1], "", indent+2
			continue
		}
		if cur == nil {
			continue // group keys, recording rules
		}
		if indent < keyIn {
			cur, block = nil, "" // the rule ended: next group or a recording rule
			continue
		}
		if indent > keyIn {
			switch block {
			case "expr":
				cur.Expr += " " + line
			case "labels":
				k, v, ok := strings.Cut(line, ":")
				if !ok {
					return nil, fmt.Errorf("export: rules line %d: want key: value in labels, got %q", n, line)
				}
				cur.Labels[strings.TrimSpace(k)] = unquote(v)
			case "annotations":
			default:
				return nil, fmt.Errorf("export: rules line %d: unexpected indentation: %q", n, line)
			}
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("export: rules line %d: want key: value, got %q", n, line)
		}
		v = strings.TrimSpace(v)
		block = ""
		switch k {
		case "expr":
			if v == "|" || v == "|-" || v == ">" {
				block = "expr"
			} else {
				cur.Expr = unquote(v)
			}
		case "for":
			d, err := time.ParseDuration(unquote(v))
			if err != nil {
				return nil, fmt.Errorf("export: rules line %d: alert %s: for: %v", n, cur.Name, err)
			}
			cur.For = d
		case "labels", "annotations":
			block = k
		case "keep_firing_for":
			return nil, fmt.Errorf("export: rules line %d: keep_firing_for is not supported by the oracles", n)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Expr = strings.Join(strings.Fields(out[i].Expr), " ")
		if out[i].Expr == "" {
			return nil, fmt.Errorf("export: alert %s has no expr", out[i].Name)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("export: no alerting rules found")
	}
	return out, nil
}

// StripAnnotations returns rules without the annotations blocks of its
// rules. promtool compares annotations exactly, and the ones of alerts.yml
// render the alert's value; the generated tests check what fires (name,
// expression, for, labels), which stripping leaves untouched, and
// alerts_test.yml checks the annotations.
func StripAnnotations(rules []byte) []byte {
	var out bytes.Buffer
	skipDeeper := -1
	sc := bufio.NewScanner(bytes.NewReader(rules))
	for sc.Scan() {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		indent := len(raw) - len(strings.TrimLeft(raw, " "))
		if skipDeeper >= 0 {
			if line == "" || indent > skipDeeper {
				continue
			}
			skipDeeper = -1
		}
		if line == "annotations:" {
			skipDeeper = indent
			continue
		}
		out.WriteString(raw)
		out.WriteByte('\n')
	}
	return out.Bytes()
}

func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1]
	}
	return s
}
