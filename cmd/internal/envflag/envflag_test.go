package envflag

import (
	"errors"
	"flag"
	"io"
	"testing"
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
			err := Parse(fs, tc.args, func(k string) string { return tc.env[k] })
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
