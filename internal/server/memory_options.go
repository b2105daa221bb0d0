package server

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"
)

// MemoryOptions are the flags of the Go garbage collector's trade of memory for CPU.
//
// At Go's default (GOGC=100) a replica spent up to a fifth of its CPU per create collecting
// garbage: every write decodes a ~12 KB body into many small objects, computes managedFields and
// encodes the result, while the live heap stays small (tens of MB). Collecting half as often
// (GOGC=200) saves most of that, and a soft memory limit below the server's memory budget (300 MB
// whatever the request, docs/design.md) makes the collector work harder only as the heap
// approaches it. Both are the Go runtime's own settings, GOGC and GOMEMLIMIT; the environment's
// values win over these defaults, the flags over both. They are applied by `reports-server
// serve` (cmd/reports-server), which owns its process, not by a server embedded in a test.
type MemoryOptions struct {
	// GCPercent is GOGC: the heap grows by this percentage of the live heap between collections.
	GCPercent int
	// MemoryLimit is GOMEMLIMIT, a soft limit of the Go runtime's memory; empty: the default
	// (DefaultMemoryLimit, or 90% of the container's memory limit when that is lower); "0": none.
	MemoryLimit string

	// gcPercentSet records that --gc-percent was given (its default is not the environment's).
	// --memory-limit needs no such record: its default is empty.
	gcPercentSet bool
}

// Defaults of the memory flags.
const (
	DefaultGCPercent = 200
	// DefaultMemoryLimit keeps the RSS below the 300 MB budget with room to spare. The RSS is the
	// runtime's memory, which the limit bounds, plus the binary's pages (~70 MB, file-backed): in
	// `make bench-compare` a replica's peak RSS was 283–289 MB at 200–256 MiB, 247–251 MB at
	// 180 MiB, 218–230 MB at 160 MiB, where collecting more often gave back half the CPU saved
	// (docs/benchmarks.md).
	DefaultMemoryLimit = 180 << 20
	// containerShare is the part of a container's memory limit the soft limit takes.
	containerShare = 0.9
)

// NewMemoryOptions returns the defaults.
func NewMemoryOptions() *MemoryOptions {
	return &MemoryOptions{GCPercent: DefaultGCPercent}
}

// AddFlags registers the memory flags.
func (o *MemoryOptions) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.GCPercent, "gc-percent", o.GCPercent,
		"Go garbage collection target (GOGC): the heap may grow by this percentage of the live heap before the next "+
			"collection. Higher spends less CPU on collection and more memory. Default: $GOGC when set, else 200.")
	fs.StringVar(&o.MemoryLimit, "memory-limit", o.MemoryLimit,
		"Soft limit of the Go runtime's memory (GOMEMLIMIT, a quantity such as 512Mi): the garbage collector works "+
			"harder as memory approaches it. 0: no limit. Default: $GOMEMLIMIT when set, else 180Mi, or 90% of the "+
			"container's memory limit when that is lower.")
}

// Complete records whether --gc-percent was given (it wins over the environment).
func (o *MemoryOptions) Complete(fs *pflag.FlagSet) {
	o.gcPercentSet = fs.Changed("gc-percent")
}

// Validate checks the memory flags.
func (o *MemoryOptions) Validate() []error {
	var errs []error
	if o.GCPercent <= 0 {
		errs = append(errs, errors.New("--gc-percent must be positive (garbage collection cannot be turned off)"))
	}
	if o.MemoryLimit != "" {
		if _, err := parseMemoryLimit(o.MemoryLimit); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func parseMemoryLimit(s string) (int64, error) {
	q, err := resource.ParseQuantity(s)
	if err != nil || q.Sign() < 0 {
		return 0, fmt.Errorf("--memory-limit %q is not a size (a quantity such as 512Mi, or 0 for none)", s)
	}
	return q.Value(), nil
}

// memorySettings are the garbage collector's settings to apply; a nil field is left as the
// runtime has it (from the environment).
type memorySettings struct {
	gcPercent *int
	limit     *int64
}

// settings chooses the settings from the flags, the environment (getenv) and the container's
// memory limit (0: none known).
func (o *MemoryOptions) settings(getenv func(string) string, containerLimit int64) memorySettings {
	var s memorySettings
	if o.gcPercentSet || getenv("GOGC") == "" {
		s.gcPercent = &o.GCPercent
	}
	switch {
	case o.MemoryLimit != "":
		limit, _ := parseMemoryLimit(o.MemoryLimit) // validated
		if limit == 0 {
			limit = math.MaxInt64 // the runtime's "no limit"
		}
		s.limit = &limit
	case getenv("GOMEMLIMIT") != "":
	default:
		limit := int64(DefaultMemoryLimit)
		if containerLimit > 0 {
			limit = min(limit, int64(float64(containerLimit)*containerShare))
		}
		s.limit = &limit
	}
	return s
}

// Apply sets the process's garbage collector (see MemoryOptions) and logs what it runs with.
func (o *MemoryOptions) Apply() {
	s := o.settings(os.Getenv, containerMemoryLimit())
	if s.gcPercent != nil {
		debug.SetGCPercent(*s.gcPercent)
	}
	if s.limit != nil {
		debug.SetMemoryLimit(*s.limit)
	}
	// The runtime has no getter for GOGC (SetGCPercent(-1) would turn collection off): it is
	// what was set here, else the environment's.
	gcPercent := os.Getenv("GOGC")
	switch {
	case s.gcPercent != nil:
		gcPercent = strconv.Itoa(*s.gcPercent)
	case gcPercent == "":
		gcPercent = "100"
	}
	limit := "none"
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 { // a negative limit only reads it
		limit = strconv.FormatInt(l>>20, 10) + " MiB"
	}
	klog.InfoS("Garbage collection", "GOGC", gcPercent, "GOMEMLIMIT", limit)
}

// containerMemoryLimit is the memory limit of the process's cgroup (v2, else v1), 0 when there
// is none or it cannot be read.
func containerMemoryLimit() int64 {
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		return parseCgroupLimit(string(data))
	}
	return 0
}

// parseCgroupLimit reads a cgroup memory limit file: a number of bytes, or "max" (v2) or a
// number near 2^63 (v1) for none.
func parseCgroupLimit(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n >= 1<<60 {
		return 0
	}
	return n
}
