package server

import (
	"errors"
	"time"

	"github.com/spf13/pflag"
	genericapiserver "k8s.io/apiserver/pkg/server"
)

// ShutdownOptions are the flags of a graceful stop. They matter for replicas behind
// kube-apiserver's aggregation during a rolling upgrade: a watch cut mid-stream reaches its
// client as a stream error, and client-go's reflector answers that with a relist, which
// coalesces every change made until it completes (an informer sees the newest state of an
// object, not each write). A watch ended cleanly is resumed from its last resourceVersion on
// another replica instead, so no event is skipped.
type ShutdownOptions struct {
	// DelayDuration keeps serving (with /readyz failing) after the stop signal, so the
	// replica's endpoint is taken out of the Service before it stops accepting requests.
	DelayDuration time.Duration
	// WatchTerminationGracePeriod is how long a stop waits for open watches to end cleanly.
	WatchTerminationGracePeriod time.Duration
}

// DefaultWatchTerminationGracePeriod is well inside a pod's default 30 s grace period; the
// generic server ends at least 200 watches a second, so it covers thousands of watchers.
const DefaultWatchTerminationGracePeriod = 10 * time.Second

// NewShutdownOptions returns the defaults: watches end cleanly; no delay (the Deployment sets
// one: deploy/README.md).
func NewShutdownOptions() *ShutdownOptions {
	return &ShutdownOptions{WatchTerminationGracePeriod: DefaultWatchTerminationGracePeriod}
}

// AddFlags registers the shutdown flags, named as kube-apiserver's.
func (o *ShutdownOptions) AddFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&o.DelayDuration, "shutdown-delay-duration", o.DelayDuration,
		"After SIGTERM, keep serving this long with /readyz failing, so load balancers and the Service's endpoints stop "+
			"sending requests here before the listener closes (requests that still arrive would fail and make watch "+
			"clients re-list).")
	fs.DurationVar(&o.WatchTerminationGracePeriod, "shutdown-watch-termination-grace-period", o.WatchTerminationGracePeriod,
		"On shutdown, end open watches cleanly and wait up to this long for them to finish, so clients resume them from "+
			"their last resourceVersion on another replica instead of re-listing. 0: watches are cut when the server stops.")
}

// Validate checks the shutdown flags.
func (o *ShutdownOptions) Validate() []error {
	var errs []error
	if o.DelayDuration < 0 {
		errs = append(errs, errors.New("--shutdown-delay-duration must not be negative"))
	}
	if o.WatchTerminationGracePeriod < 0 {
		errs = append(errs, errors.New("--shutdown-watch-termination-grace-period must not be negative"))
	}
	return errs
}

// ApplyTo sets the graceful stop of a generic server configuration.
func (o *ShutdownOptions) ApplyTo(cfg *genericapiserver.Config) {
	cfg.ShutdownDelayDuration = o.DelayDuration
	cfg.ShutdownWatchTerminationGracePeriod = o.WatchTerminationGracePeriod
}
