package core

import "time"

// Shorthands for tests that want one kind's result: each goes through Apply,
// the only way to change a ControlPlane, like every driver.

func doSubmit(cp *ControlPlane, now time.Time, in SubmitInput) (Task, bool, error) {
	r, err := cp.Apply(now, in)
	return r.Task, r.Replayed, err
}

func doHeartbeat(cp *ControlPlane, now time.Time, hb HeartbeatInput) (HeartbeatReply, error) {
	r, err := cp.Apply(now, hb)
	return r.Heartbeat, err
}

func doCancel(cp *ControlPlane, now time.Time, in CancelInput) (Task, error) {
	r, err := cp.Apply(now, in)
	return r.Task, err
}

func doPurge(cp *ControlPlane, now time.Time, in PurgeInput) (int, error) {
	r, err := cp.Apply(now, in)
	return r.Purged, err
}
