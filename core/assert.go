package core

import "fmt"

// failf panics on a programmer error: a broken internal invariant that no
// input, however bad, should be able to cause. Operating errors are values.
//
// Call sites guard it with the condition (if !cond { failf(...) }) rather
// than passing the condition in, so that the hot path does not box the
// message arguments into interfaces (an allocation per call) when all is well.
func failf(format string, args ...any) {
	panic("core: assertion failed: " + fmt.Sprintf(format, args...))
}
