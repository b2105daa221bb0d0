package pgstorage

import (
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/apiserver/pkg/storage/storagebackend/factory"
	"k8s.io/client-go/tools/cache"

	"github.com/reports-server/reports-server/internal/db"
)

// RESTOptionsGetter hands the generic registry a Postgres-backed storage.Interface for every
// resource, in place of etcd and the watch cache.
type RESTOptionsGetter struct {
	Pool    *pgxpool.Pool
	Cluster string
	// Codec encodes objects for storage (JSON of the served version) and decodes them.
	Codec runtime.Codec
	// Follower feeds the watchers of every resource; one per process (see NewFollower). When
	// nil, each resource polls on its own.
	Follower *Follower
	// Writer batches the writes of every resource; one per process (see NewWriter).
	Writer *Writer
	// Compactor compacts the cluster's change log; one per process (see NewCompactor).
	Compactor *Compactor
	// Replica, when set, serves reads it has caught up with; one per process (see replica.go).
	Replica *db.Replica
	// Prefetcher keeps the pages paged lists read ahead; one per process (see prefetch.go).
	Prefetcher *Prefetcher
	// Objects keeps the objects lists read; one per process (see objectcache.go).
	Objects *ObjectCache
	// BookmarkInterval and SlowWatcherTimeout tune every watcher (see Config).
	BookmarkInterval   time.Duration
	SlowWatcherTimeout time.Duration
	// MaxUnpagedListBytes bounds lists without a limit (see Config).
	MaxUnpagedListBytes int64
}

var _ generic.RESTOptionsGetter = (*RESTOptionsGetter)(nil)

// GetRESTOptions returns options whose decorator builds a Postgres store. Keys are
// /<group>/<resource>/<namespace>/<name>, so one table holds every kind and the key prefix is
// also the resource's identity in SQL.
func (g *RESTOptionsGetter) GetRESTOptions(resource schema.GroupResource, _ runtime.Object) (generic.RESTOptions, error) {
	cfg := storagebackend.NewDefaultConfig("", g.Codec)
	return generic.RESTOptions{
		StorageConfig:           cfg.ForResource(resource),
		Decorator:               g.decorate,
		EnableGarbageCollection: true,
		DeleteCollectionWorkers: 1,
		ResourcePrefix:          "/" + resource.Group + "/" + resource.Resource,
	}, nil
}

func (g *RESTOptionsGetter) decorate(
	config *storagebackend.ConfigForResource,
	resourcePrefix string,
	_ func(obj runtime.Object) (string, error),
	newFunc func() runtime.Object,
	newListFunc func() runtime.Object,
	getAttrs storage.AttrFunc,
	_ storage.IndexerFuncs,
	_ *cache.Indexers,
) (storage.Interface, factory.DestroyFunc, error) {
	s, err := New(Config{
		Pool:           g.Pool,
		Cluster:        g.Cluster,
		Codec:          config.Codec,
		ResourcePrefix: resourcePrefix,
		NewFunc:        newFunc,
		NewListFunc:    newListFunc,
		GetAttrs:       getAttrs,
		Follower:       g.Follower,
		Writer:         g.Writer,
		Compactor:      g.Compactor,
		Replica:        g.Replica,
		Prefetcher:     g.Prefetcher,
		Objects:        g.Objects,

		BookmarkInterval:    g.BookmarkInterval,
		SlowWatcherTimeout:  g.SlowWatcherTimeout,
		MaxUnpagedListBytes: g.MaxUnpagedListBytes,
		// The reports' codec stores each kind as JSON of its own served version.
		PlainJSON: true,
	})
	if err != nil {
		return nil, nil, err
	}
	return s, func() {}, nil
}
