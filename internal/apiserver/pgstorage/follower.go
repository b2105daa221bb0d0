package pgstorage

import (
	"context"
	"encoding/json"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apiserver/pkg/storage"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/sqlc"
	"github.com/reports-server/reports-server/internal/metrics"
)

// Defaults of the follower's memory window.
const (
	// DefaultWindowEvents and DefaultWindowBytes bound the recent changes a follower keeps in
	// memory for its watchers. A change of a 20-result report is ~24 KB (new and replaced
	// object), so the byte bound is the one that usually applies: about 1,300 changes, seconds
	// of writes, which is what watchers that are "slightly behind" need. Watchers further behind
	// read the change log. The window is live heap, which the garbage collector lets grow to
	// about twice its size between collections: at 64 MiB it alone took a replica's RSS past
	// 300 MB under 16 writers of such reports (docs/benchmarks.md).
	DefaultWindowEvents = 10_000
	DefaultWindowBytes  = 32 << 20
	// DefaultFollowerPoll is the safety-net poll when FollowerOptions.PollInterval is unset.
	DefaultFollowerPoll = time.Second
	// followerBatch is the most change rows one follower read returns.
	followerBatch = 1000
	// changeOverhead approximates the memory of a window entry beyond its bytes.
	changeOverhead = 128
	// sharedDecodeEntries is how many of the newest window entries keep their decoded objects
	// for every watcher of the same resource to share (older ones are decoded by each watcher
	// that still needs them, which only watchers behind do). A decoded 20-result report with its
	// replaced version and their stored JSON is ~100 KB: 256 entries are ~25 MB.
	sharedDecodeEntries = 256
)

// FollowerOptions tune a Follower. Zero values take the defaults.
type FollowerOptions struct {
	// Notifier wakes the follower when a write commits (any process). nil: poll only.
	Notifier *db.Notifier
	// PollInterval is the safety-net poll: notifications are only a wake-up, lost while the
	// LISTEN connection is down; the change log is the truth.
	PollInterval time.Duration
	// WindowEvents and WindowBytes bound the memory window of recent changes (both apply).
	WindowEvents int
	WindowBytes  int64
	Log          *slog.Logger
}

// change is one change-log entry, as the follower keeps it and watchers read it. Its bytes are
// never modified after it is made, so every watcher shares the same one; decoding happens in the
// watchers, whose codecs differ per resource, once per resource while the entry is recent
// (shared; see decoded).
type change struct {
	rev        int64
	key        string
	object     []byte // nil for a deletion
	prevObject []byte // nil for a creation
	shared     atomic.Pointer[decodeCache]
	// labels and prevLabels are the objects' metadata.labels as JSON (nil: none), parsed on
	// first use into labelSets by the follower, under its lock, to wake only the watchers whose
	// selector they can satisfy.
	labels, prevLabels []byte
	labelSets          *[2]map[string]string
}

// decodeCache holds a recent change's objects decoded by each resource's store.
type decodeCache struct {
	mu      sync.Mutex
	byStore map[*Store]*decodedChange
	// metadataByStore holds the metadata-only decodings, for watchers of metadata.
	metadataByStore map[*Store]*decodedChange
}

type decodedChange struct {
	once      sync.Once
	cur, prev runtime.Object
	// Labels and selectable fields of cur and prev, computed once for every watcher of the
	// resource (as the API server's watch cache does) when the store knows its attribute function.
	curAttrs, prevAttrs *attrs
	err                 error

	// The objects' stored JSON, for watchers of plain JSON (WithStoredJSON); made once, by the
	// first such watcher (storedJSON).
	storedOnce            sync.Once
	curStored, prevStored []byte
	storedErr             error
}

type attrs struct {
	labels labels.Set
	fields fields.Set
}

// decoded returns the change's new and replaced objects as s decodes them: whole, or, with
// metadataOnly, their metadata alone (see Store.decodeMetadata). shared objects are also handed
// to s's other watchers and must not be modified: copy before handing one out.
func (c *change) decoded(s *Store, metadataOnly bool) (d *decodedChange, shared bool) {
	decode := func(d *decodedChange) { s.decodeChange(c, d, metadataOnly) }
	cache := c.shared.Load()
	if cache == nil {
		d = &decodedChange{}
		decode(d)
		return d, false
	}
	cache.mu.Lock()
	entries := cache.byStore
	if metadataOnly {
		entries = cache.metadataByStore
	}
	d = entries[s]
	if d == nil {
		d = &decodedChange{}
		entries[s] = d
	}
	cache.mu.Unlock()
	d.once.Do(func() { decode(d) })
	return d, true
}

// newChange is the change of one ReadChanges row.
func newChange(r sqlc.ReadChangesRow) *change {
	return &change{rev: r.ResourceVersion, key: r.Key, object: r.Object, prevObject: r.PrevObject, labels: r.Labels, prevLabels: r.PrevLabels}
}

func (c *change) size() int64 {
	return int64(len(c.key)+len(c.object)+len(c.prevObject)+len(c.labels)+len(c.prevLabels)) + changeOverhead
}

// labelMaps returns the labels of the new and the replaced object (nil maps when absent). Labels
// that do not parse as a string map yield nil, which wakes every candidate: never fewer.
func (c *change) labelMaps() (cur, prev map[string]string, ok bool) {
	if c.labelSets == nil {
		var sets [2]map[string]string
		ok := true
		for i, raw := range [][]byte{c.labels, c.prevLabels} {
			if len(raw) > 0 && json.Unmarshal(raw, &sets[i]) != nil {
				ok = false
			}
		}
		if !ok {
			return nil, nil, false
		}
		c.labelSets = &sets
	}
	return c.labelSets[0], c.labelSets[1], true
}

// Follower is the watch fan-out of one cluster in one process. It reads every new change of
// the cluster once, in batches (all keys, (last, current]), and keeps the recent ones in a
// memory window bounded by count and bytes. Watchers (one goroutine each) take their changes
// from the window, filtering by predicate themselves; so N watchers cost no queries, and a
// watcher that does not read never holds up the follower or the other watchers. A watcher that
// has fallen behind the window reads the change log itself (the log is the truth; see
// watcher.deliver).
//
// Watchers subscribe with their key range, and the follower wakes only those with a new change
// in range: an idle watcher (nothing in its range) is never woken, and when it next looks (a
// bookmark is due), "nothing in range since you last read" lets it jump to the current revision
// without a scan, even if its old revision has left the window.
//
// It is woken by NOTIFY (through a db.Notifier, when there is one) and polls as a safety net.
// It only runs while somebody watches: a process without watchers sends no queries and keeps
// no window.
type Follower struct {
	pool         *pgxpool.Pool
	q            *db.Queries
	cluster      string
	notifier     *db.Notifier
	poll         time.Duration
	windowEvents int
	windowBytes  int64
	batch        int32
	log          *slog.Logger

	mu sync.RWMutex
	// Every committed change with a revision in (start, current] is in window, oldest first.
	current   int64
	compacted int64
	start     int64
	window    []*change
	bytes     int64
	subs      map[*subscription]struct{}
	// The same subscriptions, indexed for wake-ups: those whose selector requires a label are
	// found through the labels of a change (see labelHint); the others are in plain.
	plain   map[*subscription]struct{}
	byLabel map[string]*labelIndex
	stop    context.CancelFunc
	epoch   uint64 // which run may fill the window (a stopped run may still be finishing a read)
	// closed is closed by Close: the process is done with the database, so no run starts again
	// and every watcher ends (see Close).
	closed    chan struct{}
	closeOnce sync.Once

	// Counters, for tests and metrics.
	followerReads atomic.Int64 // change-log reads by the follower
	logReads      atomic.Int64 // change-log reads by watchers that fell behind the window
	dropped       atomic.Int64 // watchers closed because their consumer stopped reading
	wakeups       atomic.Int64 // watchers woken because a new change may concern them
	notified      atomic.Int64 // the newest revision of the cluster a notification announced
}

// NewFollower returns the follower of cluster. Share one per process and cluster.
func NewFollower(pool *pgxpool.Pool, cluster string, opts FollowerOptions) *Follower {
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultFollowerPoll
	}
	if opts.WindowEvents <= 0 {
		opts.WindowEvents = DefaultWindowEvents
	}
	if opts.WindowBytes <= 0 {
		opts.WindowBytes = DefaultWindowBytes
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Follower{
		pool: pool, q: db.New(), cluster: cluster, notifier: opts.Notifier, poll: opts.PollInterval,
		windowEvents: opts.WindowEvents, windowBytes: opts.WindowBytes,
		// A read never brings more than a quarter of the window, so the batch watchers are about
		// to read is not evicted by the same read.
		batch: int32(max(1, min(followerBatch, opts.WindowEvents/4))),
		log:   opts.Log, subs: map[*subscription]struct{}{},
		plain: map[*subscription]struct{}{}, byLabel: map[string]*labelIndex{},
		closed: make(chan struct{}),
	}
}

// Close ends the follower for good: it stops reading the change log and ends every watch it
// feeds, as a watch ends when its server stops serving it (the client resumes from its
// resourceVersion elsewhere). The API server calls it when it has stopped serving, before its
// pool closes: a watch that outlived the HTTP shutdown would otherwise keep the follower reading
// from a closed pool, warning on every poll, for as long as the process lives.
func (f *Follower) Close() {
	f.closeOnce.Do(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		close(f.closed)
		if f.stop != nil {
			f.stop()
			f.stop = nil
			f.epoch++
		}
	})
}

// isClosed reports whether Close was called.
func (f *Follower) isClosed() bool {
	select {
	case <-f.closed:
		return true
	default:
		return false
	}
}

// labelHint is one label requirement that every object a watcher's selector matches satisfies:
// the label key, with one of values (or, when values is empty, any value). A change whose new
// and replaced objects both lack it cannot become an event for that watcher (neither matches,
// so there is nothing to add, modify or delete), so the follower need not wake it.
//
// It reads metadata.labels, which is what every registry's attribute function hands to label
// selectors (ObjectMeta labels).
type labelHint struct {
	key    string
	values []string
}

// hintFor picks the most selective requirement of pred's label selector that a label index can
// serve: a value (=, ==, in) before mere existence. nil: wake the watcher for every change in
// its key range.
func hintFor(pred storage.SelectionPredicate) *labelHint {
	if pred.Label == nil || pred.Label.Empty() {
		return nil
	}
	reqs, selectable := pred.Label.Requirements()
	if !selectable {
		return nil
	}
	var hint *labelHint
	for _, r := range reqs {
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			return &labelHint{key: r.Key(), values: r.Values().List()}
		case selection.Exists:
			if hint == nil {
				hint = &labelHint{key: r.Key()}
			}
		}
	}
	return hint
}

// labelIndex holds the subscriptions hinted on one label key.
type labelIndex struct {
	byValue map[string]map[*subscription]struct{}
	any     map[*subscription]struct{} // existence only
}

func (f *Follower) index(sub *subscription) {
	h := sub.hint
	if h == nil {
		f.plain[sub] = struct{}{}
		return
	}
	ix := f.byLabel[h.key]
	if ix == nil {
		ix = &labelIndex{byValue: map[string]map[*subscription]struct{}{}, any: map[*subscription]struct{}{}}
		f.byLabel[h.key] = ix
	}
	if len(h.values) == 0 {
		ix.any[sub] = struct{}{}
		return
	}
	for _, v := range h.values {
		set := ix.byValue[v]
		if set == nil {
			set = map[*subscription]struct{}{}
			ix.byValue[v] = set
		}
		set[sub] = struct{}{}
	}
}

func (f *Follower) unindex(sub *subscription) {
	h := sub.hint
	if h == nil {
		delete(f.plain, sub)
		return
	}
	ix := f.byLabel[h.key]
	if ix == nil {
		return
	}
	delete(ix.any, sub)
	for _, v := range h.values {
		if set := ix.byValue[v]; set != nil {
			delete(set, sub)
			if len(set) == 0 {
				delete(ix.byValue, v)
			}
		}
	}
	if len(ix.any) == 0 && len(ix.byValue) == 0 {
		delete(f.byLabel, h.key)
	}
}

// candidates calls fn for every subscription that c may concern, plain ones first; a
// subscription may be passed more than once. The caller still checks the key range.
func (f *Follower) candidates(c *change, fn func(*subscription)) {
	for s := range f.plain {
		fn(s)
	}
	if len(f.byLabel) == 0 {
		return
	}
	cur, prev, ok := c.labelMaps()
	if !ok {
		for _, ix := range f.byLabel {
			for s := range ix.any {
				fn(s)
			}
			for _, set := range ix.byValue {
				for s := range set {
					fn(s)
				}
			}
		}
		return
	}
	for _, labels := range []map[string]string{cur, prev} {
		// Iterate the smaller side: objects carry a handful of labels, the index a handful of keys.
		if len(labels) <= len(f.byLabel) {
			for k, v := range labels {
				f.byLabel[k].visit(v, fn)
			}
		} else {
			for k, ix := range f.byLabel {
				if v, has := labels[k]; has {
					ix.visit(v, fn)
				}
			}
		}
	}
}

func (ix *labelIndex) visit(value string, fn func(*subscription)) {
	if ix == nil {
		return
	}
	for s := range ix.any {
		fn(s)
	}
	for s := range ix.byValue[value] {
		fn(s)
	}
}

// subscription is one watcher's registration with the follower.
type subscription struct {
	from, before string
	hint         *labelHint // nil: every change in range concerns it
	// pending is set when a change in [from, before) may not have been read yet: by the
	// follower when it adds one (or loses the window), by read when it stops early. read
	// clears it, under the follower's lock, as it looks.
	pending atomic.Bool
	// seen is a revision up to which the watcher has taken every change in range: when the
	// follower adds a change in range while the subscription is not pending, everything before
	// that change has been taken. It lets an idle watcher, whose own revision is old because
	// nothing woke it, resume from there instead of from before the window (or compaction).
	// Guarded by the follower's mutex.
	seen int64
	wake chan struct{} // capacity 1: a wake-up is never lost, never blocks the follower
}

// signal marks the subscription pending and wakes its watcher.
func (s *subscription) signal() {
	s.pending.Store(true)
	s.poke()
}

// poke wakes the watcher to look at the revisions (compaction) without marking it pending.
func (s *subscription) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscription) covers(key string) bool { return key >= s.from && key < s.before }

// state returns the newest revisions seen.
func (f *Follower) state() (current, compacted int64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.current, f.compacted
}

// WatchStats is the follower's state for the metrics: open watchers by resource (the resource part
// of their key range, /<group>/<resource>/…) and how far the window is behind the newest
// revision notified (0 while nobody watches: the follower then reads nothing).
func (f *Follower) WatchStats() metrics.WatchStats {
	f.mu.RLock()
	defer f.mu.RUnlock()
	st := metrics.WatchStats{Watchers: map[string]int{}}
	for s := range f.subs {
		resource := ""
		if parts := strings.SplitN(s.from, "/", 4); len(parts) >= 3 {
			resource = parts[2]
		}
		st.Watchers[resource]++
	}
	if len(f.subs) > 0 {
		st.LagRevisions = max(0, f.notified.Load()-f.current)
	}
	return st
}

// CompactRevision is the newest compacted revision this process has seen.
func (f *Follower) CompactRevision() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.compacted
}

// observeCompacted records a compacted revision learnt elsewhere (a list, a compaction) and
// wakes the watchers, which may now be expired.
func (f *Follower) observeCompacted(rev int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rev > f.compacted {
		f.compacted = rev
		for s := range f.subs {
			s.poke()
		}
	}
}

// read returns the window's changes in sub's key range after rev, oldest first and at most
// limit, and the revision they cover: every change in range up to upto has been taken. rev must
// be the upto of the subscription's previous read (or its start). ok is false when the window
// no longer holds everything the watcher needs; the caller reads the log after upto.
func (f *Follower) read(sub *subscription, rev int64, limit int) (out []*change, upto int64, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	pending := sub.pending.Swap(false)
	rev = max(rev, sub.seen)
	if rev >= f.current {
		return nil, rev, true
	}
	if !pending {
		// Nothing in range arrived since the previous read, which covered everything up to
		// its upto: the watcher is caught up, wherever the window starts now.
		return nil, f.current, true
	}
	if rev < f.start {
		sub.pending.Store(true) // still to be read, from the log
		return nil, rev, false
	}
	i := sort.Search(len(f.window), func(i int) bool { return f.window[i].rev > rev })
	for _, c := range f.window[i:] {
		if !sub.covers(c.key) {
			continue
		}
		out = append(out, c)
		if len(out) == limit {
			sub.signal() // more may follow: come back at once
			return out, c.rev, true
		}
	}
	return out, f.current, true
}

// acquire registers a watcher of [from, before) with its label hint (nil: none) and starts the
// follower for the first one; release undoes it.
func (f *Follower) acquire(from, before string, hint *labelHint) *subscription {
	f.mu.Lock()
	defer f.mu.Unlock()
	sub := &subscription{from: from, before: before, hint: hint, wake: make(chan struct{}, 1)}
	sub.pending.Store(true) // nothing read yet
	f.subs[sub] = struct{}{}
	f.index(sub)
	if len(f.subs) == 1 && !f.isClosed() {
		ctx, cancel := context.WithCancel(context.Background())
		f.stop = cancel
		f.epoch++
		go f.run(ctx, f.epoch)
	}
	return sub
}

func (f *Follower) release(sub *subscription) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.subs[sub]; !ok {
		return
	}
	delete(f.subs, sub)
	f.unindex(sub)
	if len(f.subs) == 0 && f.stop != nil {
		f.stop()
		f.stop = nil
		f.epoch++
		// Nobody needs the window: free it. It is empty and covers nothing before current.
		f.window, f.bytes, f.start = nil, 0, f.current
	}
}

func (f *Follower) run(ctx context.Context, epoch uint64) {
	var notes <-chan db.Change
	if f.notifier != nil {
		// Subscribe before the first read, so no commit after it goes unnoticed.
		ch, cancel := f.notifier.Subscribe()
		defer cancel()
		notes = ch
	}
	ticker := time.NewTicker(f.poll)
	defer ticker.Stop()
	synced := false
	for {
		if !synced {
			synced = f.resync(ctx, epoch)
		}
		if synced {
			f.catchUp(ctx, epoch)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case c := <-notes:
			// A resync looks whatever it says; another cluster's write, or one already read,
			// needs nothing.
			if !c.Resync {
				if c.Cluster != f.cluster {
					continue
				}
				// The newest announced revision, for the lag metric (a stopped run may still be
				// finishing: keep the maximum).
				for n := f.notified.Load(); c.Revision > n && !f.notified.CompareAndSwap(n, c.Revision); n = f.notified.Load() {
				}
				if cur, _ := f.state(); c.Revision <= cur {
					continue
				}
			}
		}
	}
}

// resync starts a run at the committed revision, with an empty window: whatever happened while
// nobody watched is in the change log, for the watchers that ask for it.
func (f *Follower) resync(ctx context.Context, epoch uint64) bool {
	row, err := newClusterRevision(f.cluster).read(ctx, f.pool)
	if err != nil {
		if ctx.Err() == nil {
			f.log.Warn("watch: cannot read the current revision; retrying", "cluster", f.cluster, "err", err)
		}
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if epoch != f.epoch {
		return false
	}
	if row.Current > f.current {
		f.window, f.bytes = nil, 0
		f.current, f.start = row.Current, row.Current
	}
	f.compacted = max(f.compacted, row.Compacted)
	f.signalAll()
	return true
}

// catchUp reads the changes after current until it has everything committed.
func (f *Follower) catchUp(ctx context.Context, epoch uint64) {
	for ctx.Err() == nil {
		after, _ := f.state()
		f.followerReads.Add(1)
		rows, err := f.q.ReadChanges(ctx, f.pool, sqlc.ReadChangesParams{Cluster: f.cluster, AfterRevision: after, RowLimit: f.batch})
		if err != nil || len(rows) == 0 {
			if ctx.Err() == nil {
				f.log.Warn("watch: cannot read the change log; retrying", "cluster", f.cluster, "err", err)
			}
			return
		}
		if !f.append(epoch, after, rows) {
			return
		}
	}
}

// append adds one read's rows to the window; it reports whether more rows may be waiting.
func (f *Follower) append(epoch uint64, after int64, rows []sqlc.ReadChangesRow) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if epoch != f.epoch || after != f.current {
		return false
	}
	current, compacted := rows[0].Current, rows[0].Compacted
	f.compacted = max(f.compacted, compacted)
	if compacted > after {
		// A compaction removed changes we had not read: the window cannot be complete. Start
		// it again at the current revision; watchers before it read the log (or expire).
		f.window, f.bytes = nil, 0
		f.current, f.start = current, current
		f.signalAll()
		return false
	}
	first := len(f.window)
	for _, r := range rows {
		if r.ResourceVersion == 0 {
			continue // no change in range: the row only carries the revisions
		}
		c := newChange(r)
		c.shared.Store(&decodeCache{byStore: map[*Store]*decodedChange{}, metadataByStore: map[*Store]*decodedChange{}})
		f.window = append(f.window, c)
		f.bytes += c.size()
		f.current = c.rev
	}
	added := f.window[first:]
	// Entries that are no longer among the newest drop their decoded objects.
	for i := max(0, first-sharedDecodeEntries); i < len(f.window)-sharedDecodeEntries; i++ {
		f.window[i].shared.Store(nil)
	}
	more := len(added) == int(f.batch)
	if !more {
		f.current = max(f.current, current)
	}
	// Wake the watchers with something new in range that may concern them; nobody else. The
	// changes go oldest first, so a watcher's first concerning change is the one that dates seen.
	woken := map[*subscription]struct{}{}
	for _, c := range added {
		f.candidates(c, func(s *subscription) {
			if _, done := woken[s]; done || !s.covers(c.key) {
				return
			}
			woken[s] = struct{}{}
			f.wakeups.Add(1)
			if !s.pending.Load() {
				s.seen = max(s.seen, c.rev-1)
			}
			s.signal()
		})
	}
	f.evict()
	return more
}

// evict drops the oldest changes until the window is within its bounds.
func (f *Follower) evict() {
	i := 0
	for i < len(f.window) && (len(f.window)-i > f.windowEvents || f.bytes > f.windowBytes) {
		c := f.window[i]
		f.bytes -= c.size()
		f.start = c.rev
		f.window[i] = nil // let the entry go once no watcher holds it
		i++
	}
	if i > 0 {
		f.window = f.window[i:]
	}
}

// signalAll makes every watcher look again, at the window or the log.
func (f *Follower) signalAll() {
	for s := range f.subs {
		s.signal()
	}
}
