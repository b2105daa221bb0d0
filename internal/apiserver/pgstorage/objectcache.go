package pgstorage

import (
	"sync"
	"sync/atomic"
)

// Objects and metadata read by lists are kept in memory, by key and revision.
//
// PostgreSQL prints each jsonb object it returns: for a report of 20 results about 60 µs, most of
// what a full list costs the database, paid again on every list of the same unchanged object;
// a metadata-only page of 500 costs it ~2 ms to build and print the metadata, against ~0.4 ms for
// the keys and revisions alone. kube-apiserver's watch cache serves lists from memory. An
// object's revision names its content: every write takes a revision of its own, and a revision
// that is seen was committed (a rolled-back write's revision is taken again by another write,
// but nobody read it). So the stored JSON of (cluster, key, revision), once read, never changes,
// nor does its metadata, and a list that finds them here need not read them again: its query
// returns keys and revisions (readRevision), and only the objects not kept here are read, in the
// same snapshot: by key when they are few, else by reading the page again whole (a first read,
// or a list larger than the cache), which costs less than hundreds of lookups by key and drops
// nothing the cache holds (see add).
//
// Nothing is ever stale: a newer revision of a key is a miss (and replaces the kept one), a
// deleted key is never listed. The memory is bounded; past the bound, entries are dropped at
// random (Go's map order), which keeps a share of a list larger than the bound hot, where
// dropping the least recently used would keep none of a list read over and over in order.
// After the database is restored from a backup, revisions may be reused for other content:
// restart the servers then, as kube-apiserver must be restarted after etcd is restored
// (docs/operations.md).

// DefaultObjectCacheBytes is how much an ObjectCache keeps by default: about 5,000 reports of 20
// results, or the metadata of 60,000 reports.
const DefaultObjectCacheBytes = 64 << 20

// objectCacheMaxShare: an object larger than the cache's bound over this is never kept, so one
// huge report cannot push out hundreds of others.
const objectCacheMaxShare = 64

// ObjectCache keeps the objects and the metadata lists have read, for the lists of every store
// of a process. Share one per process. Safe for concurrent use; a nil *ObjectCache keeps
// nothing.
type ObjectCache struct {
	maxBytes int64

	mu      sync.Mutex
	bytes   int64
	entries map[objectCacheKey]cachedObject

	hits, misses atomic.Int64
}

type objectCacheKey struct{ cluster, key string }

// cachedObject is what the cache keeps of one object at one revision: the object as clients
// receive it, its metadata object as metadata-only clients receive it (row.sent: both made once,
// not on every list), or both. The bytes are shared by every reader and never written to.
type cachedObject struct {
	rev      int64
	object   []byte
	metadata []byte
}

// part is where e keeps what a read of shape reads.
func (e *cachedObject) part(shape readShape) *[]byte {
	if shape == readMetadata {
		return &e.metadata
	}
	return &e.object
}

func (e cachedObject) size() int64 { return int64(len(e.object) + len(e.metadata)) }

// cacheable says whether reads of shape go through the cache: whole objects and metadata, what
// lists, watch-lists and informers read over and over.
func cacheable(shape readShape) bool { return shape == readObject || shape == readMetadata }

// NewObjectCache returns a cache that keeps at most maxBytes of objects and metadata; nil when
// maxBytes is not positive (no cache).
func NewObjectCache(maxBytes int64) *ObjectCache {
	if maxBytes <= 0 {
		return nil
	}
	return &ObjectCache{maxBytes: maxBytes, entries: map[objectCacheKey]cachedObject{}}
}

// ObjectCacheStats counts the objects lists found in the cache (Hits) and read from the
// database (Misses), and the stored bytes kept now.
type ObjectCacheStats struct {
	Hits, Misses, Bytes int64
}

// Stats returns the counters so far.
func (c *ObjectCache) Stats() ObjectCacheStats {
	if c == nil {
		return ObjectCacheStats{}
	}
	c.mu.Lock()
	n := c.bytes
	c.mu.Unlock()
	return ObjectCacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Bytes: n}
}

// fill sets the data of each row that the cache holds at the row's revision in shape, and
// returns the indexes of the others.
func (c *ObjectCache) fill(cluster string, shape readShape, rows []row) (missing []int) {
	c.mu.Lock()
	for i := range rows {
		e, ok := c.entries[objectCacheKey{cluster, rows[i].key}]
		if data := *e.part(shape); ok && e.rev == rows[i].rev && data != nil {
			rows[i].data, rows[i].sent = data, true
			continue
		}
		missing = append(missing, i)
	}
	c.mu.Unlock()
	c.hits.Add(int64(len(rows) - len(missing)))
	c.misses.Add(int64(len(missing)))
	return missing
}

// add keeps the data of the rows, read in shape (in the form clients receive, see
// row.sent), each at its revision, unless an entry of a newer revision is kept already. An entry
// of the same revision gains the shape's part.
//
// evict says whether other entries may be dropped to make room. Pages found mostly missing do
// not evict: such pages are a first read, or a list larger than the cache, where every object
// kept pushes out another one the same list is as likely to read, and a metadata informer over
// a million reports would turn the whole cache over on every page for a hit rate no better
// than keeping what it holds. An entry of an older revision of the same key is still replaced
// (a rewritten report takes its old one's place), so a list of reports rescanned since it was
// kept warms up again.
func (c *ObjectCache) add(cluster string, shape readShape, rows []row, evict bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range rows {
		if len(r.data) == 0 {
			continue
		}
		k := objectCacheKey{cluster, r.key}
		e, ok := c.entries[k]
		switch {
		case ok && e.rev > r.rev, ok && e.rev == r.rev && *e.part(shape) != nil:
			continue
		case ok && e.rev < r.rev:
			e = cachedObject{}
		}
		*e.part(shape) = r.data
		e.rev = r.rev
		size := e.size()
		if size > c.maxBytes/objectCacheMaxShare {
			continue
		}
		var old int64
		if ok {
			old = c.entries[k].size()
		}
		if !evict && c.bytes-old+size > c.maxBytes {
			continue
		}
		if ok {
			// Taken out while room is made, so the entry being grown is not what goes.
			c.bytes -= old
			delete(c.entries, k)
		}
		if evict {
			c.makeRoomLocked(size)
		}
		c.entries[k] = e
		c.bytes += size
	}
}

// makeRoomLocked drops entries at random until size more bytes fit.
func (c *ObjectCache) makeRoomLocked(size int64) {
	for k, e := range c.entries {
		if c.bytes+size <= c.maxBytes {
			return
		}
		c.bytes -= e.size()
		delete(c.entries, k)
	}
}
