package cp

import (
	"strings"
	"testing"
)

// RUNBOOK: "flux_api_errors_total > 1% rate → Check logs for panics/validation
// errors". A refused request must therefore leave a log line that says what
// was wrong; deliberate load shedding (429/503) and 404s stay at debug level.
func TestRefusedRequestsAreLogged(t *testing.T) {
	tc := startCP(t, false, nil)
	tc.mustStatus(400, "POST", "/v1/tasks", map[string]any{"kind": "sleep", "bogus": 1})
	tc.mustStatus(400, "POST", "/v1/tasks", map[string]any{"kind": "teleport"})
	logs := tc.logs.String()
	for _, want := range []string{`"msg":"validation error"`, `"route":"POST /v1/tasks"`, `"status":400`, `unknown field`, `teleport`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}
