package deploy_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const dashboardPath = "grafana/fluxforge.json"

// dashboard is the part of Grafana's dashboard model the checks read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Type       string          `json:"type"`
			Name       string          `json:"name"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name string `json:"name"`
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr       string      `json:"expr"`
		RefID      string      `json:"refId"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's panels
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(raw) {
		t.Fatalf("%s is not valid JSON", dashboardPath)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return d
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// TestDashboardModel checks what a Grafana import needs: a uid and title,
// a recent schema, a Prometheus datasource variable every query uses, unique
// panel ids, a grid position per panel, and queries with unique refIds.
func TestDashboardModel(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q and title %q must be set", d.UID, d.Title)
	}
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("schemaVersion %d, want about 39", d.SchemaVersion)
	}
	hasDS := false
	for _, v := range d.Templating.List {
		if v.Type == "datasource" && v.Name == "datasource" && string(v.Query) == `"prometheus"` {
			hasDS = true
		}
	}
	if !hasDS {
		t.Error(`no templating variable {"type":"datasource","name":"datasource","query":"prometheus"}`)
	}
	ids := map[int]string{}
	queries := 0
	for _, p := range allPanels(d.Panels) {
		if p.ID <= 0 {
			t.Errorf("panel %q has no id", p.Title)
		}
		if other, dup := ids[p.ID]; dup {
			t.Errorf("panel id %d used by %q and %q", p.ID, other, p.Title)
		}
		ids[p.ID] = p.Title
		if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: bad gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || len(p.Targets) == 0 {
			t.Errorf("panel %d (%s) needs a title and at least one query", p.ID, p.Type)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the ${datasource} variable: %+v", p.Title, p.Datasource)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			queries++
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: query %q with empty or duplicate refId %q", p.Title, tg.Expr, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: query %q does not use ${datasource}", p.Title, tg.Expr)
			}
		}
	}
	if queries < 20 {
		t.Errorf("only %d queries; the dashboard lost panels", queries)
	}
}

var (
	metricName = regexp.MustCompile(`\bflux_[a-zA-Z0-9_]+\b`)
	// selector matches metric{matchers}; matcherLabel the label names in it.
	selector     = regexp.MustCompile(`\b(flux_[a-zA-Z0-9_]+)\{([^}]*)\}`)
	matcherLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	groupingBy   = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// TestDashboardQueriesUseExportedMetrics scrapes an in-process cp and checks
// that every metric every panel, annotation and variable query names is
// exported, with the labels the query selects or groups by (job and
// instance come from the Prometheus scrape; le from histograms).
func TestDashboardQueriesUseExportedMetrics(t *testing.T) {
	d := loadDashboard(t)
	series := exportedSeries(t, scrapeCP(t))

	type query struct{ where, expr string }
	var qs []query
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			qs = append(qs, query{"panel " + p.Title, tg.Expr})
		}
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			qs = append(qs, query{"annotation " + a.Name, a.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			qs = append(qs, query{"variable " + v.Name, v.Definition})
		}
	}
	scrapeLabels := []string{"job", "instance", "le"}
	checked := map[string]bool{}
	for _, q := range qs {
		names := metricName.FindAllString(q.expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: query %q uses no flux_ metric", q.where, q.expr)
		}
		for _, n := range names {
			checked[n] = true
			if _, ok := series[n]; !ok {
				t.Errorf("%s: %s is not exported by the cp (query %q)", q.where, n, q.expr)
			}
		}
		for _, m := range selector.FindAllStringSubmatch(q.expr, -1) {
			for _, l := range matcherLabel.FindAllStringSubmatch(m[2], -1) {
				if !slices.Contains(series[m[1]], l[1]) && !slices.Contains(scrapeLabels, l[1]) {
					t.Errorf("%s: %s has no label %q (has %v)", q.where, m[1], l[1], series[m[1]])
				}
			}
		}
		// Every label grouped by must exist on at least one metric of the query.
		for _, g := range groupingBy.FindAllStringSubmatch(q.expr, -1) {
			for _, l := range strings.Split(g[1], ",") {
				l = strings.TrimSpace(l)
				found := l == "" || slices.Contains(scrapeLabels, l)
				for _, n := range names {
					found = found || slices.Contains(series[n], l)
				}
				if !found {
					t.Errorf("%s: groups by %q, which none of %v has", q.where, l, names)
				}
			}
		}
	}
	// The dashboard covers what the issue asks for.
	for _, n := range []string{"flux_reconcile_duration_seconds_bucket", "flux_scheduler_decisions_total",
		"flux_api_errors_total", "flux_http_requests_total", "flux_queue_depth", "flux_queue_capacity",
		"flux_queue_oldest_task_age", "flux_domain_failure_rate", "flux_domain_state", "flux_agents_connected",
		"flux_agents_quarantined", "flux_scheduler_mode"} {
		if !checked[n] {
			t.Errorf("no dashboard query uses %s", n)
		}
	}
}
