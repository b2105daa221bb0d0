package server

import (
	"math"
	"testing"

	"github.com/spf13/pflag"
)

// TestMemorySettings checks which garbage collector settings serve applies: the flags over the
// environment (GOGC, GOMEMLIMIT) over the defaults, the default limit lowered to 90% of a smaller
// container limit, "0" for no limit.
func TestMemorySettings(t *testing.T) {
	const mi = 1 << 20
	for _, tc := range []struct {
		name           string
		args           []string
		env            map[string]string
		containerLimit int64
		gcPercent      int   // 0: left as the environment has it
		limit          int64 // 0: left as the environment has it
	}{
		{name: "defaults", gcPercent: 200, limit: 180 * mi},
		{name: "smaller container", containerLimit: 100 * mi, gcPercent: 200, limit: 90 * mi},
		{name: "larger container", containerLimit: 1024 * mi, gcPercent: 200, limit: 180 * mi},
		{name: "environment", env: map[string]string{"GOGC": "150", "GOMEMLIMIT": "1GiB"}},
		{name: "flags over environment", args: []string{"--gc-percent=300", "--memory-limit=512Mi"},
			env: map[string]string{"GOGC": "150", "GOMEMLIMIT": "1GiB"}, gcPercent: 300, limit: 512 * mi},
		{name: "no limit", args: []string{"--memory-limit=0"}, containerLimit: 100 * mi, gcPercent: 200, limit: math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewMemoryOptions()
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			o.Complete(fs)
			if errs := o.Validate(); len(errs) > 0 {
				t.Fatal(errs)
			}
			s := o.settings(func(k string) string { return tc.env[k] }, tc.containerLimit)
			var gcPercent int
			var limit int64
			if s.gcPercent != nil {
				gcPercent = *s.gcPercent
			}
			if s.limit != nil {
				limit = *s.limit
			}
			if gcPercent != tc.gcPercent || limit != tc.limit {
				t.Fatalf("GOGC %d, limit %d; want %d, %d", gcPercent, limit, tc.gcPercent, tc.limit)
			}
		})
	}
}

func TestMemoryFlagsValidate(t *testing.T) {
	for _, args := range [][]string{{"--gc-percent=0"}, {"--gc-percent=-1"}, {"--memory-limit=lots"}, {"--memory-limit=-1Mi"}} {
		o := NewMemoryOptions()
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		if errs := o.Validate(); len(errs) == 0 {
			t.Errorf("%v: accepted", args)
		}
	}
}

func TestParseCgroupLimit(t *testing.T) {
	for in, want := range map[string]int64{"max\n": 0, "536870912\n": 512 << 20, "9223372036854771712\n": 0, "": 0, "0": 0} {
		if got := parseCgroupLimit(in); got != want {
			t.Errorf("parseCgroupLimit(%q) = %d, want %d", in, got, want)
		}
	}
}
