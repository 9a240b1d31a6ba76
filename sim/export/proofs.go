package export

import (
	"time"

	"github.com/fluxforge/fluxforge/sim"
)

// AlertProof names a simulator run that proves alert rules against the
// incident they exist for: a runbook scenario (of package scenarios), maybe
// changed into a variant, and the alerts it must fire (none: it must stay
// calm).
type AlertProof struct {
	// Name of the proof; the scenario's name when it runs unchanged.
	Name string
	// Scenario is the scenarios package's scenario the run starts from.
	Scenario string
	// Variant says how the run differs from the scenario ("" for none);
	// Modify applies it to the scenario's options.
	Variant string
	Modify  func(*sim.Options)
	// MustFire are the alerts the run must fire.
	MustFire []string
}

// AlertProofs are the proofs CI runs: the saturation, staleness, flapping
// and zone-isolated alerts against their incidents, and a calm run that
// fires none.
func AlertProofs() []AlertProof {
	return []AlertProof{
		{Name: "queue-saturation", Scenario: "queue-saturation", MustFire: []string{AlertQueueSaturated}},
		{Name: "starvation-no-aging", Scenario: "starvation",
			Variant: "priority aging disabled (AgingInterval 24h) and the high-priority flood 25% above the fleet's capacity " +
				"(the scenario's is 2% above, so its backlog clears now and then): low-priority work starves behind it",
			Modify: func(o *sim.Options) {
				o.Core.AgingInterval = 24 * time.Hour
				for i := range o.Workload {
					if o.Workload[i].Name == "flood" {
						o.Workload[i].RatePerSecond *= 1.25
					}
				}
			},
			MustFire: []string{AlertQueueTaskStale}},
		{Name: "agent-flap", Scenario: "agent-flap", MustFire: []string{AlertAgentFlapping}},
		{Name: "zone-outage", Scenario: "zone-outage", MustFire: []string{AlertZoneIsolated}},
		{Name: "calm", Scenario: "agent-flap",
			Variant: "faults removed: the scenario's steady workload on a healthy fleet",
			Modify:  func(o *sim.Options) { o.Faults = nil }},
	}
}

// AlertProofFor returns the proof named name, or else the first proof
// that starts from scenario name.
func AlertProofFor(name string) (AlertProof, bool) {
	proofs := AlertProofs()
	for _, p := range proofs {
		if p.Name == name {
			return p, true
		}
	}
	for _, p := range proofs {
		if p.Scenario == name {
			return p, true
		}
	}
	return AlertProof{}, false
}
