package server

import (
	"errors"
	"time"

	"github.com/spf13/pflag"

	"github.com/reports-server/reports-server/internal/apiserver"
	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
)

// WatchOptions are the flags of the watch history: how much of the change log is kept for
// watches (and exact-resourceVersion lists) to resume from, and how often it is compacted.
type WatchOptions struct {
	HistoryWindow      time.Duration
	HistoryMaxEvents   int64
	CompactionInterval time.Duration
}

// NewWatchOptions returns the defaults: at least 10 minutes of history, at most 100,000
// revisions, compacted every minute (see pgstorage.Compactor for the reasons).
func NewWatchOptions() *WatchOptions {
	return &WatchOptions{
		HistoryWindow:      pgstorage.DefaultWatchHistoryWindow,
		HistoryMaxEvents:   pgstorage.DefaultWatchHistoryMaxEvents,
		CompactionInterval: pgstorage.DefaultCompactionInterval,
	}
}

// AddFlags registers the watch history flags.
func (o *WatchOptions) AddFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&o.HistoryWindow, "watch-history-window", o.HistoryWindow,
		"Keep at least this much change history, so clients can resume watches (and list at an exact resourceVersion) "+
			"that far back; older resourceVersions get 410 Gone and clients re-list. 0: no time-based compaction.")
	fs.Int64Var(&o.HistoryMaxEvents, "watch-history-max-events", o.HistoryMaxEvents,
		"Keep at most about this many revisions of change history, whatever --watch-history-window says (bounds the "+
			"change log during write bursts). 0: no cap.")
	fs.DurationVar(&o.CompactionInterval, "compaction-interval", o.CompactionInterval,
		"How often the change log is compacted to the history settings. One replica at a time compacts (PostgreSQL "+
			"advisory lock); writers never wait for it. 0: never compact.")
}

// Validate checks the watch history flags.
func (o *WatchOptions) Validate() []error {
	var errs []error
	if o.HistoryWindow < 0 {
		errs = append(errs, errors.New("--watch-history-window must not be negative"))
	}
	if o.HistoryMaxEvents < 0 {
		errs = append(errs, errors.New("--watch-history-max-events must not be negative"))
	}
	if o.CompactionInterval < 0 {
		errs = append(errs, errors.New("--compaction-interval must not be negative"))
	}
	return errs
}

// ApplyTo sets the watch history of an API server configuration.
func (o *WatchOptions) ApplyTo(extra *apiserver.ExtraConfig) {
	extra.WatchHistoryWindow = o.HistoryWindow
	extra.WatchHistoryMaxEvents = o.HistoryMaxEvents
	extra.CompactionInterval = o.CompactionInterval
}
