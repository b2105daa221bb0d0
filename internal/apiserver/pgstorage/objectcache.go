package pgstorage

import (
	"sync"
	"sync/atomic"
)

// Full objects read by lists are kept in memory, by key and revision.
//
// PostgreSQL prints each jsonb object it returns: for a report of 20 results about 60 µs, most of
// what a full list costs the database, paid again on every list of the same unchanged object.
// kube-apiserver's watch cache serves lists from memory. An object's revision names its
// content: every write takes a revision of its own, and a revision that is seen was committed
// (a rolled-back write's revision is taken again by another write, but nobody read it). So
// the stored JSON of (cluster, key, revision), once read, never changes, and a list that
// finds it here need not read it again: its query returns keys and revisions (readRevision),
// and only the objects not kept here are read, in the same snapshot, by key.
//
// Nothing is ever stale: a newer revision of a key is a miss (and replaces the kept one), a
// deleted key is never listed. The memory is bounded; past the bound, entries are dropped at
// random (Go's map order), which keeps a share of a list larger than the bound hot, where
// dropping the least recently used would keep none of a list read over and over in order.
// After the database is restored from a backup, revisions may be reused for other content:
// restart the servers then, as kube-apiserver must be restarted after etcd is restored
// (docs/operations.md).

// DefaultObjectCacheBytes is the stored JSON an ObjectCache keeps by default: about 5,000
// reports of 20 results.
const DefaultObjectCacheBytes = 64 << 20

// objectCacheMaxShare: an object larger than the cache's bound over this is never kept, so one
// huge report cannot push out hundreds of others.
const objectCacheMaxShare = 64

// ObjectCache keeps the stored JSON of objects lists have read, for the lists of every store of a
// process. Share one per process. Safe for concurrent use; a nil *ObjectCache keeps nothing.
type ObjectCache struct {
	maxBytes int64

	mu      sync.Mutex
	bytes   int64
	entries map[objectCacheKey]cachedObject

	hits, misses atomic.Int64
}

type objectCacheKey struct{ cluster, key string }

// cachedObject is one object's stored JSON, as the database returned it, and its revision. The
// bytes are shared by every reader and never written to.
type cachedObject struct {
	rev  int64
	data []byte
}

// NewObjectCache returns a cache that keeps at most maxBytes of stored JSON; nil when maxBytes
// is not positive (no cache).
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

// fill sets the data of each row that the cache holds at the row's revision, and returns the
// indexes of the others.
func (c *ObjectCache) fill(cluster string, rows []row) (missing []int) {
	c.mu.Lock()
	for i := range rows {
		e, ok := c.entries[objectCacheKey{cluster, rows[i].key}]
		if ok && e.rev == rows[i].rev {
			rows[i].data = e.data
			continue
		}
		missing = append(missing, i)
	}
	c.mu.Unlock()
	c.hits.Add(int64(len(rows) - len(missing)))
	c.misses.Add(int64(len(missing)))
	return missing
}

// add keeps the stored JSON of the rows, each at its revision, unless an entry of a newer
// revision is kept already.
func (c *ObjectCache) add(cluster string, rows []row) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range rows {
		size := int64(len(r.data))
		if size == 0 || size > c.maxBytes/objectCacheMaxShare {
			continue
		}
		k := objectCacheKey{cluster, r.key}
		if e, ok := c.entries[k]; ok {
			if e.rev >= r.rev {
				continue
			}
			c.bytes -= int64(len(e.data))
			delete(c.entries, k)
		}
		c.makeRoomLocked(size)
		c.entries[k] = cachedObject{rev: r.rev, data: r.data}
		c.bytes += size
	}
}

// makeRoomLocked drops entries at random until size more bytes fit.
func (c *ObjectCache) makeRoomLocked(size int64) {
	for k, e := range c.entries {
		if c.bytes+size <= c.maxBytes {
			return
		}
		c.bytes -= int64(len(e.data))
		delete(c.entries, k)
	}
}
