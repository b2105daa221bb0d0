// Package apiserver assembles the reports API server: the scheme of the report kinds, the generic
// API server configuration, and one REST store per kind on top of the Postgres storage.
//
// It follows the Config → Complete → New pattern of k8s.io/sample-apiserver, without its
// package-level scheme: every Config owns its scheme and codecs, so several servers can run in one
// process (the integration tests do).
package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	corev1 "k8s.io/api/core/v1"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/apiserver/pkg/util/compatibility"

	"github.com/reports-server/reports-server/internal/analytics"
	analyticsv1alpha1 "github.com/reports-server/reports-server/internal/apis/analytics/v1alpha1"
	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/apiserver/findings"
	"github.com/reports-server/reports-server/internal/apiserver/namespaces"
	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
	"github.com/reports-server/reports-server/internal/apiserver/registry"
	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/generated/openapi"
	"github.com/reports-server/reports-server/internal/metrics"
)

// Config is the configuration of a reports API server. Create it with NewConfig, apply the
// generic options to Generic, set Extra, then Complete and New.
type Config struct {
	// Generic is the generic API server configuration; its serializers use Codecs.
	Generic *genericapiserver.RecommendedConfig
	Extra   ExtraConfig

	// Scheme holds the report kinds and the meta types; Codecs serialize them.
	Scheme *runtime.Scheme
	Codecs serializer.CodecFactory
}

// ExtraConfig is what the reports server needs beyond the generic API server.
type ExtraConfig struct {
	// Pool is the database the reports are kept in. The server does not close it.
	Pool *pgxpool.Pool
	// ReadPool, when set, is a streaming replica of Pool's database that serves the lists,
	// watches' initial state and findings it has caught up with (db.Replica). The server does
	// not close it.
	ReadPool *pgxpool.Pool
	// Cluster scopes every stored row, so several clusters can share one database.
	Cluster string
	// Kinds are the served kinds; reports.All() when nil.
	Kinds []reports.Kind

	// WatchHistoryWindow keeps at least this much change history for watches to resume from
	// (0: no time-based compaction); WatchHistoryMaxEvents caps it at about that many
	// revisions (0: no cap); CompactionInterval is how often a compaction pass runs (0: never).
	// One replica at a time compacts. See pgstorage.Compactor.
	WatchHistoryWindow    time.Duration
	WatchHistoryMaxEvents int64
	CompactionInterval    time.Duration

	// MaxUnpagedListBytes bounds lists without a limit (pgstorage.Config; 0: the default).
	MaxUnpagedListBytes int64
	// ObjectCacheBytes bounds the stored JSON of the objects kept for lists (pgstorage.ObjectCache;
	// 0: none kept).
	ObjectCacheBytes int64

	// Analytics, when set, runs the projector and summary refresher behind the SQL schema
	// `reporting` (one replica at a time each; see internal/analytics). nil: not in this process.
	Analytics *analytics.Config

	// CoreNamespaces serves core/v1 namespaces (package namespaces): standalone mode only, where
	// no kube-apiserver serves them and kubectl needs them. Behind kube-apiserver the server must
	// never claim the core group.
	CoreNamespaces bool

	// Metrics are the server's own metrics, served at /metrics beside the generic server's;
	// the pool's query tracer should be Metrics.QueryTracer(). nil: Complete makes them
	// (without query durations).
	Metrics *metrics.Metrics
}

// NewConfig builds a fresh scheme with the report kinds and a generic configuration with the
// OpenAPI definitions that server-side apply and `kubectl explain` need.
func NewConfig() (*Config, error) {
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	codecs := serializer.NewCodecFactory(scheme)

	generic := genericapiserver.NewRecommendedConfig(codecs)
	generic.EffectiveVersion = compatibility.DefaultBuildEffectiveVersion()

	// The API server builds the server-side apply type converter from the OpenAPI v3
	// definitions; it refuses to start without them.
	namer := openapinamer.NewDefinitionNamer(externalKinds(scheme))
	generic.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(openapi.GetOpenAPIDefinitions, namer)
	generic.OpenAPIConfig.Info.Title = "reports-server"
	generic.OpenAPIConfig.Info.Version = "v1"
	generic.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(openapi.GetOpenAPIDefinitions, namer)
	generic.OpenAPIV3Config.Info.Title = "reports-server"
	generic.OpenAPIV3Config.Info.Version = "v1"

	return &Config{Generic: generic, Scheme: scheme, Codecs: codecs}, nil
}

// NewScheme returns a scheme with the report kinds of all groups, the read-only analytics kinds
// (findings) and the meta types every API server serves (options, Status, discovery documents).
func NewScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := reports.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("register report kinds: %w", err)
	}
	if err := analyticsv1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("register analytics kinds: %w", err)
	}
	for _, gv := range append(servedGroupVersions(reports.All()), analyticsv1alpha1.SchemeGroupVersion) {
		if err := scheme.SetVersionPriority(gv); err != nil {
			return nil, fmt.Errorf("set version priority of %s: %w", gv, err)
		}
	}
	// The options types (ListOptions, …) and unversioned types under v1, as every API server has them.
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	// Namespaces, served in standalone mode only; the internal version is the same Go type, as
	// for the reports, so the handlers' conversions are identities.
	for _, gv := range []schema.GroupVersion{corev1.SchemeGroupVersion, {Version: runtime.APIVersionInternal}} {
		scheme.AddKnownTypes(gv, &corev1.Namespace{}, &corev1.NamespaceList{})
	}
	if err := scheme.AddFieldLabelConversionFunc(corev1.SchemeGroupVersion.WithKind("Namespace"), namespaces.FieldLabelConversion); err != nil {
		return nil, fmt.Errorf("register namespace field selectors: %w", err)
	}
	scheme.AddUnversionedTypes(schema.GroupVersion{Group: "", Version: "v1"},
		&metav1.Status{},
		&metav1.APIVersions{},
		&metav1.APIGroupList{},
		&metav1.APIGroup{},
		&metav1.APIResourceList{},
	)
	return scheme, nil
}

// externalKinds returns a scheme with the kinds of scheme minus the internal versions. The
// OpenAPI namer lists every GroupVersionKind registered for a Go type in
// x-kubernetes-group-version-kind; the internal versions of the reports use the same Go types as
// the served ones, and "__internal" must not show up in the documents clients read.
func externalKinds(scheme *runtime.Scheme) *runtime.Scheme {
	out := runtime.NewScheme()
	for gvk, typ := range scheme.AllKnownTypes() {
		if gvk.Version == runtime.APIVersionInternal {
			continue
		}
		out.AddKnownTypeWithName(gvk, reflect.New(typ).Interface().(runtime.Object))
	}
	return out
}

// servedGroupVersions lists the group versions of kinds, each once, in order of first appearance.
func servedGroupVersions(kinds []reports.Kind) []schema.GroupVersion {
	var gvs []schema.GroupVersion
	seen := map[schema.GroupVersion]bool{}
	for _, k := range kinds {
		if !seen[k.GroupVersion] {
			seen[k.GroupVersion] = true
			gvs = append(gvs, k.GroupVersion)
		}
	}
	return gvs
}

// watchSafetyPoll is how often watchers look at the change log when no notification arrives:
// notifications are a wake-up, lost while the LISTEN connection is down; the log is the truth.
const watchSafetyPoll = 5 * time.Second

type completedConfig struct {
	generic   genericapiserver.CompletedConfig
	extra     ExtraConfig
	scheme    *runtime.Scheme
	codecs    serializer.CodecFactory
	notifier  *db.Notifier
	follower  *pgstorage.Follower
	compactor *pgstorage.Compactor
	replica   *db.Replica
	// lists answers metadata-only JSON lists once New has made the stores (metadatalist.go).
	lists *metadataLists
}

// CompletedConfig is a Config with defaults filled in, ready for New.
type CompletedConfig struct {
	// Embed a private pointer that cannot be instantiated outside of this package.
	*completedConfig
}

// Complete fills in defaults and wires the Postgres storage into the generic configuration.
func (c *Config) Complete() (CompletedConfig, error) {
	if c.Extra.Pool == nil {
		return CompletedConfig{}, errors.New("apiserver: no database pool")
	}
	if c.Extra.Cluster == "" {
		return CompletedConfig{}, errors.New("apiserver: no cluster name")
	}
	if c.Extra.Kinds == nil {
		c.Extra.Kinds = reports.All()
	}
	// Objects are stored as JSON of their served version: the storage parses it into JSONB, and
	// rows stay readable in SQL whatever the Go types look like.
	// One writer, one LISTEN connection, one follower and one compactor per process, shared by
	// every resource: writes to all kinds share commit batches; the follower reads every change
	// once and fans it out to the watchers of all kinds; the compactor trims the cluster's
	// change log (one replica at a time).
	notifier := db.NewNotifier(c.Extra.Pool, slog.Default().With("component", "notifier"))
	follower := pgstorage.NewFollower(c.Extra.Pool, c.Extra.Cluster, pgstorage.FollowerOptions{
		Notifier: notifier, PollInterval: watchSafetyPoll, Log: slog.Default().With("component", "watch"),
	})
	compactor := pgstorage.NewCompactor(c.Extra.Pool, c.Extra.Cluster, pgstorage.CompactorOptions{
		Window:    c.Extra.WatchHistoryWindow,
		MaxEvents: c.Extra.WatchHistoryMaxEvents,
		Interval:  c.Extra.CompactionInterval,
		Follower:  follower,
		Log:       slog.Default().With("component", "compactor"),
	})
	if c.Extra.CoreNamespaces {
		// Namespaces have no OpenAPI definitions here (they would be all of core/v1's): their
		// paths stay out of the OpenAPI documents and of the server-side apply type converter,
		// and namespaces do not support apply.
		core := genericapiserver.DefaultLegacyAPIPrefix + "/"
		c.Generic.OpenAPIConfig.IgnorePrefixes = append(c.Generic.OpenAPIConfig.IgnorePrefixes, core)
		c.Generic.OpenAPIV3Config.IgnorePrefixes = append(c.Generic.OpenAPIV3Config.IgnorePrefixes, core)
	}
	if c.Extra.Metrics == nil {
		c.Extra.Metrics = metrics.New()
	}
	m := c.Extra.Metrics
	var replica *db.Replica
	if c.Extra.ReadPool != nil {
		replica = db.NewReplica(c.Extra.ReadPool, slog.Default().With("component", "replica"))
	}
	// One page cache for every resource's paged lists, so its bounds are the process's.
	prefetcher := pgstorage.NewPrefetcher()
	// One object cache for every resource's lists, so its bound is the process's.
	objects := pgstorage.NewObjectCache(c.Extra.ObjectCacheBytes)
	codecs := c.Codecs
	lists := newMetadataLists(c.Scheme, codecs)
	m.SetSources(metricSources(c.Extra, notifier, follower, replica, prefetcher, lists.ahead, objects))
	// GET requests read what their response holds: metadata only, or the stored JSON (readshape.go).
	// GET /metrics answers with the generic server's metrics and ours (internal/metrics), after
	// authentication and authorization as before.
	chain := c.Generic.BuildHandlerChainFunc
	c.Generic.BuildHandlerChainFunc = func(h http.Handler, cfg *genericapiserver.Config) http.Handler {
		return chain(m.WithHandler(withReadShape(h, codecs, lists)), cfg)
	}
	c.Generic.RESTOptionsGetter = &pgstorage.RESTOptionsGetter{
		Pool:      c.Extra.Pool,
		Cluster:   c.Extra.Cluster,
		Codec:     c.Codecs.LegacyCodec(servedGroupVersions(c.Extra.Kinds)...),
		Writer:    pgstorage.NewWriter(c.Extra.Pool, c.Extra.Cluster).WithMetrics(m),
		Follower:  follower,
		Compactor: compactor,
		Replica:   replica,

		Prefetcher:          prefetcher,
		Objects:             objects,
		MaxUnpagedListBytes: c.Extra.MaxUnpagedListBytes,
	}
	return CompletedConfig{&completedConfig{
		generic:   c.Generic.Complete(),
		extra:     c.Extra,
		scheme:    c.Scheme,
		codecs:    c.Codecs,
		notifier:  notifier,
		follower:  follower,
		compactor: compactor,
		replica:   replica,
		lists:     lists,
	}}, nil
}

// Server is a running reports API server.
type Server struct {
	GenericAPIServer *genericapiserver.GenericAPIServer

	// stores are the registry stores of the report kinds, for the migration from CRDs.
	stores    map[schema.GroupVersionResource]*registry.REST
	compactor *pgstorage.Compactor
}

// New creates the server and installs the report API groups and the analytics group.
func (c CompletedConfig) New() (*Server, error) {
	generic, err := c.generic.New("reports-server", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, fmt.Errorf("create generic API server: %w", err)
	}
	s := &Server{GenericAPIServer: generic, stores: map[schema.GroupVersionResource]*registry.REST{}, compactor: c.compactor}

	groups, err := c.apiGroups(s.stores)
	if err != nil {
		return nil, err
	}
	if err := generic.InstallAPIGroups(groups...); err != nil {
		return nil, fmt.Errorf("install report API groups: %w", err)
	}
	c.lists.stores.Store(&s.stores)
	analyticsGroup, err := c.analyticsGroup()
	if err != nil {
		return nil, err
	}
	if err := generic.InstallAPIGroup(analyticsGroup); err != nil {
		return nil, fmt.Errorf("install %s: %w", analyticsv1alpha1.GroupName, err)
	}

	if c.extra.CoreNamespaces {
		if err := c.installNamespaces(s); err != nil {
			return nil, err
		}
	}

	// Destroy functions run once the server has stopped serving, before the caller closes the
	// pool: watches still open then end, and the follower stops reading.
	generic.RegisterDestroyFunc(c.follower.Close)
	notifier := c.notifier
	if err := generic.AddPostStartHook("reports-notifier", func(ctx genericapiserver.PostStartHookContext) error {
		go notifier.Run(ctx)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("add notifier hook: %w", err)
	}
	compactor := c.compactor
	if err := generic.AddPostStartHook("reports-compactor", func(ctx genericapiserver.PostStartHookContext) error {
		go compactor.Run(ctx)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("add compactor hook: %w", err)
	}
	keeper := pgstorage.NewStatisticsKeeper(c.extra.Pool, pgstorage.DefaultStatisticsInterval, slog.Default().With("component", "statistics"))
	if err := generic.AddPostStartHook("reports-statistics", func(ctx genericapiserver.PostStartHookContext) error {
		go keeper.Run(ctx)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("add statistics hook: %w", err)
	}

	if c.extra.Analytics != nil {
		cfg := *c.extra.Analytics
		cfg.Metrics = c.extra.Metrics
		svc := analytics.New(c.extra.Pool, notifier, cfg)
		if err := generic.AddPostStartHook("reports-analytics", func(ctx genericapiserver.PostStartHookContext) error {
			go svc.Run(ctx)
			return nil
		}); err != nil {
			return nil, fmt.Errorf("add analytics hook: %w", err)
		}
	}

	// Without the database every request fails: take the server out of rotation instead.
	if err := generic.AddReadyzChecks(databaseCheck(c.extra.Pool)); err != nil {
		return nil, fmt.Errorf("add database readiness check: %w", err)
	}
	return s, nil
}

// apiGroups builds one APIGroupInfo per group, with a store for every kind of that group, and
// records each store in stores.
func (c CompletedConfig) apiGroups(stores map[schema.GroupVersionResource]*registry.REST) ([]*genericapiserver.APIGroupInfo, error) {
	byGroup := map[string]*genericapiserver.APIGroupInfo{}
	var groups []*genericapiserver.APIGroupInfo
	for _, kind := range c.extra.Kinds {
		gv := kind.GroupVersion
		info, ok := byGroup[gv.Group]
		if !ok {
			g := genericapiserver.NewDefaultAPIGroupInfo(gv.Group, c.scheme, metav1.ParameterCodec, c.codecs)
			// The group's own codecs (they encode lists as a stream, as kube-apiserver's do),
			// wrapped.
			g.NegotiatedSerializer = newReportSerializer(g.NegotiatedSerializer, c.scheme, c.extra.Kinds)
			info = &g
			byGroup[gv.Group] = info
			groups = append(groups, info)
		}
		storage, err := registry.NewREST(kind, c.generic.RESTOptionsGetter)
		if err != nil {
			return nil, fmt.Errorf("create storage for %s: %w", kind.GroupVersionResource(), err)
		}
		if info.VersionedResourcesStorageMap[gv.Version] == nil {
			info.VersionedResourcesStorageMap[gv.Version] = map[string]rest.Storage{}
		}
		info.VersionedResourcesStorageMap[gv.Version][kind.Resource] = storage
		stores[kind.GroupVersionResource()] = storage
	}
	return groups, nil
}

// installNamespaces serves core/v1 namespaces under /api (standalone mode), with "default"
// ensured at start, a report's namespace created on its first report, and a namespace's reports
// deleted with it.
func (c CompletedConfig) installNamespaces(s *Server) error {
	ns := namespaces.New(c.extra.Pool, c.extra.Cluster, s.purgeNamespace)
	info := genericapiserver.NewDefaultAPIGroupInfo(corev1.GroupName, c.scheme, metav1.ParameterCodec, c.codecs)
	info.VersionedResourcesStorageMap[corev1.SchemeGroupVersion.Version] = map[string]rest.Storage{"namespaces": ns}
	for _, store := range s.stores {
		if store.NamespaceScoped() {
			store.BeginCreate = ns.Provision
		}
	}
	if err := s.GenericAPIServer.InstallLegacyAPIGroup(genericapiserver.DefaultLegacyAPIPrefix, &info); err != nil {
		return fmt.Errorf("install core/v1 namespaces: %w", err)
	}
	if err := s.GenericAPIServer.AddPostStartHook("reports-default-namespace", func(ctx genericapiserver.PostStartHookContext) error {
		return ns.EnsureDefault(ctx)
	}); err != nil {
		return fmt.Errorf("add default namespace hook: %w", err)
	}
	return nil
}

// purgeNamespace deletes every report in namespace, kind by kind, through the stores (which page
// their lists), so watchers see each deletion as they would see a cluster's namespace controller
// delete them.
func (s *Server) purgeNamespace(ctx context.Context, namespace string) error {
	ctx = genericapirequest.WithNamespace(ctx, namespace)
	for gvr, store := range s.stores {
		if !store.NamespaceScoped() {
			continue
		}
		if _, err := store.DeleteCollection(ctx, rest.ValidateAllObjectFunc, &metav1.DeleteOptions{}, &metainternalversion.ListOptions{}); err != nil {
			return fmt.Errorf("delete %s in %s: %w", gvr.GroupResource(), namespace, err)
		}
	}
	return nil
}

// analyticsGroup is the read-only group over the SQL analytics (findings, clusterfindings,
// findingsummaries). It is installed whether or not this server runs the projector, so discovery
// is the same on every replica; without the projector its requests answer 503 naming the flag.
func (c CompletedConfig) analyticsGroup() (*genericapiserver.APIGroupInfo, error) {
	storage, err := findings.NewStorage(findings.Config{
		Pool:       c.extra.Pool,
		Replica:    c.replica,
		Cluster:    c.extra.Cluster,
		Projecting: c.extra.Analytics != nil,
	})
	if err != nil {
		return nil, fmt.Errorf("create storage for %s: %w", analyticsv1alpha1.GroupName, err)
	}
	info := genericapiserver.NewDefaultAPIGroupInfo(analyticsv1alpha1.GroupName, c.scheme, metav1.ParameterCodec, c.codecs)
	info.VersionedResourcesStorageMap[analyticsv1alpha1.SchemeGroupVersion.Version] = storage
	return &info, nil
}

// databaseCheck is a readyz check that pings the database. It gives up after 5 s, and in any
// case before the request's own deadline, so a database that hangs fails the check (with the
// check's message) rather than time the request out.
func databaseCheck(pool *pgxpool.Pool) healthz.HealthChecker {
	return healthz.NamedCheck("database", func(r *http.Request) error {
		timeout := 5 * time.Second
		if deadline, ok := r.Context().Deadline(); ok {
			timeout = min(timeout, time.Until(deadline)*3/4)
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		if err := db.Ping(ctx, pool); err != nil {
			return fmt.Errorf("ping database: %w", err)
		}
		return nil
	})
}
