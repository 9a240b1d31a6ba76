package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp"
	"github.com/fluxforge/fluxforge/cp/logfile"
	"github.com/fluxforge/fluxforge/cp/raftlog"
)

// Replay of a real cp's log (-replay PATH): PATH is a stopped cp's data dir
// (read under its LOCK: a dir held by a running cp is refused; export a
// live cp with `fluxctl log export`) or an export file. The cp's own state
// machine (cp.Replay) restores the record's snapshot and applies each entry
// in order; the output is the timeline those entries recorded, then
// `applied_index N` and `state_hash H`, what the cp's snapshot endpoint
// reported at N.
//
// -set KEY=VALUE (repeatable) replays under a changed core config, applied
// at the restored point, and prints how decisions and outcomes differ from
// the recorded run. The recorded inputs are fed as they were: agents do
// not react to the other decisions (a heartbeat reporting a task the
// what-if never assigned is handled as the core handles any stale report).
// The two final lines are then the what-if's.

type replayFlags struct {
	path  string
	until uint64
	sets  setFlags
}

type setFlags []string

func (s *setFlags) String() string     { return strings.Join(*s, ",") }
func (s *setFlags) Set(v string) error { *s = append(*s, v); return nil }

func addReplayFlags(fs *flag.FlagSet) *replayFlags {
	r := &replayFlags{}
	fs.StringVar(&r.path, "replay", "", "replay a stopped cp's data dir or a `fluxctl log export` file and print its timeline")
	fs.Uint64Var(&r.until, "until-index", 0, "with -replay: stop after the entry at this raft index")
	fs.Var(&r.sets, "set", "with -replay: KEY=VALUE changes a core config field (kebab-case) for a what-if; -set help lists them")
	return r
}

func (r *replayFlags) active() bool { return r.path != "" || len(r.sets) > 0 || r.until != 0 }

func (r *replayFlags) run(stdout, stderr io.Writer) int {
	wantHelp := slices.Contains(r.sets, "help")
	if r.path == "" && !wantHelp {
		fmt.Fprintln(stderr, "sim: -until-index and -set need -replay PATH")
		return 2
	}
	var rec raftlog.Record
	var what string
	if r.path != "" {
		var err error
		rec, what, err = readRecord(r.path, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "sim: -replay %s: %v\n", r.path, err)
			return 2
		}
	}
	if wantHelp {
		cfg := core.DefaultConfig()
		src := "defaults"
		if r.path != "" {
			res, err := cp.Replay(rec, cp.ReplayOptions{UntilIndex: r.until})
			if err != nil {
				fmt.Fprintf(stderr, "sim: %v\n", err)
				return 1
			}
			cfg, src = res.Core.Config(), "the replayed state's config"
		}
		fmt.Fprintf(stdout, "-set KEY=VALUE keys (current values: %s):\n", src)
		for _, f := range configFields() {
			fmt.Fprintf(stdout, "  %-34s %v\n", f.key, f.get(&cfg))
		}
		return 0
	}
	real, err := cp.Replay(rec, cp.ReplayOptions{UntilIndex: r.until})
	if err != nil {
		fmt.Fprintf(stderr, "sim: %v\n", err)
		return 1
	}
	first, last := cp.ReplayRange(rec)
	fmt.Fprintf(stdout, "replay %s (%s): indexes %d to %d, restored at %d\n", r.path, what, first, last, real.Start)
	if len(r.sets) == 0 {
		fmt.Fprintln(stdout, "\ntimeline:")
		for _, e := range real.Events {
			fmt.Fprintln(stdout, "  "+eventLine(e))
		}
		fmt.Fprintf(stdout, "\napplied_index %d\nstate_hash %s\n", real.AppliedIndex, real.StateHash)
		return 0
	}
	var desc []string
	edit, err := configEdit(r.sets, &desc)
	if err != nil {
		fmt.Fprintf(stderr, "sim: %v\n", err)
		return 2
	}
	what2, err := cp.Replay(rec, cp.ReplayOptions{UntilIndex: r.until, Config: edit})
	if err != nil {
		fmt.Fprintf(stderr, "sim: what-if: %v\n", err)
		return 1
	}
	writeDiff(stdout, desc, real, what2)
	fmt.Fprintf(stdout, "\napplied_index %d\nstate_hash %s\n", what2.AppliedIndex, what2.StateHash)
	return 0
}

// readRecord reads PATH as a data dir or an export file, warning on stderr
// when another core wrote it.
func readRecord(path string, stderr io.Writer) (raftlog.Record, string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return raftlog.Record{}, "", err
	}
	if st.IsDir() {
		rec, err := raftlog.ReadDir(path)
		if errors.Is(err, raftlog.ErrDirLocked) {
			err = fmt.Errorf("%w (a running cp holds it: replay its export instead, fluxctl log export > FILE)", err)
		}
		return rec, "data dir", err
	}
	f, err := os.Open(path)
	if err != nil {
		return raftlog.Record{}, "", err
	}
	defer f.Close()
	h, rec, err := logfile.Read(f)
	if err != nil {
		return raftlog.Record{}, "", err
	}
	if h.CoreStateVersion != core.StateFormatVersion || h.CoreLayout != core.StateLayout() {
		fmt.Fprintf(stderr, "sim: warning: %s was written by another core version (state format version %d, layout %s; this build: %d, %s): the replay may differ from what that cp did\n",
			path, h.CoreStateVersion, h.CoreLayout, core.StateFormatVersion, core.StateLayout())
	}
	return rec, "export of " + h.CreatedAt.Format(time.RFC3339), nil
}

// eventLine is an event in the simulator's readable timeline style, with
// the cp's sequence number and wall-clock time.
func eventLine(e core.Event) string {
	return fmt.Sprintf("#%-6d %s  %s", e.Seq, e.Time.UTC().Format("2006-01-02T15:04:05.000Z"), e.Summary())
}

// configField is one settable core config field.
type configField struct {
	key  string
	path []int
}

func (f configField) value(cfg *core.Config) reflect.Value {
	return reflect.ValueOf(cfg).Elem().FieldByIndex(f.path)
}

func (f configField) get(cfg *core.Config) any { return f.value(cfg).Interface() }

var durationType = reflect.TypeFor[time.Duration]()

// configFields lists core.Config's scalar fields by kebab-case key; nested
// structs are flattened (Health.QuarantineThreshold is
// quarantine-threshold), prefixed by the struct's name only where two
// names collide. Sorted by key.
func configFields() []configField {
	var all []configField
	var walk func(t reflect.Type, path []int, prefix string)
	walk = func(t reflect.Type, path []int, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			p := append(slices.Clone(path), i)
			switch {
			case !f.IsExported() || f.Name == "FaultPoints":
			case f.Type.Kind() == reflect.Struct && f.Type != durationType && f.Type != reflect.TypeFor[time.Time]():
				walk(f.Type, p, kebab(f.Name)+"-")
			case settable(f.Type):
				all = append(all, configField{key: prefix + kebab(f.Name), path: p})
			}
		}
	}
	walk(reflect.TypeFor[core.Config](), nil, "")
	// Flatten: drop the struct prefix unless the short name collides.
	count := map[string]int{}
	shortOf := func(f configField) string {
		if len(f.path) == 1 {
			return f.key
		}
		t := reflect.TypeFor[core.Config]()
		return kebab(t.FieldByIndex(f.path).Name)
	}
	for _, f := range all {
		count[shortOf(f)]++
	}
	for i, f := range all {
		if s := shortOf(f); count[s] == 1 {
			all[i].key = s
		}
	}
	slices.SortFunc(all, func(a, b configField) int { return strings.Compare(a.key, b.key) })
	return all
}

func settable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.String, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// kebab turns QuarantineThreshold into quarantine-threshold (TTLSeconds
// into ttl-seconds).
func kebab(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 && (unicode.IsLower(r[i-1]) || i+1 < len(r) && unicode.IsLower(r[i+1]) && unicode.IsUpper(r[i-1])) {
			b.WriteByte('-')
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

// configEdit parses the -set flags into an edit of the config.
// The edit records, each time it runs, what it changed in *changed.
func configEdit(sets []string, changed *[]string) (func(*core.Config) error, error) {
	fields := map[string]configField{}
	for _, f := range configFields() {
		fields[f.key] = f
	}
	type set struct {
		f   configField
		raw string
	}
	var todo []set
	for _, s := range sets {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("-set %q: want KEY=VALUE (-set help lists the keys)", s)
		}
		f, ok := fields[k]
		if !ok {
			return nil, fmt.Errorf("-set %q: unknown key %q (-set help lists the keys)", s, k)
		}
		var probe core.Config
		if err := parseInto(f.value(&probe), v); err != nil {
			return nil, fmt.Errorf("-set %s: %v", s, err)
		}
		todo = append(todo, set{f, v})
	}
	edit := func(cfg *core.Config) error {
		*changed = (*changed)[:0]
		for _, s := range todo {
			old := s.f.get(cfg)
			if err := parseInto(s.f.value(cfg), s.raw); err != nil {
				return err
			}
			*changed = append(*changed, fmt.Sprintf("%s=%v (was %v)", s.f.key, s.f.get(cfg), old))
		}
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("the changed config is invalid: %w", err)
		}
		return nil
	}
	return edit, nil
}

func parseInto(v reflect.Value, s string) error {
	if v.Type() == durationType {
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.String:
		v.SetString(s)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		v.SetFloat(f)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		v.SetInt(n)
	default:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return err
		}
		v.SetUint(n)
	}
	return nil
}
