// Package e2e holds the end-to-end tests of FluxForge: they build the real
// cp and agent binaries with `go build`, run them as processes on loopback,
// and check over HTTP what an operator would see: tasks submitted through the
// API all end SUCCEEDED exactly once although an agent is killed with
// SIGKILL mid-run, a restarted agent re-registers, the agents survive a cp
// restart, and one flapping agent of a two-agent zone is quarantined without
// the zone being isolated (flap_test.go), a storm of keyed submissions
// loses nothing the cp answered although the cp is killed with SIGKILL six
// times (killstorm_test.go), and a cp restarted in DRAINING keeps its mode
// and queue (restart_test.go). It also holds the end-to-end throughput,
// memory and durability measurements (see measure_test.go and
// measure_durable_test.go, run with -measure). The tests are skipped with
// -short.
package e2e
