// Package deploy holds no Go code of its own: it is the home of the
// operations pack (Prometheus alert rules and their promtool tests, the
// Grafana dashboard, systemd units) and of the Go tests that check them
// against what the control plane really exports.
//
// Run the checks with deploy/check.sh (installs promtool if missing) or
// `go test ./deploy/` (skips the promtool parts when promtool is not on PATH).
package deploy
