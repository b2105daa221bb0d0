// Package pgstorage implements k8s.io/apiserver's storage.Interface on PostgreSQL, so the generic
// registry (validation, admission, patch, apply, tables, watch plumbing) runs unchanged on top of
// it. See docs/design.md for the storage model and the revision guarantees.
package pgstorage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/storage"

	"github.com/reports-server/reports-server/internal/apis/storedjson"
	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/sqlc"
)

// Config describes one resource's store. Every resource of a process shares the pool; rows are
// told apart by cluster and key prefix.
type Config struct {
	Pool    *pgxpool.Pool
	Cluster string
	// Codec must encode JSON: stored bytes are parsed into JSONB.
	Codec          runtime.Codec
	ResourcePrefix string
	NewFunc        func() runtime.Object
	NewListFunc    func() runtime.Object
	// GetAttrs is the resource's attribute function (the one its selection predicates use).
	// When set, watch events compute labels and fields once for all watchers.
	GetAttrs storage.AttrFunc
	// Writer commits this store's writes. Share one per process and cluster, so writes to
	// every resource share batches; when nil the store makes its own.
	Writer *Writer
	// Follower feeds this store's watchers. Share one per process and cluster; when nil the
	// store makes its own that polls every WatchPollInterval.
	Follower          *Follower
	WatchPollInterval time.Duration
	// Compactor compacts the cluster's change log (Compact). Share one per process and
	// cluster, made with the same Follower; when nil the store makes its own, which only
	// compacts when asked.
	Compactor *Compactor
	// BookmarkInterval is how often watchers that allow bookmarks get one
	// (DefaultBookmarkInterval when zero).
	BookmarkInterval time.Duration
	// SlowWatcherTimeout closes a watcher whose consumer has not taken an event from its full
	// buffer for this long (DefaultSlowWatcherTimeout when zero; negative: never).
	SlowWatcherTimeout time.Duration
	// PlainJSON says objects are stored as JSON of their own Go type, which needs no conversion
	// and no defaulting (the report kinds): they are then decoded by unmarshalling the stored
	// JSON into them, without the codec's first pass over it to find its kind (half the cost
	// of decoding). Leave it unset for a codec that converts (internal types).
	PlainJSON bool
	// Replica, when set, serves lists, continuation pages and watches' initial state whenever
	// it has replayed the revision they need (see replica.go). Share one per process.
	Replica *db.Replica
	// Prefetcher keeps the pages paged lists read ahead (prefetch.go). Share one per process,
	// so its bounds hold for all resources together; when nil the store makes its own.
	Prefetcher *Prefetcher
	// Objects keeps the stored JSON of the objects lists read (objectcache.go). Share one per
	// process, so its bound holds for all resources together; nil keeps nothing.
	Objects *ObjectCache
	// MaxUnpagedListBytes is the most stored JSON a list without a limit may return: beyond it
	// the list is refused (400) and the client told to page, so one request cannot take the
	// server's memory (DefaultMaxUnpagedListBytes when zero; negative: no bound).
	MaxUnpagedListBytes int64
}

// DefaultMaxUnpagedListBytes bounds an unpaged list at 32 MiB of stored JSON, about 3,000
// reports of 20 results: decoded and encoded again, such a response costs the server a few
// hundred MB at its peak. Paged lists, watch-lists and informers are not bounded by it.
const DefaultMaxUnpagedListBytes = 32 << 20

// Store is a storage.Interface backed by the reports, changes and revisions tables.
type Store struct {
	pool           *pgxpool.Pool
	q              *db.Queries
	rev            clusterRevision
	cluster        string
	codec          runtime.Codec
	versioner      versioner
	resourcePrefix string
	newFunc        func() runtime.Object
	newListFunc    func() runtime.Object
	getAttrs       storage.AttrFunc
	writer         *Writer
	follower       *Follower
	compactor      *Compactor
	replica        *db.Replica
	prefetcher     *Prefetcher
	objects        *ObjectCache

	bookmarkInterval    time.Duration
	slowWatcherTimeout  time.Duration
	maxUnpagedListBytes int64
	// remainingCountLimit bounds the count behind a page's remainingItemCount (list.go).
	remainingCountLimit int64

	sizeEstimation atomic.Bool
	// kind is the kind and version objects are stored as (see stored.go).
	kind schema.GroupVersionKind
	// encodings is what the encoders of this store's responses ask of its stored JSON.
	encodings *storedjson.Encodings
	// plainJSON: decode by unmarshalling (Config.PlainJSON).
	plainJSON bool
}

var _ storage.Interface = (*Store)(nil)

// New returns a store for one resource. It makes sure the cluster's revision row exists.
func New(cfg Config) (*Store, error) {
	if cfg.Pool == nil || cfg.Codec == nil || cfg.NewFunc == nil || cfg.NewListFunc == nil {
		return nil, errors.New("pgstorage: Pool, Codec, NewFunc and NewListFunc are required")
	}
	if cfg.Cluster == "" {
		return nil, errors.New("pgstorage: Cluster is required")
	}
	if cfg.ResourcePrefix != "" && !strings.HasSuffix(cfg.ResourcePrefix, "/") {
		// "/group/resource" must not also match "/group/resourcefoo/...".
		cfg.ResourcePrefix += "/"
	}
	s := &Store{
		pool:           cfg.Pool,
		q:              db.New(),
		rev:            newClusterRevision(cfg.Cluster),
		cluster:        cfg.Cluster,
		codec:          cfg.Codec,
		resourcePrefix: cfg.ResourcePrefix,
		newFunc:        cfg.NewFunc,
		newListFunc:    cfg.NewListFunc,
		getAttrs:       cfg.GetAttrs,
		writer:         cfg.Writer,
		follower:       cfg.Follower,
		compactor:      cfg.Compactor,
		replica:        cfg.Replica,
		prefetcher:     cfg.Prefetcher,
		objects:        cfg.Objects,

		bookmarkInterval:    cfg.BookmarkInterval,
		slowWatcherTimeout:  cfg.SlowWatcherTimeout,
		maxUnpagedListBytes: cfg.MaxUnpagedListBytes,
		remainingCountLimit: defaultRemainingCountLimit,
	}
	if s.writer == nil {
		s.writer = NewWriter(cfg.Pool, cfg.Cluster)
	}
	if s.follower == nil {
		s.follower = NewFollower(cfg.Pool, cfg.Cluster, FollowerOptions{PollInterval: cfg.WatchPollInterval})
	}
	if s.compactor == nil {
		s.compactor = NewCompactor(cfg.Pool, cfg.Cluster, CompactorOptions{Follower: s.follower})
	}
	if s.prefetcher == nil {
		s.prefetcher = NewPrefetcher()
	}
	if s.bookmarkInterval <= 0 {
		s.bookmarkInterval = DefaultBookmarkInterval
	}
	if s.slowWatcherTimeout == 0 {
		s.slowWatcherTimeout = DefaultSlowWatcherTimeout
	}
	if s.maxUnpagedListBytes == 0 {
		s.maxUnpagedListBytes = DefaultMaxUnpagedListBytes
	}
	kind, err := servedKind(cfg.Codec, cfg.NewFunc)
	if err != nil {
		return nil, fmt.Errorf("pgstorage: the codec's kind for %s: %w", cfg.ResourcePrefix, err)
	}
	s.kind = kind
	s.encodings = storedjson.NewEncodings(kind.GroupVersion())
	s.plainJSON = cfg.PlainJSON
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.q.EnsureCluster(ctx, s.pool, s.cluster); err != nil {
		return nil, fmt.Errorf("register cluster %q: %w", s.cluster, err)
	}
	return s, nil
}

// Versioner implements storage.Interface.
func (s *Store) Versioner() storage.Versioner { return s.versioner }

// errKeyExists and errConflict abort a write transaction; they never leave this package.
var (
	errKeyExists = errors.New("key exists")
	errConflict  = errors.New("revision conflict")
)

// Create implements storage.Interface.
func (s *Store) Create(ctx context.Context, key string, obj, out runtime.Object, _ uint64) error {
	ctx, cancel := withDatabaseDeadline(ctx)
	defer cancel()
	key, err := s.prepareKey(key, false)
	if err != nil {
		return err
	}
	if rv, err := s.versioner.ObjectResourceVersion(obj); err == nil && rv != 0 {
		return rvSetOnCreate()
	}
	data, err := s.encode(obj)
	if err != nil {
		return err
	}
	rev, err := s.writer.do(ctx, &writeOp{kind: opCreate, key: key, data: data})
	if errors.Is(err, errKeyExists) {
		return storage.NewKeyExistsError(key, 0)
	}
	if err != nil {
		return s.dbError(key, "create", err)
	}
	if out == nil {
		return nil
	}
	if err := s.adopt(obj, data, out, rev); err != nil {
		return err
	}
	s.keepWritten(ctx, out, data, rev)
	return nil
}

// adopt makes out the object just written: obj (what was encoded as data) at revision rev. The
// etcd store decodes data into out; obj already is that object, and nobody uses it once it is
// written, so out takes its fields instead (a shallow copy: the response needs no decoding).
func (s *Store) adopt(obj runtime.Object, data []byte, out runtime.Object, rev int64) error {
	src, dst := reflect.ValueOf(obj), reflect.ValueOf(out)
	if src.Type() != dst.Type() || src.Kind() != reflect.Pointer {
		return s.decode(data, out, rev)
	}
	if src.Pointer() != dst.Pointer() {
		dst.Elem().Set(src.Elem())
	}
	if err := s.versioner.UpdateObject(out, uint64(rev)); err != nil {
		return fmt.Errorf("set resource version: %w", err)
	}
	return nil
}

// objState is an object as read from the database, with the canonical encoding used to detect
// no-op updates (JSONB does not keep the encoder's bytes, so compare re-encoded objects).
type objState struct {
	obj  runtime.Object
	rev  int64
	data []byte // nil when the object does not exist
}

func (s *Store) newObject(v reflect.Value) runtime.Object {
	if u, ok := v.Addr().Interface().(runtime.Unstructured); ok {
		return u.NewEmptyInstance()
	}
	return reflect.New(v.Type()).Interface().(runtime.Object)
}

// currentState reads key's current state. A missing key is an error unless ignoreNotFound.
func (s *Store) currentState(ctx context.Context, key string, v reflect.Value, ignoreNotFound bool) (*objState, error) {
	object, rev, err := readStored(ctx, s.q, s.pool, s.cluster, key)
	if err != nil {
		return nil, s.dbError(key, "get", err)
	}
	st := &objState{obj: s.newObject(v)}
	if object == nil {
		if !ignoreNotFound {
			return nil, storage.NewKeyNotFoundError(key, 0)
		}
		if err := runtime.SetZeroValue(st.obj); err != nil {
			return nil, err
		}
		return st, nil
	}
	if err := s.decode(object, st.obj, rev); err != nil {
		return nil, err
	}
	st.rev = rev
	st.data, err = s.canonical(st.obj)
	return st, err
}

// stateFromObject trusts a caller's cached copy; writes still compare revisions, so a stale
// copy costs a retry, never a lost update.
func (s *Store) stateFromObject(obj runtime.Object) (*objState, error) {
	rv, err := s.versioner.ObjectResourceVersion(obj)
	if err != nil {
		return nil, fmt.Errorf("read resource version: %w", err)
	}
	data, err := s.canonical(obj)
	if err != nil {
		return nil, err
	}
	return &objState{obj: obj, rev: int64(rv), data: data}, nil
}

// canonical encodes obj as it would be stored: without its resourceVersion.
func (s *Store) canonical(obj runtime.Object) ([]byte, error) {
	rv, err := s.versioner.ObjectResourceVersion(obj)
	if err != nil {
		return nil, fmt.Errorf("read resource version: %w", err)
	}
	data, err := s.encode(obj)
	if uerr := s.versioner.UpdateObject(obj, rv); uerr != nil && err == nil {
		err = uerr
	}
	return data, err
}

// encode is the one encoding of an object for storage (and for the no-op comparison of
// updates): without its resourceVersion, and with every managedFields[].fieldsV1 in sorted key
// order. fieldsV1 is raw JSON that decoding keeps as it comes, and jsonb stores object keys in
// its own order (shorter keys first), so without normalising it an object read back would never
// encode like the same object freshly made: every no-op update (a re-applied report, a resumed
// migration) would write a new revision and send a MODIFIED event.
func (s *Store) encode(obj runtime.Object) ([]byte, error) {
	if err := s.versioner.PrepareObjectForStorage(obj); err != nil {
		return nil, fmt.Errorf("prepare object for storage: %w", err)
	}
	if err := sortManagedFields(obj); err != nil {
		return nil, err
	}
	data, err := runtime.Encode(s.codec, obj)
	if err != nil {
		return nil, err
	}
	return escapeJSON(data), nil
}

// sortManagedFields rewrites the fieldsV1 of obj's managedFields with sorted keys, at every level.
func sortManagedFields(obj runtime.Object) error {
	a, err := meta.Accessor(obj)
	if err != nil {
		return fmt.Errorf("object metadata: %w", err)
	}
	managed := a.GetManagedFields()
	changed := false
	for i := range managed {
		f := managed[i].FieldsV1
		if f == nil || len(f.Raw) == 0 {
			continue
		}
		var v any
		if err := json.Unmarshal(f.Raw, &v); err != nil {
			return fmt.Errorf("managedFields[%d].fieldsV1: %w", i, err)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil { // maps encode with sorted keys
			return fmt.Errorf("managedFields[%d].fieldsV1: %w", i, err)
		}
		if sorted := bytes.TrimSuffix(buf.Bytes(), []byte("\n")); !bytes.Equal(sorted, f.Raw) {
			managed[i].FieldsV1 = &metav1.FieldsV1{Raw: sorted}
			changed = true
		}
	}
	if changed {
		a.SetManagedFields(managed)
	}
	return nil
}

// writeState is what a write loop works from: the caller's cached copy of the object until it
// proves stale, then the current row. Writes compare revisions, so a stale copy costs a retry,
// never a lost update.
type writeState struct {
	s              *Store
	ctx            context.Context
	key            string
	v              reflect.Value
	ignoreNotFound bool
	*objState
	current bool // objState was read from the database in this call
}

func (s *Store) writeState(ctx context.Context, key string, v reflect.Value, ignoreNotFound bool, cached runtime.Object) (*writeState, error) {
	w := &writeState{s: s, ctx: ctx, key: key, v: v, ignoreNotFound: ignoreNotFound}
	if cached != nil {
		st, err := s.stateFromObject(cached)
		w.objState = st
		return w, err
	}
	return w, w.refresh()
}

// refresh reads the current row.
func (w *writeState) refresh() error {
	st, err := w.s.currentState(w.ctx, w.key, w.v, w.ignoreNotFound)
	w.objState, w.current = st, true
	return err
}

// retry decides what a failed check (precondition, validation, the caller's update) means. On
// the current row the failure stands. On a cached copy the row is read: if its revision is the
// same, the failure stands; otherwise the caller retries on the fresh state.
func (w *writeState) retry(failure error) (bool, error) {
	if w.current {
		return false, failure
	}
	cachedRev := w.rev
	if err := w.refresh(); err != nil {
		return false, err
	}
	if w.rev == cachedRev {
		return false, failure
	}
	return true, nil
}

// Delete implements storage.Interface.
func (s *Store) Delete(ctx context.Context, key string, out runtime.Object, preconditions *storage.Preconditions,
	validateDeletion storage.ValidateObjectFunc, cachedExistingObject runtime.Object, _ storage.DeleteOptions) error {
	ctx, cancel := withDatabaseDeadline(ctx)
	defer cancel()
	key, err := s.prepareKey(key, false)
	if err != nil {
		return err
	}
	v, err := conversion.EnforcePtr(out)
	if err != nil {
		return fmt.Errorf("unable to convert output object to pointer: %w", err)
	}
	st, err := s.writeState(ctx, key, v, false, cachedExistingObject)
	if err != nil {
		return err
	}
	for {
		err := preconditions.Check(key, st.obj)
		if err == nil {
			err = validateDeletion(ctx, st.obj)
		}
		if err != nil {
			if again, err := st.retry(err); !again {
				return err
			}
			continue
		}
		rev, err := s.writer.do(ctx, &writeOp{kind: opDelete, key: key, expected: st.rev})
		if errors.Is(err, errConflict) {
			if err := st.refresh(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return s.dbError(key, "delete", err)
		}
		// Like etcd, the returned object is the deleted state at the deletion's revision.
		return s.decode(st.data, out, rev)
	}
}

// GuaranteedUpdate implements storage.Interface.
func (s *Store) GuaranteedUpdate(ctx context.Context, key string, destination runtime.Object, ignoreNotFound bool,
	preconditions *storage.Preconditions, tryUpdate storage.UpdateFunc, cachedExistingObject runtime.Object) error {
	ctx, cancel := withDatabaseDeadline(ctx)
	defer cancel()
	key, err := s.prepareKey(key, false)
	if err != nil {
		return err
	}
	v, err := conversion.EnforcePtr(destination)
	if err != nil {
		return fmt.Errorf("unable to convert output object to pointer: %w", err)
	}
	st, err := s.writeState(ctx, key, v, ignoreNotFound, cachedExistingObject)
	if err != nil {
		return err
	}
	for {
		var ret runtime.Object
		err := preconditions.Check(key, st.obj)
		if err == nil {
			ret, _, err = tryUpdate(st.obj, storage.ResponseMeta{ResourceVersion: uint64(st.rev)})
		}
		if err != nil {
			if again, err := st.retry(err); !again {
				return err
			}
			continue
		}
		data, err := s.encode(ret)
		if err != nil {
			return err
		}
		if st.data != nil && bytes.Equal(data, st.data) {
			// Nothing changed: no write, no new revision, as etcd does. A cached copy must
			// first be confirmed against the database.
			if !st.current {
				if err := st.refresh(); err != nil {
					return err
				}
				if !bytes.Equal(data, st.data) {
					continue
				}
			}
			return s.decode(st.data, destination, st.rev)
		}
		op := &writeOp{kind: opUpdate, key: key, data: data, expected: st.rev}
		if st.data == nil {
			op.kind = opCreate // ignoreNotFound: the object did not exist when read
		}
		rev, err := s.writer.do(ctx, op)
		if errors.Is(err, errKeyExists) {
			err = errConflict // created meanwhile: re-read and try again
		}
		if errors.Is(err, errConflict) {
			if err := st.refresh(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return s.dbError(key, "update", err)
		}
		return s.adopt(ret, data, destination, rev)
	}
}

// Get implements storage.Interface. For a REST.Get whose response is plain JSON or YAML
// (WithGetAnswer, WithStoredJSON) it leaves the object in the request's Answer, hollow, and out
// empty.
func (s *Store) Get(ctx context.Context, key string, opts storage.GetOptions, out runtime.Object) error {
	ctx, cancel := withDatabaseDeadline(ctx)
	defer cancel()
	key, err := s.prepareKey(key, false)
	if err != nil {
		return err
	}
	object, rev, err := s.getObject(ctx, key, opts.ResourceVersion)
	if err != nil {
		return err
	}
	if object == nil {
		if opts.IgnoreNotFound {
			return runtime.SetZeroValue(out)
		}
		return storage.NewKeyNotFoundError(key, 0)
	}
	if s.keepRead(ctx, object, rev) {
		return nil
	}
	return s.decode(object, out, rev)
}

// getObject reads key's stored object and revision (nil when absent), as of at least
// resourceVersion when one is given: only then is the cluster's revision read with it ("0", any
// revision, needs none).
func (s *Store) getObject(ctx context.Context, key, resourceVersion string) ([]byte, int64, error) {
	if resourceVersion == "" || resourceVersion == "0" {
		object, rev, err := readStored(ctx, s.q, s.pool, s.cluster, key)
		if err != nil {
			return nil, 0, s.dbError(key, "get", err)
		}
		return object, rev, nil
	}
	row, err := s.q.GetObject(ctx, s.pool, sqlc.GetObjectParams{Cluster: s.cluster, Key: key})
	if err != nil {
		return nil, 0, s.dbError(key, "get", db.NoRows(err))
	}
	if err := s.checkMinimumRV(resourceVersion, row.Current); err != nil {
		return nil, 0, err
	}
	return row.Object, row.ResourceVersion, nil
}

// readStored reads key's stored object and revision; a nil object when the key is absent.
func readStored(ctx context.Context, q *sqlc.Queries, conn sqlc.DBTX, cluster, key string) ([]byte, int64, error) {
	row, err := q.ReadObject(ctx, conn, sqlc.ReadObjectParams{Cluster: cluster, Key: key})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return row.Object, row.ResourceVersion, nil
}

// checkMinimumRV enforces "the result is at least as new as resourceVersion".
func (s *Store) checkMinimumRV(resourceVersion string, current int64) error {
	if resourceVersion == "" {
		return nil
	}
	minRV, err := s.versioner.ParseResourceVersion(resourceVersion)
	if err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("invalid resource version: %v", err))
	}
	if minRV > uint64(current) {
		return storage.NewTooLargeResourceVersionError(minRV, uint64(current), 0)
	}
	return nil
}

// Stats implements storage.Interface.
func (s *Store) Stats(ctx context.Context) (storage.Stats, error) {
	ctx, cancel := withDatabaseDeadline(ctx)
	defer cancel()
	prefix, err := s.prepareKey(s.resourcePrefix, true)
	if err != nil {
		return storage.Stats{}, err
	}
	row, err := s.q.StatsObjects(ctx, s.pool, sqlc.StatsObjectsParams{Cluster: s.cluster, KeyFrom: prefix, KeyBefore: prefixEnd(prefix)})
	if err != nil {
		return storage.Stats{}, s.dbError(prefix, "stats", err)
	}
	st := storage.Stats{ObjectCount: row.Objects}
	if s.sizeEstimation.Load() {
		st.EstimatedAverageObjectSizeBytes = row.AvgSize
	}
	return st, nil
}

// ReadinessCheck implements storage.Interface. Database health is a separate readyz check.
func (s *Store) ReadinessCheck() error { return nil }

// RequestWatchProgress implements storage.Interface. Our watchers send bookmarks themselves.
func (s *Store) RequestWatchProgress(context.Context) error { return nil }

// GetCurrentResourceVersion implements storage.Interface.
func (s *Store) GetCurrentResourceVersion(ctx context.Context) (uint64, error) {
	ctx, cancel := withDatabaseDeadline(ctx)
	defer cancel()
	row, err := s.rev.read(ctx, s.pool)
	if err != nil {
		return 0, s.dbError(s.resourcePrefix, "read revision", db.NoRows(err))
	}
	s.observeCompacted(row.Compacted)
	return uint64(row.Current), nil
}

// EnableResourceSizeEstimation implements storage.Interface. Stats then reports the average
// stored size, which SQL knows without the key walk etcd needs.
func (s *Store) EnableResourceSizeEstimation(storage.KeysFunc) error {
	s.sizeEstimation.Store(true)
	return nil
}

// CompactRevision implements storage.Interface: the newest compaction this process has seen.
func (s *Store) CompactRevision() int64 {
	return max(s.follower.CompactRevision(), s.compactor.CompactRevision())
}

func (s *Store) observeCompacted(rev int64) { s.follower.observeCompacted(rev) }

// Compact compacts the cluster's change log to rev: watches and exact-revision lists can no
// longer start before it (410 Gone). The change log is per cluster, so this is the cluster's
// Compactor's work (see Compactor.Compact); the store only forwards it.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	return s.compactor.Compact(ctx, rev)
}

// decode decodes stored JSON into out, with resourceVersion rev.
func (s *Store) decode(data []byte, out runtime.Object, rev int64) error {
	return s.decodeUnescaped(unescapeJSON(data), out, rev)
}

// decodeUnescaped decodes unescaped JSON (text.go) into out, with resourceVersion rev: stored
// JSON once unescaped, or an object as a client receives it (row.sent), whose resourceVersion is
// rev already.
func (s *Store) decodeUnescaped(data []byte, out runtime.Object, rev int64) error {
	if err := s.decodeJSON(data, out); err != nil {
		return storage.NewInternalError(err)
	}
	if err := s.versioner.UpdateObject(out, uint64(rev)); err != nil {
		return fmt.Errorf("set resource version: %w", err)
	}
	return nil
}

// prepareKey checks key as the etcd store does, and makes it safe to send to PostgreSQL: a key
// with bytes no stored key has (NUL, invalid UTF-8 from the URL) matches nothing (see text.go).
func (s *Store) prepareKey(key string, recursive bool) (string, error) {
	key, err := storage.PrepareKey(s.resourcePrefix, key, recursive)
	return storedText(key), err
}

// prefixEnd is the smallest key greater than every key that starts with prefix.
func prefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\xff\xff\xff\xff"
}

// dbError turns a database failure into an API error: unreachable, overloaded or unresponsive
// databases are 503 with a retry hint (clients and controllers back off and retry); anything
// else is 500. A deadline that passed is the database's: requests wait for it under
// withDatabaseDeadline, which ends before the request's own deadline.
func (s *Store) dbError(key, op string, err error) error {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		// The client went away; nobody reads this answer.
		return storage.NewTimeoutError(key, fmt.Sprintf("%s did not complete: %v", op, err))
	}
	if db.IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, errOutcomeUnknown) || errors.Is(err, errAnswerLate) {
		return &apierrors.StatusError{ErrStatus: metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    503,
			Reason:  metav1.StatusReasonServiceUnavailable,
			Message: fmt.Sprintf("the report database is unavailable (%s): %v; retry shortly", op, err),
			Details: &metav1.StatusDetails{RetryAfterSeconds: 1},
		}}
	}
	return storage.NewInternalError(fmt.Errorf("%s %s: %w", op, key, err))
}

// withDatabaseDeadline bounds the database work of a request so that it ends a little before the
// request's own deadline: at that deadline the generic server answers 504 and abandons the
// handler, while a database that does not answer in time (it hangs, or every pooled connection
// is taken) should be a 503 with Retry-After, like a database that is away. The margin is a
// second, or a quarter of the time left for short deadlines. Without a deadline (watches are
// bounded otherwise, tests call the store directly) ctx is returned as it is.
func withDatabaseDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return WithDatabaseDeadline(ctx)
}

// WithDatabaseDeadline is withDatabaseDeadline for the server's other storage (namespaces): every
// query a request runs ends a little before the request does, so a hung database is a 503 with
// Retry-After, not the request timeout's 504.
func WithDatabaseDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return ctx, func() {}
	}
	margin := min(time.Second, time.Until(deadline)/4)
	return context.WithDeadline(ctx, deadline.Add(-margin))
}

// listItems returns the reflect.Value of listObj's Items slice.
func listItems(listObj runtime.Object) (reflect.Value, error) {
	ptr, err := meta.GetItemsPtr(listObj)
	if err != nil {
		return reflect.Value{}, err
	}
	v, err := conversion.EnforcePtr(ptr)
	if err != nil || v.Kind() != reflect.Slice {
		return reflect.Value{}, fmt.Errorf("need ptr to slice: %v", err)
	}
	return v, nil
}

func trimContinueKey(continueKey string) (string, bool) {
	return strings.CutSuffix(continueKey, "\x00")
}
