package pgstorage

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"strings"

	"github.com/jackc/pgx/v5"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/storage"

	"github.com/reports-server/reports-server/internal/apis/storedjson"
	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/sqlc"
)

// nextKey is the smallest key after k: text cannot contain NUL, so k || chr(1) is next.
func nextKey(k string) string { return k + "\x01" }

// row is one object read by a list query.
type row struct {
	key  string
	data []byte
	rev  int64
	// sent says data is the object as a client receives it (storedBytes: unescaped, with its
	// resourceVersion), or for a metadata row its metadata object as a client receives it
	// (storedMetadata), rather than as it is stored: what the object cache keeps or is about to
	// keep, made once for every list that reads it.
	sent bool
}

// rowBytes is x's object as a client receives it (see storedBytes).
func (s *Store) rowBytes(x row) ([]byte, error) {
	if x.sent {
		return x.data, nil
	}
	return s.storedBytes(x.data, x.rev)
}

// rowMetadata is the metadata of x, a metadata row (readMetadata), as a client receives it (see
// storedMetadata).
func rowMetadata(x row) ([]byte, error) {
	if x.sent {
		return x.data, nil
	}
	return storedMetadata(x.data, x.rev)
}

// snapshotReader runs the reads of one list request in one REPEATABLE READ snapshot, so the
// revision it reports and the rows it returns agree.
type snapshotReader struct {
	s      *Store
	tx     pgx.Tx
	filter sqlFilter
	// at is the revision being read; atCurrent says it equals the newest revision, which
	// lets reads use the current table alone (index-only paging, no change-log union).
	at        int64
	atCurrent bool
	// shape is how much of each object to read (see WithHeadOnly, WithMetadataOnly).
	shape readShape
}

func (r *snapshotReader) fetch(ctx context.Context, from, before string, limit int32) ([]row, error) {
	f := r.filter
	// Without selectors a page of the current state is a walk of the primary key whatever the
	// parameters, and the statement's cached generic plan is that walk. Otherwise the right plan
	// depends on the values: with selectors on how many rows match (walk and filter, or the GIN
	// index and sort the matches), in the past on how many changes follow the revision (read
	// those, or walk the change log's keys). A generic plan would fix one choice for all of them,
	// so these statements are planned for their parameters every time.
	var q sqlc.DBTX = r.tx
	if filtered(f) || !r.atCurrent {
		q = db.PlanEachCall(r.tx)
	}
	if r.atCurrent {
		if cacheable(r.shape) && r.s.objects != nil {
			return r.fetchCached(ctx, q, from, before, limit)
		}
		return r.current(ctx, q, from, before, limit, r.shape)
	}
	past, err := r.s.q.ListObjectsAt(ctx, q, sqlc.ListObjectsAtParams{
		Cluster: r.s.cluster, KeyFrom: from, KeyBefore: before, AtRevision: r.at,
		LabelContains: f.labelContains, LabelExists: f.labelExists, LabelReqs: f.labelReqs,
		FieldContains: f.fieldContains, FieldReqs: f.fieldReqs, RowLimit: limit, Shape: int32(r.shape),
	})
	if err != nil {
		return nil, err
	}
	out := make([]row, len(past))
	for i, x := range past {
		out[i] = rowOf(x.Key, x.Object, x.MetadataObject, x.ResourceVersion, r.shape)
	}
	return out, nil
}

// current reads a page of the current state in shape.
func (r *snapshotReader) current(ctx context.Context, q sqlc.DBTX, from, before string, limit int32, shape readShape) ([]row, error) {
	rows, err := r.s.q.ListObjects(ctx, q, r.currentPage(from, before, limit, shape))
	if err != nil {
		return nil, err
	}
	out := make([]row, len(rows))
	for i, x := range rows {
		out[i] = rowOf(x.Key, x.Object, x.MetadataObject, x.ResourceVersion, shape)
	}
	return out, nil
}

// rowOf is the row of an object read in shape: metadata rows come in a column of their own (see
// ListObjects).
func rowOf(key string, object, metadata []byte, rev int64, shape readShape) row {
	if shape == readMetadata {
		object = metadata
	}
	return row{key: key, data: object, rev: rev}
}

// fetchCached reads a page of whole objects or of metadata of the current state through the
// object cache (objectcache.go): the page's keys and revisions first, then, in the same
// snapshot, what the cache does not hold at those revisions, which it then keeps.
func (r *snapshotReader) fetchCached(ctx context.Context, q sqlc.DBTX, from, before string, limit int32) ([]row, error) {
	out, err := r.current(ctx, q, from, before, limit, readRevision)
	if err != nil {
		return nil, err
	}
	missing := r.s.objects.fill(r.s.cluster, r.shape, out)
	if len(missing) == 0 {
		return out, nil
	}
	if 2*len(missing) > len(out) {
		// Mostly not kept: the page read again whole, as without the cache, costs less than
		// as many lookups by key.
		return r.refetch(ctx, q, from, before, limit, out)
	}
	want := make([]string, len(missing))
	for i, at := range missing {
		want[i] = out[at].key
	}
	read, err := r.s.q.ObjectsByKey(ctx, r.tx, sqlc.ObjectsByKeyParams{Cluster: r.s.cluster, Keys: want, Shape: int32(r.shape)})
	if err != nil {
		return nil, err
	}
	byKey := make(map[string]row, len(read))
	for _, x := range read {
		byKey[x.Key] = rowOf(x.Key, x.Object, x.MetadataObject, x.ResourceVersion, r.shape)
	}
	added := make([]row, 0, len(missing))
	for _, at := range missing {
		x, ok := byKey[out[at].key]
		if !ok || x.rev != out[at].rev {
			return nil, notInSnapshot(out[at])
		}
		out[at].data = x.data
		if err := r.s.sending(r.shape, &out[at]); err != nil {
			return nil, err
		}
		added = append(added, out[at])
	}
	r.s.objects.add(r.s.cluster, r.shape, added, true)
	return out, nil
}

// refetch reads the page whose keys and revisions are listed again, in the reader's shape, and
// keeps what it read in the object cache as far as it has room (see ObjectCache.add).
func (r *snapshotReader) refetch(ctx context.Context, q sqlc.DBTX, from, before string, limit int32, listed []row) ([]row, error) {
	read, err := r.current(ctx, q, from, before, limit, r.shape)
	if err != nil {
		return nil, err
	}
	if len(read) != len(listed) {
		return nil, fmt.Errorf("a page listed %d objects, then %d in the same snapshot", len(listed), len(read))
	}
	for i, x := range read {
		if x.key != listed[i].key || x.rev != listed[i].rev {
			return nil, notInSnapshot(listed[i])
		}
		if listed[i].data != nil {
			read[i] = listed[i] // found in the cache: already in the form it keeps
			continue
		}
		if err := r.s.sending(r.shape, &read[i]); err != nil {
			return nil, err
		}
	}
	r.s.objects.add(r.s.cluster, r.shape, read, false)
	return read, nil
}

// sending turns a whole object or metadata read for the object cache into the form the cache
// keeps, the one clients receive (see row.sent), so the lists that find it there need not make
// it again.
func (s *Store) sending(shape readShape, x *row) error {
	if x.sent {
		return nil
	}
	var data []byte
	var err error
	switch shape {
	case readObject:
		data, err = s.storedBytes(x.data, x.rev)
	case readMetadata:
		data, err = storedMetadata(x.data, x.rev)
	default:
		return nil
	}
	if err != nil {
		return err
	}
	x.data, x.sent = data, true
	return nil
}

// notInSnapshot is the error of a second read that did not find what the first one listed: one
// snapshot, so it cannot happen.
func notInSnapshot(x row) error {
	return fmt.Errorf("object %q at revision %d not found in the snapshot that listed it", x.key, x.rev)
}

// currentPage is the ListObjects query of a page of the current state in [from, before), with
// the reader's selectors, read in shape.
func (r *snapshotReader) currentPage(from, before string, limit int32, shape readShape) sqlc.ListObjectsParams {
	f := r.filter
	return sqlc.ListObjectsParams{
		Cluster: r.s.cluster, KeyFrom: from, KeyBefore: before,
		LabelContains: f.labelContains, LabelExists: f.labelExists, LabelReqs: f.labelReqs,
		FieldContains: f.fieldContains, FieldReqs: f.fieldReqs, RowLimit: limit, Shape: int32(shape),
	}
}

// filtered says whether f has a condition for SQL to evaluate.
func filtered(f sqlFilter) bool {
	return f.labelContains != nil || f.labelExists != nil || f.labelReqs != nil || f.fieldContains != nil || f.fieldReqs != nil
}

// unfiltered is the same snapshot read without selectors.
func (r *snapshotReader) unfiltered() *snapshotReader {
	c := *r
	c.filter = sqlFilter{complete: true}
	return &c
}

// defaultRemainingCountLimit is the most objects a list page counts for remainingItemCount; when
// more remain the field is left out (docs/design.md, "Lists"). A count walks every key it counts,
// so an exact count would make each page of a large list cost as much as the rest of the list.
const defaultRemainingCountLimit = 10_000

// remaining counts the objects in [from, before) at the reader's revision, or returns nil when
// there are the store's remainingCountLimit or more.
func (r *snapshotReader) remaining(ctx context.Context, from, before string) (*int64, error) {
	limit := int32(min(r.s.remainingCountLimit, math.MaxInt32))
	var n int64
	if r.atCurrent {
		var err error
		n, err = r.s.q.CountObjects(ctx, r.tx, sqlc.CountObjectsParams{Cluster: r.s.cluster, KeyFrom: from, KeyBefore: before, CountLimit: limit})
		if err != nil {
			return nil, err
		}
		if n >= int64(limit) {
			return nil, nil
		}
	} else {
		c, err := r.s.q.CountObjectsAt(ctx, db.PlanEachCall(r.tx), sqlc.CountObjectsAtParams{Cluster: r.s.cluster, KeyFrom: from, KeyBefore: before, CountLimit: limit, AtRevision: r.at})
		if err != nil {
			return nil, err
		}
		if c.Current >= int64(limit) {
			return nil, nil
		}
		n = c.Current + c.Since
	}
	return &n, nil
}

// initialEventsPage is how many objects a watch's initial state reads per query.
const initialEventsPage = 500

// pageAt reads one keyset page of the state as of revision at, in its own short snapshot. It
// fails with 410 Expired once the change log no longer reaches back to at.
func (s *Store) pageAt(ctx context.Context, at int64, filter sqlFilter, from, before string, limit int32) ([]row, error) {
	var rows []row
	err := s.readTx(ctx, func(tx pgx.Tx, onReplica bool) error {
		cur, err := s.rev.read(ctx, tx)
		if err != nil {
			return db.NoRows(err)
		}
		if onReplica && at > cur.Current {
			return db.ErrReplicaBehind
		}
		s.observeCompacted(cur.Compacted)
		if at < cur.Compacted {
			return apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", at, cur.Compacted))
		}
		r := &snapshotReader{s: s, tx: tx, filter: filter, at: at, atCurrent: at == cur.Current, shape: shapeFor(ctx, filter.complete)}
		rows, err = r.fetch(ctx, from, before, limit)
		return err
	})
	return rows, err
}

// GetList implements storage.Interface. It runs in steps: parse the request, choose the
// revision to read (in one read-only snapshot), read the items, decide how the list continues,
// then fill in the list's metadata. A page whose selectors SQL applies in full takes a shorter
// way (getPage), which also reads the next page ahead of its request (prefetch.go).
func (s *Store) GetList(ctx context.Context, key string, opts storage.ListOptions, listObj runtime.Object) error {
	ctx, cancel := withDatabaseDeadline(ctx)
	defer cancel()
	req, err := s.parseListRequest(key, opts)
	if err != nil {
		return err
	}
	v, err := listItems(listObj)
	if err != nil {
		return err
	}
	newItem := newItemFunc(listObj, v, s.newFunc)
	if req.paging && req.filter.complete {
		return s.getPage(ctx, req, listObj, v, newItem)
	}
	var page listPage
	err = s.atRevision(ctx, req, func(r *snapshotReader) error {
		page = listPage{rev: r.at}
		// A retry on the primary starts from an empty list.
		v.SetLen(0)
		if err := s.readItems(ctx, r, req, v, s.itemMaker(ctx, r.shape, r.filter.complete, listObj, newItem), &page); err != nil {
			return err
		}
		return s.continuation(ctx, r, req, v.Len(), &page)
	})
	if err != nil {
		return s.dbError(req.keyPrefix, "list", err)
	}
	return s.setListMeta(listObj, v, req, page)
}

// getPage serves a page of a paged list whose selectors SQL applies in full: its rows come from
// one query in one snapshot (or from the page read ahead for this request), its items are made
// after the snapshot ends, and the page after it is read ahead.
func (s *Store) getPage(ctx context.Context, req listRequest, listObj runtime.Object, v reflect.Value, newItem func() runtime.Object) error {
	shape := shapeFor(ctx, true)
	p, ok := s.takePrefetched(ctx, req, shape)
	if !ok {
		var err error
		if p, err = s.readPage(ctx, req); err != nil {
			return s.dbError(req.keyPrefix, "list", err)
		}
	}
	items := s.itemMaker(ctx, shape, true, listObj, newItem)
	v.SetLen(0)
	v.Grow(len(p.rows)) // one allocation, not a doubling per append
	for _, x := range p.rows {
		obj, err := items.item(x, req.opts.Predicate, true)
		if err != nil {
			return s.dbError(req.keyPrefix, "list", err)
		}
		v.Set(reflect.Append(v, reflect.ValueOf(obj).Elem()))
	}
	s.prefetchNext(ctx, req, shape, p)
	return s.setListMeta(listObj, v, req, p.page)
}

// readPage reads the rows of the page req asks for, in one snapshot.
func (s *Store) readPage(ctx context.Context, req listRequest) (pageRows, error) {
	var p pageRows
	err := s.atRevision(ctx, req, func(r *snapshotReader) error {
		// One row beyond the page tells whether there is more; SQL selects every row.
		limit := req.opts.Predicate.Limit
		rows, err := r.fetch(ctx, req.from, req.before, int32(min(limit, math.MaxInt32-1)+1))
		if err != nil {
			return err
		}
		p = pageRows{page: listPage{rev: r.at}}
		if int64(len(rows)) > limit {
			rows, p.page.hasMore = rows[:limit], true
		}
		if len(rows) > 0 {
			p.page.lastKey = rows[len(rows)-1].key
		}
		p.rows = rows
		return s.continuation(ctx, r, req, len(rows), &p.page)
	})
	return p, err
}

// takePrefetched returns the page read ahead for req (a continuation), if there is one and the
// change log still reaches its revision: otherwise the request reads it, and gets 410 Gone as
// it should.
func (s *Store) takePrefetched(ctx context.Context, req listRequest, shape readShape) (pageRows, bool) {
	if req.continueKey == "" {
		return pageRows{}, false
	}
	return s.prefetcher.Take(ctx, prefetchKeyOf(req, shape), func(pageRows) bool {
		cur, err := s.rev.read(ctx, s.pool)
		if err != nil {
			return false
		}
		s.observeCompacted(cur.Compacted)
		return req.withRev >= cur.Compacted
	})
}

// prefetchNext reads the page after p ahead of the request for it (prefetch.go): the same list,
// continued after p's last key at p's revision, as the continue token p's list returns asks.
func (s *Store) prefetchNext(ctx context.Context, req listRequest, shape readShape, p pageRows) {
	if !p.page.hasMore || p.bytes() > prefetchMaxPageBytes {
		return
	}
	next := req
	next.from, next.withRev, next.continueKey = nextKey(p.page.lastKey), p.page.rev, p.page.lastKey+"\x00"
	next.opts.ResourceVersion, next.opts.ResourceVersionMatch = "", ""
	s.prefetcher.Start(ctx, prefetchKeyOf(next, shape), func(ctx context.Context) (pageRows, error) {
		return s.readPage(ctx, next)
	})
}

// prefetchKeyOf is what decides the rows of req's page read in shape.
func prefetchKeyOf(req listRequest, shape readShape) prefetchKey {
	pred := req.opts.Predicate
	key := prefetchKey{keyPrefix: req.keyPrefix, from: req.from, before: req.before, rev: req.withRev, limit: pred.Limit, shape: shape}
	if pred.Label != nil {
		key.labels = pred.Label.String()
	}
	if pred.Field != nil {
		key.fields = pred.Field.String()
	}
	return key
}

// atRevision runs fn with a reader of the revision req asks for, in one read-only snapshot: on
// the read replica when it has replayed what req needs, else on the primary. fn may run again
// (on the primary) after a first attempt on the replica.
func (s *Store) atRevision(ctx context.Context, req listRequest, fn func(r *snapshotReader) error) error {
	floor, err := s.primaryFloor(ctx, req)
	if err != nil {
		return err
	}
	return s.readTx(ctx, func(tx pgx.Tx, onReplica bool) error {
		if onReplica {
			if err := s.replicaCaughtUp(ctx, tx, req, floor); err != nil {
				return err
			}
		}
		r, err := s.chooseRevision(ctx, tx, req)
		if err != nil {
			return err
		}
		return fn(r)
	})
}

// listRequest is a GetList call, parsed.
type listRequest struct {
	opts      storage.ListOptions
	keyPrefix string
	// from and before bound the keys read: [from, before).
	from, before string
	// withRev is the revision asked for (0: the current one); continueKey is the continue
	// token's key, if any.
	withRev     int64
	continueKey string
	// paging is set when the list has a limit.
	paging bool
	// filter is the selectors, in SQL as far as they go.
	filter sqlFilter
}

// listPage is how a list ends: the revision it was read at, its last key, and whether and how
// much more follows.
type listPage struct {
	rev       int64
	lastKey   string
	hasMore   bool
	remaining *int64
}

// parseListRequest checks the options as the etcd store does and computes the key range.
func (s *Store) parseListRequest(key string, opts storage.ListOptions) (listRequest, error) {
	keyPrefix, err := s.prepareKey(key, opts.Recursive)
	if err != nil {
		return listRequest{}, err
	}
	withRev, continueKey, err := storage.ValidateListOptions(keyPrefix, s.versioner, opts)
	if err != nil {
		return listRequest{}, err
	}
	req := listRequest{
		opts: opts, keyPrefix: keyPrefix, from: keyPrefix, before: prefixEnd(keyPrefix),
		withRev: withRev, continueKey: continueKey, paging: opts.Recursive && opts.Predicate.Limit > 0,
		filter: translate(opts.Predicate),
	}
	if !opts.Recursive {
		req.before = nextKey(keyPrefix)
	}
	if continueKey != "" {
		// Tokens we issue point just after a key ("key\x00"); others start at their key.
		req.from = continueKey
		if last, ok := trimContinueKey(continueKey); ok {
			req.from = nextKey(last)
		}
		req.from = storedText(req.from) // a tampered token may carry any bytes
	}
	return req, nil
}

// chooseRevision reads the cluster's revisions in tx and returns a reader at the revision the
// request asks for: the current one, or an exact past one the change log still reaches.
func (s *Store) chooseRevision(ctx context.Context, tx pgx.Tx, req listRequest) (*snapshotReader, error) {
	cur, err := s.rev.read(ctx, tx)
	if err != nil {
		return nil, err
	}
	s.observeCompacted(cur.Compacted)
	r := &snapshotReader{s: s, tx: tx, filter: req.filter, at: cur.Current, atCurrent: true, shape: shapeFor(ctx, req.filter.complete)}
	if req.withRev == 0 {
		return r, s.checkMinimumRV(req.opts.ResourceVersion, cur.Current)
	}
	if req.withRev > cur.Current {
		return nil, storage.NewTooLargeResourceVersionError(uint64(req.withRev), uint64(cur.Current), 0)
	}
	if req.withRev < cur.Compacted {
		return nil, expiredListError(len(req.opts.Predicate.Continue) > 0, req.continueKey, req.keyPrefix)
	}
	r.at, r.atCurrent = req.withRev, req.withRev == cur.Current
	return r, nil
}

// replicaCaughtUp fails with errReplicaBehind unless the replica's snapshot in tx holds every
// revision the request may need: the primary's current one for a list of the most recent state
// (floor), the one it names for a list not older than it, the exact one of a continuation.
func (s *Store) replicaCaughtUp(ctx context.Context, tx pgx.Tx, req listRequest, floor int64) error {
	cur, err := s.rev.read(ctx, tx)
	if err != nil {
		return db.NoRows(err)
	}
	need := max(floor, req.withRev)
	if req.withRev == 0 && req.opts.ResourceVersion != "" {
		if minRV, err := s.versioner.ParseResourceVersion(req.opts.ResourceVersion); err == nil {
			need = max(need, int64(minRV))
		}
	}
	if need > cur.Current {
		return db.ErrReplicaBehind
	}
	return nil
}

// itemMaker makes a list's items from its rows.
type itemMaker struct {
	s       *Store
	newItem func() runtime.Object
	// stored, when set, keeps each item's stored JSON, and the items are hollow: the list is
	// read for a plain JSON response (WithStoredJSON) and SQL did all the selecting, so nothing
	// reads the items' fields.
	stored *storedjson.Items
	// storedMetadata says stored keeps each item's metadata alone: the list is read for a
	// metadata-only response written from it (WithMetadataJSON).
	storedMetadata bool
	// metadata says the rows hold only their objects' metadata (readMetadata), for typed items
	// with an ObjectMeta: only the metadata is decoded (decodeSentMetadata; the handler converts
	// the items to PartialObjectMetadata, which reads nothing else), and the kind is the
	// store's, as for metadata-only watchers.
	metadata bool
}

// itemMaker makes the items of rows read in shape; complete says SQL applied every selector.
func (s *Store) itemMaker(ctx context.Context, shape readShape, complete bool, listObj runtime.Object, newItem func() runtime.Object) itemMaker {
	m := itemMaker{s: s, newItem: newItem}
	if shape == readMetadata {
		_, m.metadata = objectMeta(newItem())
	}
	c, carrier := listObj.(storedjson.Carrier)
	switch {
	case carrier && storedJSON(ctx) && shape == readObject && complete:
		m.stored = c.StoredItems()
		m.stored.Keep(s.decodeJSON, s.encodings)
	case carrier && metadataJSON(ctx) && shape == readMetadata:
		// shapeFor reads metadata alone only when SQL does all the selecting.
		m.stored, m.storedMetadata = c.StoredItems(), true
		m.stored.KeepMetadata()
	}
	return m
}

// item returns the item of row x, or nil when the predicate (where SQL could not apply all of
// it) does not match.
func (m itemMaker) item(x row, pred storage.SelectionPredicate, complete bool) (runtime.Object, error) {
	if m.stored != nil {
		var data []byte
		var err error
		if m.storedMetadata {
			data, err = rowMetadata(x)
		} else {
			data, err = m.s.rowBytes(x)
		}
		if err != nil {
			return nil, err
		}
		m.stored.Append(data)
		return m.s.hollowItem(m.newItem), nil
	}
	if m.metadata && complete {
		meta, err := rowMetadata(x)
		if err != nil {
			return nil, err
		}
		return m.s.decodeSentMetadata(meta, m.newItem)
	}
	return m.s.decodeMatching(x, m.newItem, pred, complete)
}

// decodeMatching decodes row x into a new object, or returns nil when pred (where SQL could not
// apply all of it: complete is false) does not match it.
func (s *Store) decodeMatching(x row, newObj func() runtime.Object, pred storage.SelectionPredicate, complete bool) (runtime.Object, error) {
	obj := newObj()
	decode := s.decode
	if x.sent {
		decode = s.decodeUnescaped
	}
	if err := decode(x.data, obj, x.rev); err != nil {
		return nil, err
	}
	if !complete {
		if ok, err := pred.Matches(obj); err != nil || !ok {
			return nil, nil
		}
	}
	return obj, nil
}

// readItems appends the matching objects to v: a page of up to the limit, or, without one, every
// object in chunks (refused past the size bound).
func (s *Store) readItems(ctx context.Context, r *snapshotReader, req listRequest, v reflect.Value,
	items itemMaker, page *listPage) error {
	pred := req.opts.Predicate
	from := req.from
	var listed int64 // stored bytes of the items so far
	for {
		// Without a limit, read in chunks, so the size bound stops the list early.
		limit := int32(unpagedChunk)
		if req.paging {
			// One row beyond the page tells whether there is more. The page's remainder is
			// capped before adding that row: a limit near MaxInt64 must not overflow.
			limit = int32(min(pred.Limit-int64(v.Len()), math.MaxInt32-1) + 1)
		}
		rows, err := r.fetch(ctx, from, req.before, limit)
		if err != nil || len(rows) == 0 {
			return err
		}
		v.Grow(len(rows))
		for _, x := range rows {
			if req.paging && int64(v.Len()) >= pred.Limit {
				page.hasMore = true
				return nil
			}
			page.lastKey = x.key
			obj, err := items.item(x, pred, r.filter.complete)
			if err != nil {
				return err
			}
			if obj == nil {
				continue
			}
			v.Set(reflect.Append(v, reflect.ValueOf(obj).Elem()))
			if listed += int64(len(x.data)); !req.paging && s.maxUnpagedListBytes > 0 && listed > s.maxUnpagedListBytes {
				return s.unpagedTooLarge()
			}
		}
		if int32(len(rows)) < limit {
			return nil
		}
		if req.paging && int64(v.Len()) >= pred.Limit {
			// The extra row was consumed by Go-side filtering: there may be more.
			page.hasMore = true
			return nil
		}
		from = nextKey(page.lastKey)
	}
}

// continuation decides whether a paged list continues after the n items it read, and how many
// objects remain.
func (s *Store) continuation(ctx context.Context, r *snapshotReader, req listRequest, n int, page *listPage) error {
	pred := req.opts.Predicate
	if req.paging && !page.hasMore && int64(n) == pred.Limit && !pred.Empty() {
		// A full page of a filtered list: like etcd, which cannot know whether later keys
		// match, offer a continuation while any key follows. Clients rely on "no token"
		// meaning "no more", never on "a token" meaning "more matches".
		rows, err := r.unfiltered().fetch(ctx, nextKey(page.lastKey), req.before, 1)
		if err != nil {
			return err
		}
		page.hasMore = len(rows) > 0
	}
	if page.hasMore && pred.Empty() {
		total, err := r.remaining(ctx, req.from, req.before)
		if err != nil || total == nil {
			return err
		}
		left := *total - pred.Limit
		page.remaining = &left
	}
	return nil
}

// setListMeta sets the list's resourceVersion, continue token and remaining count.
func (s *Store) setListMeta(listObj runtime.Object, v reflect.Value, req listRequest, page listPage) error {
	continueValue := ""
	if page.hasMore {
		var err error
		if continueValue, err = storage.EncodeContinue(page.lastKey+"\x00", req.keyPrefix, page.rev); err != nil {
			return err
		}
	}
	if v.IsNil() {
		v.Set(reflect.MakeSlice(v.Type(), 0, 0))
	}
	return s.versioner.UpdateList(listObj, uint64(page.rev), continueValue, page.remaining)
}

// unpagedChunk is how many rows a list without a limit reads per query.
const unpagedChunk = 1000

// unpagedTooLarge refuses a list without a limit that would return more than the size bound.
func (s *Store) unpagedTooLarge() error {
	resource := strings.Trim(s.resourcePrefix, "/")
	if group, res, ok := strings.Cut(resource, "/"); ok {
		resource = res + "." + group
	}
	return apierrors.NewBadRequest(fmt.Sprintf("the list of %s is larger than %d bytes, the most this server returns "+
		"in one response without a limit (--max-unpaged-list-bytes): list in pages with limit and continue "+
		"(kubectl does by default, --chunk-size; client-go informers and pagers do)",
		resource, s.maxUnpagedListBytes))
}

// expiredListError is what a list at a compacted revision gets (410 Gone). A paged list also
// gets a token that continues at the newest revision, as the etcd store does.
func expiredListError(paging bool, continueKey, keyPrefix string) error {
	if !paging {
		return apierrors.NewResourceExpired("The resourceVersion for the provided list is too old.")
	}
	token, err := storage.EncodeContinue(continueKey, keyPrefix, -1)
	if err != nil {
		return apierrors.NewResourceExpired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
	}
	se := apierrors.NewResourceExpired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
	se.ErrStatus.ListMeta = metav1.ListMeta{Continue: token}
	return se
}

// newItemFunc makes empty list items; unstructured lists keep their group/version/kind.
func newItemFunc(listObj runtime.Object, v reflect.Value, newFunc func() runtime.Object) func() runtime.Object {
	if _, ok := listObj.(runtime.Unstructured); ok {
		elem := v.Type().Elem()
		return func() runtime.Object {
			obj := reflect.New(elem).Interface().(runtime.Unstructured)
			if gvk := listObj.GetObjectKind().GroupVersionKind(); !gvk.Empty() {
				obj.GetObjectKind().SetGroupVersionKind(gvk.GroupVersion().WithKind(trimList(gvk.Kind)))
			}
			return obj
		}
	}
	elem := v.Type().Elem()
	return func() runtime.Object {
		if o, ok := reflect.New(elem).Interface().(runtime.Object); ok {
			return o
		}
		return newFunc()
	}
}

func trimList(kind string) string {
	if len(kind) > 4 && kind[len(kind)-4:] == "List" {
		return kind[:len(kind)-4]
	}
	return kind
}
