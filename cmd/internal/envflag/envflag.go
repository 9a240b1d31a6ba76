// Package envflag gives every flag of a FlagSet an environment twin
// FLUX_<FLAG> (upper case, '-' as '_'); a flag given on the command line
// wins over its twin. The cp and agent commands share it.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// ErrUsage marks a configuration error; commands exit with status 2 on it.
var ErrUsage = errors.New("usage")

// Name is the environment twin of flag name.
func Name(flagName string) string {
	return "FLUX_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs, refuses positional arguments, then sets every
// flag not given on the command line from its non-empty twin in getenv.
// Errors wrap ErrUsage and name the flag or variable at fault.
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || envErr != nil {
			return
		}
		name := Name(f.Name)
		if v := getenv(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%w: %s=%q: %v", ErrUsage, name, v, err)
			}
		}
	})
	return envErr
}
