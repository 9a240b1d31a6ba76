package core

import (
	"bytes"
	"fmt"
	"strings"
)

// RestoreWithConfig is Restore with the export's config replaced by what
// edit makes of it, before the state is rebuilt: a what-if replay (cmd/sim
// -replay -set) runs the recorded inputs on the recorded state under
// another config. The config is validated as NewControlPlane does.
func RestoreWithConfig(data []byte, faults FaultPoints, edit func(*Config) error) (*ControlPlane, error) {
	if !bytes.HasPrefix(data, []byte(stateMagic)) {
		return nil, fmt.Errorf("%w: not a control plane state export (no %q header)", ErrInvalid, strings.TrimSpace(stateMagic))
	}
	if _, err := Restore(data, faults); err != nil { // the same checks, the same messages
		return nil, err
	}
	s, err := decodeState(data)
	if err != nil {
		return nil, err
	}
	if err := edit(&s.Config); err != nil {
		return nil, err
	}
	s.Config.FaultPoints = faults
	return restoreState(s)
}

// ExportHeader reads an export's format version and layout fingerprint
// without decoding its body, so that a reader can name a mismatch.
func ExportHeader(data []byte) (version uint64, layout string, err error) {
	if !bytes.HasPrefix(data, []byte(stateMagic)) {
		return 0, "", fmt.Errorf("%w: not a control plane state export (no %q header)", ErrInvalid, strings.TrimSpace(stateMagic))
	}
	d := &stateDecoder{buf: data, off: len(stateMagic)}
	if version, err = d.uvarint(); err != nil {
		return 0, "", err
	}
	fp, err := d.bytes()
	if err != nil {
		return 0, "", err
	}
	return version, string(fp), nil
}

// StateLayout is the layout fingerprint this core writes in its exports.
func StateLayout() string { return stateV2Fingerprint }
