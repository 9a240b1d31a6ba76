package core

import "fmt"

// assert panics on a programmer error: a broken internal invariant that no
// input, however bad, should be able to cause. Operating errors are values.
func assert(cond bool, format string, args ...any) {
	if !cond {
		panic("core: assertion failed: " + fmt.Sprintf(format, args...))
	}
}
