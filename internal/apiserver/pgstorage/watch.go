package pgstorage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/storage"
	utilflowcontrol "k8s.io/apiserver/pkg/util/flowcontrol"

	"github.com/reports-server/reports-server/internal/apis/storedjson"
	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/sqlc"
)

// Event types as the change log stores them.
const (
	eventAdded    = "ADDED"
	eventModified = "MODIFIED"
	eventDeleted  = "DELETED"
)

const (
	// watchBuffer events wait for a slow reader; a stopped watcher's buffered events are still
	// delivered, as with the etcd watcher. Small, as the watch cache's per-watcher channel (10):
	// every buffered event is this watcher's own decoded copy of an object (~12 KB for a
	// 20-result report), so the buffer costs watchers × watchBuffer × object size, while a
	// watcher that lags behind its consumer waits on changes the follower's window (or the log)
	// holds once for everyone. With 100, 100 watchers under writes held ~120 MB of copies.
	watchBuffer = 10
	// watchBatch is the most changes a watcher takes from the window or the log at once.
	watchBatch = 500
	// DefaultBookmarkInterval is how often a watcher that allows bookmarks gets one: every
	// minute, as the kube-apiserver's watch cache (defaultBookmarkFrequency), and also about two
	// seconds before the watch's deadline, as the cacher does, so a client that re-watches
	// resumes from a recent revision.
	DefaultBookmarkInterval = time.Minute
	// DefaultSlowWatcherTimeout is how long a watcher may wait for its consumer to take an event
	// from a full buffer before it is closed. A waiting watcher holds up nobody else (it pulls
	// its changes from the follower's window or the log at its own pace), so this can be more
	// patient than the cacher, whose dispatcher waits for every watcher: 30s rides out GC pauses,
	// slow networks and a client busy with a burst; a consumer gone for longer is closed and its
	// client re-watches from its last resourceVersion, well within the retained history.
	DefaultSlowWatcherTimeout = 30 * time.Second
	// bookmarkBeforeDeadline is how long before the watch's deadline the last bookmark goes out.
	bookmarkBeforeDeadline = 2 * time.Second
)

// errWatchStopped ends a watcher without an error event: its context ended or its consumer was
// too slow.
var errWatchStopped = errors.New("watch stopped")

// Watch implements storage.Interface. The change log is the source of truth: a watcher delivers
// every change after its revision in revision order. Revisions are gapless and commit-ordered
// (see Writer), so "everything committed up to the current revision" never misses an event that
// commits later with a smaller revision. The changes come from the process's Follower, which
// reads each of them once for every watcher; a watcher that fell behind its memory window reads
// the log itself.
func (s *Store) Watch(ctx context.Context, key string, opts storage.ListOptions) (watch.Interface, error) {
	key, err := s.prepareKey(key, opts.Recursive)
	if err != nil {
		return nil, err
	}
	rev, err := s.versioner.ParseResourceVersion(opts.ResourceVersion)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid resource version: %v", err))
	}
	from, before := key, prefixEnd(key)
	if !opts.Recursive {
		before = nextKey(key)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{
		s: s, ctx: ctx, cancel: cancel,
		from: from, before: before,
		pred:         opts.Predicate,
		filter:       translate(opts.Predicate),
		startRV:      int64(rev),
		initial:      (opts.SendInitialEvents == nil && rev == 0) || (opts.SendInitialEvents != nil && *opts.SendInitialEvents),
		initialEnd:   opts.SendInitialEvents != nil && *opts.SendInitialEvents && opts.Predicate.AllowWatchBookmarks,
		storedJSON:   storedJSON(ctx),
		metadataOnly: shapeFor(ctx, true) == readMetadata && metadataPredicate(opts.Predicate),
		result:       make(chan watch.Event, watchBuffer),
		done:         make(chan struct{}),
	}
	// Subscribe before the start revision is known, so nothing committed after it goes unseen.
	w.sub = s.follower.acquire(from, before, hintFor(opts.Predicate))
	if !w.initial && w.startRV == 0 {
		// "From now": now is when Watch is called, as with etcd, so a write that follows the
		// call is an event, however late the watcher's goroutine starts. A watch request has no
		// deadline, so this read gets its own: a database that hangs gets the client a 503, not
		// a request that never answers.
		readCtx, cancelRead := context.WithTimeout(ctx, watchStartReadTimeout)
		cur, err := s.rev.read(readCtx, s.pool)
		cancelRead()
		if err != nil {
			s.follower.release(w.sub)
			cancel()
			return nil, s.dbError(from, "watch", db.NoRows(err))
		}
		s.observeCompacted(cur.Compacted)
		w.startRV, w.fromCurrent = cur.Current, true
	}
	go w.run()
	return w, nil
}

// watchStartReadTimeout bounds the revision read that opens a watch "from now".
const watchStartReadTimeout = 10 * time.Second

type watcher struct {
	s          *Store
	ctx        context.Context
	cancel     context.CancelFunc
	from       string
	before     string
	pred       storage.SelectionPredicate
	filter     sqlFilter
	startRV    int64
	initial    bool
	initialEnd bool
	// storedJSON: the watch's events are encoded as plain JSON (WithStoredJSON).
	storedJSON bool
	// metadataOnly: the watch's events become PartialObjectMetadata (WithMetadataOnly) and its
	// predicate reads nothing but metadata, so changes are decoded as far as their metadata.
	metadataOnly bool
	// fromCurrent: startRV is the revision current when Watch was called.
	fromCurrent bool
	result      chan watch.Event
	done        chan struct{}
	sub         *subscription
}

func (w *watcher) ResultChan() <-chan watch.Event { return w.result }

func (w *watcher) Stop() {
	w.cancel()
	<-w.done
}

func (w *watcher) run() {
	defer close(w.done)
	defer close(w.result)
	defer w.cancel()
	defer w.s.follower.release(w.sub)
	rev, err := w.start()
	if err != nil {
		if !errors.Is(err, errWatchStopped) {
			w.sendError(err)
		}
		return
	}
	var bookmarks <-chan time.Time
	var timer *time.Timer
	if w.pred.AllowWatchBookmarks {
		timer = time.NewTimer(w.nextBookmark())
		defer timer.Stop()
		bookmarks = timer.C
	}
	for {
		rev, err = w.follow(rev, bookmarks)
		if errors.Is(err, errBookmarkDue) {
			if !w.send(watch.Event{Type: watch.Bookmark, Object: w.bookmark(rev, false)}) {
				return
			}
			timer.Reset(w.nextBookmark())
			continue
		}
		if err != nil && !errors.Is(err, errWatchStopped) {
			w.sendError(err)
		}
		return
	}
}

// errBookmarkDue interrupts follow when a bookmark is due; follow returns the revision it carries.
var errBookmarkDue = errors.New("bookmark due")

// follow delivers changes after rev as they come, until the watch ends, fails, or (with
// bookmarks non-nil) a bookmark is due; it returns errBookmarkDue once the watcher has caught up,
// with the revision it has delivered everything up to.
func (w *watcher) follow(rev int64, bookmarks <-chan time.Time) (int64, error) {
	bookmarkDue := false
	for {
		next, err := w.deliver(rev)
		if err != nil {
			return rev, err
		}
		rev = next
		if _, compacted := w.s.follower.state(); rev < compacted {
			return rev, expired(rev, compacted)
		}
		if bookmarkDue && !w.sub.pending.Load() {
			return rev, errBookmarkDue
		}
		select {
		case <-w.ctx.Done():
			return rev, errWatchStopped
		case <-w.s.follower.closed:
			return rev, errWatchStopped
		case <-w.sub.wake:
		case <-bookmarks:
			bookmarkDue = true
		}
	}
}

// nextBookmark is the time to the next periodic bookmark, or to the one just before the watch's
// deadline when that comes first.
func (w *watcher) nextBookmark() time.Duration {
	next := w.s.bookmarkInterval
	if deadline, ok := w.ctx.Deadline(); ok {
		if last := time.Until(deadline) - bookmarkBeforeDeadline; last > 0 && last < next {
			next = last
		}
	}
	return next
}

func expired(rev, compacted int64) error {
	return apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", rev, compacted))
}

// start sends the initial state when asked for it and returns the revision to follow from.
func (w *watcher) start() (int64, error) {
	s := w.s
	if !w.initial {
		if w.fromCurrent {
			utilflowcontrol.WatchInitialized(w.ctx)
			return w.startRV, nil
		}
		cur, err := s.rev.read(w.ctx, s.pool)
		if err != nil {
			return 0, s.dbError(w.from, "watch", db.NoRows(err))
		}
		s.observeCompacted(cur.Compacted)
		if w.startRV < cur.Compacted {
			return 0, expired(w.startRV, cur.Compacted)
		}
		utilflowcontrol.WatchInitialized(w.ctx)
		return w.startRV, nil
	}
	cur, err := s.rev.read(w.ctx, s.pool)
	if err != nil {
		return 0, s.dbError(w.from, "watch", db.NoRows(err))
	}
	rev := cur.Current
	if w.startRV > rev {
		return 0, storage.NewTooLargeResourceVersionError(uint64(w.startRV), uint64(rev), 0)
	}
	// The initial state is streamed a page at a time, every page read as of rev: an informer's
	// first watch over a million reports must not hold them all in memory, nor keep one
	// transaction open while a slow client reads.
	pages, stop := w.initialPages(rev)
	defer stop()
	for p := range pages {
		if p.err != nil {
			return 0, s.dbError(w.from, "watch", p.err)
		}
		for _, x := range p.rows {
			obj, err := w.initialObject(x)
			if err != nil {
				return 0, err
			}
			if obj == nil {
				continue
			}
			if !w.send(watch.Event{Type: watch.Added, Object: obj}) {
				return 0, errWatchStopped
			}
		}
	}
	if w.initialEnd {
		if !w.send(watch.Event{Type: watch.Bookmark, Object: w.bookmark(rev, true)}) {
			return 0, errWatchStopped
		}
	}
	utilflowcontrol.WatchInitialized(w.ctx)
	return rev, nil
}

// initialObject is the object of an initial event for row x, or nil when the predicate (where
// SQL could not apply all of it) does not match. For a plain JSON watch whose selection SQL did
// all of, it is the stored JSON in a hollow storedjson.Object: sent once, never decoded; for a
// metadata-only watch, the stored metadata, likewise (a plain JSON event of PartialObjectMetadata
// is written around it, any other encoding decodes it).
func (w *watcher) initialObject(x row) (runtime.Object, error) {
	s := w.s
	if w.storedJSON && w.filter.complete {
		data, err := s.rowBytes(x)
		if err != nil {
			return nil, err
		}
		return storedjson.NewHollow(s.hollowItem(s.newFunc), data, s.encodings, s.decodeJSON), nil
	}
	if shapeFor(w.ctx, w.filter.complete) == readMetadata {
		// The row is the object's metadata alone (pageAt reads that shape only when SQL does all
		// the selecting).
		meta, err := rowMetadata(x)
		if err != nil {
			return nil, err
		}
		return storedjson.NewMetadata(s.hollowItem(s.newFunc), meta, s.encodings, decodeMetadataInto), nil
	}
	return s.decodeMatching(x, s.newFunc, w.pred, w.filter.complete)
}

// page is one page of the initial state, or the error that ended the reading.
type page struct {
	rows []row
	err  error
}

// initialPages reads the state as of rev in pages, one page ahead of the watcher: the next page
// is read from PostgreSQL while the watcher decodes and sends the current one, so the two
// overlap instead of alternating. At most three pages are held: the one being sent, one waiting
// and one being read. stop ends the reading.
func (w *watcher) initialPages(rev int64) (<-chan page, func()) {
	ctx, stop := context.WithCancel(w.ctx)
	pages := make(chan page, 1)
	go func() {
		defer close(pages)
		from := w.from
		for {
			rows, err := w.s.pageAt(ctx, rev, w.filter, from, w.before, initialEventsPage)
			select {
			case pages <- page{rows: rows, err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil || len(rows) < initialEventsPage {
				return
			}
			from = nextKey(rows[len(rows)-1].key)
		}
	}()
	return pages, stop
}

// deliver sends the next changes after rev, from the follower's window or, when the watcher
// has fallen behind it, from the change log, and returns the revision delivered up to.
func (w *watcher) deliver(rev int64) (int64, error) {
	changes, upto, ok := w.s.follower.read(w.sub, rev, watchBatch)
	if !ok {
		var err error
		rev = upto // what the watcher has taken, maybe more than it knew (idle)
		if changes, upto, err = w.readLog(rev); err != nil {
			return rev, err
		}
	}
	for _, c := range changes {
		ev, ok, err := w.event(c)
		if err != nil {
			return rev, err
		}
		if ok && !w.send(ev) {
			return rev, errWatchStopped
		}
		rev = c.rev
	}
	return upto, nil
}

// readLog reads this watcher's next changes after rev from the change log, in one snapshot with
// the revisions: the rows are complete up to the returned revision unless a compaction removed
// some, which the compacted revision of the same snapshot tells (410).
func (w *watcher) readLog(rev int64) ([]*change, int64, error) {
	s := w.s
	s.follower.logReads.Add(1)
	rows, err := s.q.ReadChanges(w.ctx, s.pool, sqlc.ReadChangesParams{
		Cluster: s.cluster, AfterRevision: rev, KeyFrom: pgtype.Text{String: w.from, Valid: true}, KeyBefore: pgtype.Text{String: w.before, Valid: true}, RowLimit: watchBatch,
	})
	if err != nil {
		if w.ctx.Err() != nil {
			return nil, rev, errWatchStopped
		}
		return nil, rev, s.dbError(w.from, "watch", err)
	}
	if len(rows) == 0 {
		return nil, rev, s.dbError(w.from, "watch", fmt.Errorf("cluster %q is not registered", s.cluster))
	}
	current, compacted := rows[0].Current, rows[0].Compacted
	s.follower.observeCompacted(compacted)
	if rev < compacted {
		return nil, rev, expired(rev, compacted)
	}
	out := make([]*change, 0, len(rows))
	for _, r := range rows {
		if r.ResourceVersion != 0 {
			out = append(out, newChange(r))
		}
	}
	if len(out) == watchBatch {
		w.sub.signal() // more may follow: come back at once
		return out, out[len(out)-1].rev, nil
	}
	return out, current, nil
}

// event turns a change into the event this watcher's predicate sees: an object that starts or
// stops matching is ADDED or DELETED, as the API server's watch does.
func (w *watcher) event(c *change) (watch.Event, bool, error) {
	d, shared := c.decoded(w.s, w.metadataOnly)
	if d.err != nil {
		return watch.Event{}, false, d.err
	}
	curOK := d.cur != nil && w.matches(d.cur, d.curAttrs)
	prevOK := d.prev != nil && w.matches(d.prev, d.prevAttrs)
	var ev watch.Event
	switch {
	case curOK && prevOK:
		ev = watch.Event{Type: watch.Modified, Object: d.cur}
	case curOK:
		ev = watch.Event{Type: watch.Added, Object: d.cur}
	case prevOK:
		ev = watch.Event{Type: watch.Deleted, Object: d.prev}
	default:
		return watch.Event{}, false, nil
	}
	if w.storedJSON {
		// The consumer gets the shared object with its stored JSON: it encodes as those bytes,
		// and anything that needs the typed object gets a copy (storedjson.Object).
		cur, prev, err := w.s.storedChange(c, d)
		if err != nil {
			return watch.Event{}, false, err
		}
		data := cur
		if ev.Type == watch.Deleted {
			data = prev
		}
		ev.Object = storedjson.NewShared(ev.Object, data, w.s.encodings)
		return ev, true, nil
	}
	if shared {
		// Other watchers hold the same object; the consumer gets its own.
		ev.Object = ev.Object.DeepCopyObject()
	}
	return ev, true, nil
}

// storedChange returns the stored JSON of a change's objects (see decodedChange), made once.
func (s *Store) storedChange(c *change, d *decodedChange) (cur, prev []byte, err error) {
	d.storedOnce.Do(func() {
		if c.object != nil {
			d.curStored, d.storedErr = s.storedBytes(c.object, c.rev)
		}
		if c.prevObject != nil && d.storedErr == nil {
			d.prevStored, d.storedErr = s.storedBytes(c.prevObject, c.rev)
		}
	})
	return d.curStored, d.prevStored, d.storedErr
}

// decodeChange decodes a change's objects into d, whole or their metadata alone. Both carry the
// change's revision: a deleted object carries the deletion's revision, as with etcd.
func (s *Store) decodeChange(c *change, d *decodedChange, metadataOnly bool) {
	d.cur, d.curAttrs, d.err = s.decodeWithAttrs(c.object, c.rev, metadataOnly)
	if d.err == nil {
		d.prev, d.prevAttrs, d.err = s.decodeWithAttrs(c.prevObject, c.rev, metadataOnly)
	}
}

func (s *Store) decodeWithAttrs(data []byte, rev int64, metadataOnly bool) (runtime.Object, *attrs, error) {
	if data == nil {
		return nil, nil, nil
	}
	var obj runtime.Object
	var err error
	if metadataOnly {
		obj, err = s.decodeMetadata(data, rev)
	} else {
		obj = s.newFunc()
		err = s.decode(data, obj, rev)
	}
	if err != nil {
		return nil, nil, err
	}
	if s.getAttrs == nil {
		return obj, nil, nil
	}
	l, f, err := s.getAttrs(obj)
	if err != nil {
		return obj, nil, nil // matched through the predicate, which reports the error
	}
	return obj, &attrs{labels: l, fields: f}, nil
}

// matches evaluates the watcher's predicate, on precomputed attributes when there are some:
// with many watchers of one resource, computing them per watcher is what costs.
func (w *watcher) matches(obj runtime.Object, a *attrs) bool {
	if w.pred.Empty() {
		return true
	}
	if a != nil {
		return w.pred.MatchesObjectAttributes(a.labels, a.fields)
	}
	ok, err := w.pred.Matches(obj)
	return err == nil && ok
}

func (w *watcher) bookmark(rev int64, initialEventsEnd bool) runtime.Object {
	obj := w.s.newFunc()
	_ = w.s.versioner.UpdateObject(obj, uint64(rev))
	if initialEventsEnd {
		if m, err := meta.Accessor(obj); err == nil {
			m.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
		}
	}
	return obj
}

// send hands ev to the consumer. It gives up when the watch ends, or when the consumer has
// not taken an event from the full buffer for the slow-watcher timeout: the watcher is then
// closed, and its client re-watches from the last resourceVersion it saw.
func (w *watcher) send(ev watch.Event) bool {
	select {
	case w.result <- ev:
		return true
	case <-w.ctx.Done():
		return false
	default:
	}
	var timeout <-chan time.Time
	if d := w.s.slowWatcherTimeout; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case w.result <- ev:
		return true
	case <-w.ctx.Done():
		return false
	case <-timeout:
		w.s.follower.dropped.Add(1)
		w.s.follower.log.Info("watch: closing a watcher whose consumer stopped reading",
			"cluster", w.s.cluster, "key", w.from, "timeout", w.s.slowWatcherTimeout)
		return false
	}
}

func (w *watcher) sendError(err error) {
	if w.ctx.Err() != nil {
		return
	}
	status := apierrors.NewInternalError(err).ErrStatus
	if se, ok := err.(apierrors.APIStatus); ok {
		status = se.Status()
	}
	w.send(watch.Event{Type: watch.Error, Object: &status})
}
