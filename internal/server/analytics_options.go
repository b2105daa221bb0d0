package server

import (
	"errors"
	"time"

	"github.com/spf13/pflag"

	"github.com/reports-server/reports-server/internal/analytics"
)

// AnalyticsOptions are the flags of the SQL analytics (the published schema `reporting`, see
// docs/sql.md): the projector that flattens results and the refresher of the summaries.
type AnalyticsOptions struct {
	Enabled                bool
	SummaryRefreshInterval time.Duration
}

// NewAnalyticsOptions returns the defaults: enabled, summaries refreshed every 30 s at most.
func NewAnalyticsOptions() *AnalyticsOptions {
	return &AnalyticsOptions{Enabled: true, SummaryRefreshInterval: analytics.DefaultSummaryRefreshInterval}
}

// AddFlags registers the analytics flags.
func (o *AnalyticsOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Enabled, "analytics", o.Enabled,
		"Keep the SQL schema `reporting` up to date: flatten report results into an indexed table as reports change, and refresh "+
			"the summaries. One replica at a time does each (PostgreSQL advisory locks); with false, this replica never does.")
	fs.DurationVar(&o.SummaryRefreshInterval, "summary-refresh-interval", o.SummaryRefreshInterval,
		"Debounce of the materialized summaries in `reporting`: after reports change, wait this long (gathering further changes) "+
			"and then refresh them. Results themselves follow writes within about a second.")
}

// Validate checks the flags.
func (o *AnalyticsOptions) Validate() []error {
	if o.Enabled && o.SummaryRefreshInterval <= 0 {
		return []error{errors.New("--summary-refresh-interval must be positive")}
	}
	return nil
}

// Config is the analytics configuration of the API server, nil when disabled.
func (o *AnalyticsOptions) Config() *analytics.Config {
	if o == nil || !o.Enabled {
		return nil
	}
	return &analytics.Config{SummaryRefreshInterval: o.SummaryRefreshInterval}
}
