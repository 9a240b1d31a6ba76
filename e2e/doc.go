// Package e2e holds the end-to-end tests of FluxForge: they build the real
// cp and agent binaries with `go build`, run them as processes on loopback,
// and check over HTTP what an operator would see: tasks submitted through the
// API all end SUCCEEDED exactly once although an agent is killed with
// SIGKILL mid-run, a restarted agent re-registers, the agents survive a cp
// restart, and one flapping agent of a two-agent zone is quarantined without
// the zone being isolated (flap_test.go). It also holds the end-to-end
// throughput and memory measurements (see measure_test.go). The tests are
// skipped with -short.
package e2e
