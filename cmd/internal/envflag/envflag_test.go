package envflag

import (
	"errors"
	"flag"
	"io"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    int
		wantErr bool
	}{
		{"default", nil, nil, 4, false},
		{"env twin", nil, map[string]string{"FLUX_SLOTS_MAX": "7"}, 7, false},
		{"flag wins over env", []string{"-slots-max", "9"}, map[string]string{"FLUX_SLOTS_MAX": "7"}, 9, false},
		{"bad env value", nil, map[string]string{"FLUX_SLOTS_MAX": "many"}, 0, true},
		{"positional argument", []string{"extra"}, nil, 0, true},
		{"unknown flag", []string{"-nope"}, nil, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			n := fs.Int("slots-max", 4, "")
			_, err := Parse(fs, tc.args, func(k string) string { return tc.env[k] })
			if tc.wantErr {
				if !errors.Is(err, ErrUsage) {
					t.Fatalf("err = %v, want ErrUsage", err)
				}
				return
			}
			if err != nil || *n != tc.want {
				t.Fatalf("got %d, %v; want %d", *n, err, tc.want)
			}
		})
	}
}

func TestOrigins(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		// want: Describe of each flag; given: the flags Given reports.
		want  map[string]string
		given []string
	}{
		{name: "defaults", want: map[string]string{
			"timeout": "-timeout 15s (default)", "verbose": "-verbose false (default)", "id": `-id "" (default)`}},
		{name: "typed text kept", args: []string{"-timeout", "1000ms", "-id=a"},
			want:  map[string]string{"timeout": "-timeout 1000ms", "id": "-id a"},
			given: []string{"id", "timeout"}},
		{name: "double dash and bool", args: []string{"--verbose", "--timeout=90s"},
			want:  map[string]string{"timeout": "-timeout 90s", "verbose": "-verbose true"},
			given: []string{"timeout", "verbose"}},
		{name: "last one wins", args: []string{"-timeout", "1s", "-timeout", "2s"},
			want: map[string]string{"timeout": "-timeout 2s"}, given: []string{"timeout"}},
		{name: "env twin", env: map[string]string{"FLUX_TIMEOUT": "2000ms"},
			want: map[string]string{"timeout": "FLUX_TIMEOUT=2000ms"}, given: []string{"timeout"}},
		{name: "flag beats env", args: []string{"-timeout", "3s"}, env: map[string]string{"FLUX_TIMEOUT": "2s", "FLUX_ID": "b"},
			want:  map[string]string{"timeout": "-timeout 3s", "id": "FLUX_ID=b"},
			given: []string{"id", "timeout"}},
		{name: "spaces quoted", args: []string{"-id", "a b"},
			want: map[string]string{"id": `-id "a b"`}, given: []string{"id"}},
		{name: "after --", args: []string{"-id", "x", "--"},
			want: map[string]string{"id": "-id x", "timeout": "-timeout 15s (default)"}, given: []string{"id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			fs.Duration("timeout", 15*time.Second, "")
			fs.Bool("verbose", false, "")
			fs.String("id", "", "")
			o, err := Parse(fs, tc.args, func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				if got := o.Describe(name); got != want {
					t.Errorf("Describe(%q) = %q, want %q", name, got, want)
				}
			}
			for _, name := range []string{"id", "timeout", "verbose"} {
				want := false
				for _, g := range tc.given {
					want = want || g == name
				}
				if o.Given(name) != want {
					t.Errorf("Given(%q) = %v, want %v", name, o.Given(name), want)
				}
			}
		})
	}
}
