// Package server is `reports-server serve`: options, the database (an external one or a managed
// local PostgreSQL), and the API server in one of two modes:
//
//   - aggregated (default): behind kube-apiserver as an APIService, with delegated authentication
//     and authorization, exactly like metrics-server or sample-apiserver;
//   - standalone (--standalone): no Kubernetes at all. It serves HTTPS on 127.0.0.1 with a
//     self-signed certificate, accepts one generated bearer token (a member of system:masters) and
//     writes a kubeconfig for kubectl and client-go.
package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	genericoptions "k8s.io/apiserver/pkg/server/options"

	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
)

// Defaults of the serve flags.
const (
	// DefaultMaxRequestBodyBytes is the generic API server's own default, twice etcd's limit on
	// one object.
	DefaultMaxRequestBodyBytes = 3 << 20
	DefaultSecurePort          = 6443
	DefaultClusterName         = "default"
	// DefaultRequestTimeout is kube-apiserver's.
	DefaultRequestTimeout = time.Minute
	// DefaultDataDir is relative to the working directory, so `go run ./cmd/reports-server serve
	// --standalone` in a checkout keeps everything in ./.data (ignored by git).
	DefaultDataDir = ".data"
)

// Options are the flags of `reports-server serve`.
type Options struct {
	// Recommended are the generic API server flags (serving, delegated authn/authz, audit,
	// features, admission) without etcd: storage is PostgreSQL.
	Recommended *genericoptions.RecommendedOptions

	DatabaseURL string
	// DatabaseReadURL is an optional streaming replica for reads (pgstorage.Replica).
	DatabaseReadURL string
	ClusterName     string
	Standalone      bool
	DataDir         string
	WriteKubeconfig string
	// MaxUnpagedListBytes bounds lists without a limit (pgstorage.Config).
	MaxUnpagedListBytes int64
	// ObjectCacheBytes bounds the objects kept in memory for lists (pgstorage.ObjectCache; 0: none).
	ObjectCacheBytes int64
	// MaxRequestBodyBytes bounds request bodies (413 beyond).
	MaxRequestBodyBytes int64
	// RequestTimeout bounds requests other than watches (the generic server's RequestTimeout).
	RequestTimeout time.Duration
	// Migrate applies pending migrations at start; without it the server only checks that the
	// schema is current (for a role that owns nothing: docs/operations.md, "Database roles").
	Migrate bool

	// Analytics are the flags of the SQL analytics (analytics_options.go).
	Analytics *AnalyticsOptions
	// Watch are the flags of the watch history and compaction (watch_options.go).
	Watch *WatchOptions
	// Kube are the flags of aggregated mode's APIServices, serving certificate and migration
	// from CRDs (kube_options.go).
	Kube *KubeOptions
	// Shutdown are the flags of a graceful stop (shutdown_options.go).
	Shutdown *ShutdownOptions
	// Memory are the flags of the garbage collector (memory_options.go), applied by the serve
	// command to its process.
	Memory *MemoryOptions

	// bindAddressSet records whether --bind-address was given; standalone defaults to loopback.
	bindAddressSet bool
}

// NewOptions returns the defaults. The database URL defaults to $DATABASE_URL.
func NewOptions() *Options {
	rec := genericoptions.NewRecommendedOptions("", nil)
	rec.Etcd = nil
	rec.SecureServing.BindPort = DefaultSecurePort
	// Keep a generated serving certificate in memory unless --cert-dir is given: the working
	// directory of a pod may be read-only. Standalone mode keeps it in the data directory.
	rec.SecureServing.ServerCert.CertDirectory = ""
	return &Options{
		Recommended:     rec,
		DatabaseURL:     os.Getenv("DATABASE_URL"),
		DatabaseReadURL: os.Getenv("DATABASE_READ_URL"),
		ClusterName:     DefaultClusterName,
		DataDir:         DefaultDataDir,

		MaxUnpagedListBytes: pgstorage.DefaultMaxUnpagedListBytes,
		ObjectCacheBytes:    pgstorage.DefaultObjectCacheBytes,
		MaxRequestBodyBytes: DefaultMaxRequestBodyBytes,
		RequestTimeout:      DefaultRequestTimeout,
		Migrate:             true,
		Analytics:           NewAnalyticsOptions(),
		Watch:               NewWatchOptions(),
		Kube:                NewKubeOptions(),
		Shutdown:            NewShutdownOptions(),
		Memory:              NewMemoryOptions(),
	}
}

// AddFlags registers the serve flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.Recommended.AddFlags(fs)
	fs.StringVar(&o.DatabaseURL, "database-url", o.DatabaseURL,
		"PostgreSQL URL (postgres://user:pass@host:5432/db?sslmode=...) or keyword/value string. Default $DATABASE_URL. "+
			"With --standalone and no URL, a local PostgreSQL is started in <data-dir>/postgres.")
	fs.StringVar(&o.DatabaseReadURL, "database-read-url", o.DatabaseReadURL,
		"Optional PostgreSQL streaming replica of the database (same form as --database-url; default $DATABASE_READ_URL). "+
			"Lists and watches' initial state are read from it whenever it has replayed the revision they need, never older "+
			"than a resourceVersion the client has seen; otherwise, and while it is away, from the primary.")
	fs.StringVar(&o.ClusterName, "cluster-name", o.ClusterName,
		"Name of the cluster the reports belong to. Every stored row is scoped by it, so several clusters can share a database.")
	fs.BoolVar(&o.Standalone, "standalone", o.Standalone,
		"Run without kube-apiserver: serve on 127.0.0.1 with a self-signed certificate and a generated token, and write a kubeconfig. "+
			"Delegated authentication, authorization, admission and priority-and-fairness flags are ignored.")
	fs.StringVar(&o.DataDir, "data-dir", o.DataDir,
		"Directory for standalone state: serving certificate, token, kubeconfig and the managed PostgreSQL.")
	fs.StringVar(&o.WriteKubeconfig, "write-kubeconfig", o.WriteKubeconfig,
		"Where standalone mode writes its kubeconfig. Default <data-dir>/kubeconfig.")
	fs.Int64Var(&o.MaxUnpagedListBytes, "max-unpaged-list-bytes", o.MaxUnpagedListBytes,
		"The most stored JSON a list without a limit may return; a larger one gets 400 telling the client to page "+
			"(kubectl, client-go informers and pagers always page). Bounds the server's memory per request. -1: no bound.")
	fs.Int64Var(&o.ObjectCacheBytes, "object-cache-bytes", o.ObjectCacheBytes,
		"The most stored JSON and metadata of reports kept in memory for lists, by key and revision, so a list of unchanged "+
			"reports does not read them from PostgreSQL again (counts against --memory-limit). 0: none kept.")
	fs.Int64Var(&o.MaxRequestBodyBytes, "max-request-body-bytes", o.MaxRequestBodyBytes,
		"The largest request body accepted (a report is one object: etcd's own limit is 1.5 MiB); larger ones get 413 "+
			"without being read whole.")
	fs.DurationVar(&o.RequestTimeout, "request-timeout", o.RequestTimeout,
		"How long a request other than a watch may take (as kube-apiserver's flag; a client's ?timeout= can shorten it). "+
			"A request the database does not answer in time gets 503 with Retry-After shortly before this.")
	fs.BoolVar(&o.Migrate, "migrate", o.Migrate,
		"Apply pending database migrations at start (under a lock, so replicas apply them once). With --migrate=false the "+
			"server refuses to start on an older schema: run `reports-server migrate up` as the owner first, and let the "+
			"server log in as a role granted reports_server, which owns nothing.")
	o.Analytics.AddFlags(fs)
	o.Watch.AddFlags(fs)
	o.Kube.AddFlags(fs)
	o.Shutdown.AddFlags(fs)
	o.Memory.AddFlags(fs)
}

// Complete fills in derived defaults; fs tells which flags were given (nil: none).
func (o *Options) Complete(fs *pflag.FlagSet) error {
	if fs != nil {
		if f := fs.Lookup("bind-address"); f != nil && f.Changed {
			o.bindAddressSet = true
		}
		o.Memory.Complete(fs)
	}
	if !o.Standalone {
		return nil
	}
	dir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	o.DataDir = dir
	if o.WriteKubeconfig == "" {
		o.WriteKubeconfig = filepath.Join(o.DataDir, "kubeconfig")
	}
	rec := o.Recommended
	if !o.bindAddressSet {
		rec.SecureServing.BindAddress = net.ParseIP("127.0.0.1")
	}
	// No kube-apiserver to delegate to or to read namespaces, webhooks and flow schemas from.
	rec.Authentication = nil
	rec.Authorization = nil
	rec.CoreAPI = nil
	rec.Admission = nil
	rec.Features.EnablePriorityAndFairness = false
	// Keep the self-signed certificate across restarts, so a written kubeconfig stays valid.
	if rec.SecureServing.ServerCert.CertDirectory == "" {
		rec.SecureServing.ServerCert.CertDirectory = o.DataDir
	}
	return nil
}

// Validate checks the options after Complete.
func (o *Options) Validate() error {
	var errs []error
	errs = append(errs, o.Recommended.Validate()...)
	errs = append(errs, o.Analytics.Validate()...)
	errs = append(errs, o.Watch.Validate()...)
	errs = append(errs, o.Kube.Validate()...)
	errs = append(errs, o.Shutdown.Validate()...)
	errs = append(errs, o.Memory.Validate()...)
	if o.ClusterName == "" {
		errs = append(errs, errors.New("--cluster-name must not be empty"))
	}
	if o.MaxRequestBodyBytes <= 0 {
		errs = append(errs, errors.New("--max-request-body-bytes must be positive"))
	}
	if o.RequestTimeout <= 0 {
		errs = append(errs, errors.New("--request-timeout must be positive"))
	}
	if o.MaxUnpagedListBytes == 0 || o.MaxUnpagedListBytes < -1 {
		errs = append(errs, errors.New("--max-unpaged-list-bytes must be positive, or -1 for no bound"))
	}
	if o.ObjectCacheBytes < 0 {
		errs = append(errs, errors.New("--object-cache-bytes must not be negative (0 keeps none)"))
	}
	if o.DatabaseURL == "" && !o.Standalone {
		errs = append(errs, errors.New("--database-url (or $DATABASE_URL) is required unless --standalone is set"))
	}
	if o.Standalone && o.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty with --standalone"))
	}
	if o.Recommended.SecureServing.BindPort < 0 {
		errs = append(errs, errors.New("--secure-port must not be negative"))
	}
	if o.Recommended.SecureServing.BindPort == 0 && !o.Standalone {
		errs = append(errs, errors.New("--secure-port 0 (a free port) is only supported with --standalone"))
	}
	return errors.Join(errs...)
}
