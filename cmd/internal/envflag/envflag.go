// Package envflag gives every flag of a FlagSet an environment twin
// FLUX_<FLAG> (upper case, '-' as '_'); a flag given on the command line
// wins over its twin. The cp and agent commands share it.
//
// Parse also says where each value came from (Origins), so a command's
// start-up errors can name what the user typed: "-heartbeat-timeout 1s" or
// "FLUX_HEARTBEAT_TIMEOUT=1s", never an internal field name.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
)

// ErrUsage marks a configuration error; commands exit with status 2 on it.
var ErrUsage = errors.New("usage")

// Name is the environment twin of flag name.
func Name(flagName string) string {
	return "FLUX_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// origin is how one flag got its value.
type origin struct {
	env bool   // from the environment twin, not the command line
	raw string // the text the user gave, before parsing
}

// Origins records which flags the user gave, where, and as what text.
type Origins struct {
	fs    *flag.FlagSet
	given map[string]origin
}

// Given reports whether flag name was set on the command line or through
// its environment twin (as opposed to left at its default).
func (o Origins) Given(name string) bool {
	_, ok := o.given[name]
	return ok
}

// Describe names flag name and its value the way the user gave them:
// `-name value` from the command line, `FLUX_NAME=value` from the
// environment, `-name value (default)` when not given. A value that is
// empty or holds spaces or quotes is quoted.
func (o Origins) Describe(name string) string {
	if g, ok := o.given[name]; ok {
		if g.env {
			return Name(name) + "=" + quote(g.raw)
		}
		return "-" + name + " " + quote(g.raw)
	}
	v := ""
	if o.fs != nil {
		if f := o.fs.Lookup(name); f != nil {
			v = f.Value.String()
		}
	}
	return "-" + name + " " + quote(v) + " (default)"
}

func quote(v string) string {
	if v == "" || strings.ContainsAny(v, " \t\n\r\"'\\") {
		return strconv.Quote(v)
	}
	return v
}

// Parse parses args into fs, refuses positional arguments, then sets every
// flag not given on the command line from its non-empty twin in getenv.
// Errors wrap ErrUsage and name the flag or variable at fault.
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) (Origins, error) {
	o := Origins{fs: fs, given: map[string]origin{}}
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fs.Args())
	}
	for name, raw := range commandLine(fs, args) {
		o.given[name] = origin{raw: raw}
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if _, set := o.given[f.Name]; set || envErr != nil {
			return
		}
		name := Name(f.Name)
		if v := getenv(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%w: %s=%q: %v", ErrUsage, name, v, err)
				return
			}
			o.given[f.Name] = origin{env: true, raw: v}
		}
	})
	return o, envErr
}

// commandLine returns the raw text of every flag in args, the last one
// winning as in package flag. It follows flag's grammar ("-name=value",
// "-name value", a boolean "-name", one or two dashes, "--" ends flags) and
// runs only after fs.Parse accepted args, so it need not report errors.
func commandLine(fs *flag.FlagSet, args []string) map[string]string {
	out := map[string]string{}
	for len(args) > 0 {
		a := args[0]
		args = args[1:]
		if len(a) < 2 || a[0] != '-' || a == "--" {
			break
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		name, value, hasValue := strings.Cut(name, "=")
		f := fs.Lookup(name)
		if f == nil {
			continue // -h / -help: Parse has returned already
		}
		if !hasValue {
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
				value = "true"
			} else if len(args) > 0 {
				value, args = args[0], args[1:]
			}
		}
		out[name] = value
	}
	return out
}
