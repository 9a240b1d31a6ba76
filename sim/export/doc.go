// Package export turns a simulator run (a sim.Result) into artefacts people
// and tools outside Go read:
//
//   - Promtool writes the metric series the run recorded as a `promtool test
//     rules` input, with the alerts of deploy/prometheus/alerts.yml the
//     incident must fire and when (and where they must stay silent), so the
//     alert rules are proven against the incidents they exist for.
//   - Report writes one self-contained XHTML page with inline SVG charts of
//     the run: queue, oldest task age, agents per domain, domain states, mode
//     and decisions per second, with the incident timeline marked and the
//     expectations' results on top.
//
// Like the simulator it is deterministic (the same Result gives the same
// bytes) and does no I/O of its own: callers pass the rules file's content
// and write the outputs.
package export
