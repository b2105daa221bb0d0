package pgstorage

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Paged lists read one page ahead.
//
// A client paging through a list (kubectl, client-go's pagers and reflectors, Policy Reporter)
// asks for the next page once it has received and parsed the current one, and the server reads
// a page once asked: PostgreSQL's part of each page (the query, printing every stored object,
// counting what remains) and the client's part take turns, each waiting for the other, on a
// machine with a core to spare. The page after one that has more is almost always asked for next,
// and what it holds is fixed: the state at the list's revision, which the continue token carries.
// So after answering such a page the store reads the next one in the background, and the request
// that continues there takes it instead of reading it. kube-apiserver's watch cache serves pages
// from memory; this is the same overlap, holding one page per paging client for seconds.
//
// What is kept is the rows as the database returned them; the request that takes them makes its
// items (stored JSON, metadata, typed objects) as if it had read them itself. A taken page is
// served only if the change log still reaches its revision, so a continuation after compaction
// is 410 Gone with or without a page read ahead.

const (
	// prefetchMaxBytes bounds the stored bytes of the pages kept, all stores of a process
	// together: beyond it no page is read ahead until some are taken or expire.
	prefetchMaxBytes = 32 << 20
	// prefetchMaxPageBytes: a page whose predecessor held more stored bytes than this is not
	// read ahead (a client asking for huge pages would otherwise hold two of them).
	prefetchMaxPageBytes = 8 << 20
	// prefetchMaxPages bounds the pages kept, however small.
	prefetchMaxPages = 256
	// prefetchMaxInFlight bounds the pages being read ahead at once, so read-ahead never takes
	// more than a few of the pool's connections from the requests themselves.
	prefetchMaxInFlight = 4
	// prefetchTTL is how long a page read ahead waits to be taken: a client that stopped
	// paging (or went to another replica) leaves it behind.
	prefetchTTL = 30 * time.Second
	// prefetchTimeout bounds the read of a page ahead.
	prefetchTimeout = 30 * time.Second
)

// Prefetcher keeps the pages read ahead for the paged lists of every store of a process. Share
// one per process (a store without one makes its own). Safe for concurrent use.
type Prefetcher struct {
	mu       sync.Mutex
	pages    map[prefetchKey]*prefetchedPage
	bytes    int64 // stored bytes of the finished pages in pages
	inFlight int

	used, unused, skipped atomic.Int64
}

// NewPrefetcher returns an empty Prefetcher.
func NewPrefetcher() *Prefetcher {
	return &Prefetcher{pages: map[prefetchKey]*prefetchedPage{}}
}

// PrefetchStats counts pages read ahead: taken by the request that continued there (Used), read
// but never taken (Unused: expired, the client stopped or went elsewhere), and not read ahead
// because the bounds were reached (Skipped).
type PrefetchStats struct {
	Used, Unused, Skipped int64
}

// Stats returns the counters so far.
func (p *Prefetcher) Stats() PrefetchStats {
	return PrefetchStats{Used: p.used.Load(), Unused: p.unused.Load(), Skipped: p.skipped.Load()}
}

// prefetchKey is everything that decides a page's rows: which keys, at which revision, selected
// how, how many, read in which shape. Two requests with the same key get the same rows.
type prefetchKey struct {
	keyPrefix, from, before string
	rev                     int64
	limit                   int64
	shape                   readShape
	labels, fields          string
}

// pageRows is one page of a paged list whose selectors SQL applies in full, as the database
// returned it: its rows (at most the limit) and how the list continues.
type pageRows struct {
	rows []row
	page listPage
}

// bytes is the stored bytes of the page's rows.
func (p pageRows) bytes() int64 {
	var n int64
	for _, r := range p.rows {
		n += int64(len(r.data))
	}
	return n
}

// prefetchedPage is a page being read ahead, or read.
type prefetchedPage struct {
	done chan struct{} // closed once rows, err and size are set
	rows pageRows
	err  error
	size int64 // the rows' stored bytes
	// counted says size is in Prefetcher.bytes (the page is read and kept).
	counted bool
	// expireAt is when the page is forgotten: prefetchTTL after its read, which itself ends
	// within prefetchTimeout.
	expireAt time.Time
}

// start reads the page of key in the background with read, unless it is kept or being read
// already, or the bounds are reached. ctx is the request's whose page came before: its values
// (the read shape) apply, its cancellation does not.
func (p *Prefetcher) start(ctx context.Context, key prefetchKey, read func(context.Context) (pageRows, error)) {
	now := time.Now()
	p.mu.Lock()
	p.dropExpiredLocked(now)
	if _, ok := p.pages[key]; ok {
		p.mu.Unlock()
		return
	}
	if p.inFlight >= prefetchMaxInFlight || p.bytes >= prefetchMaxBytes || len(p.pages) >= prefetchMaxPages {
		p.mu.Unlock()
		p.skipped.Add(1)
		return
	}
	e := &prefetchedPage{done: make(chan struct{}), expireAt: now.Add(prefetchTimeout + prefetchTTL)}
	p.pages[key] = e
	p.inFlight++
	p.mu.Unlock()

	go func() {
		readCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), prefetchTimeout)
		rows, err := read(readCtx)
		cancel()
		p.finish(key, e, rows, err)
	}()
}

// finish records the read of e: kept for prefetchTTL if it succeeded and fits the bound.
func (p *Prefetcher) finish(key prefetchKey, e *prefetchedPage, rows pageRows, err error) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight--
	e.rows, e.err, e.size, e.expireAt = rows, err, rows.bytes(), now.Add(prefetchTTL)
	close(e.done)
	if p.pages[key] != e {
		return // taken while being read: the taker waits on done
	}
	if err != nil || p.bytes+e.size > prefetchMaxBytes {
		delete(p.pages, key)
		p.unused.Add(1)
		return
	}
	e.counted = true
	p.bytes += e.size
}

// take returns the page of key, waiting for its read if it is under way, and forgets it (a
// page is served once). ok is false when there is none, its read failed, or ctx ended first.
func (p *Prefetcher) take(ctx context.Context, key prefetchKey) (pageRows, bool) {
	p.mu.Lock()
	e, found := p.pages[key]
	if found {
		delete(p.pages, key)
		if e.counted {
			p.bytes -= e.size
		}
	}
	p.mu.Unlock()
	if !found {
		return pageRows{}, false
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		p.unused.Add(1)
		return pageRows{}, false
	}
	if e.err != nil || time.Now().After(e.expireAt) {
		p.unused.Add(1)
		return pageRows{}, false
	}
	p.used.Add(1)
	return e.rows, true
}

// dropExpiredLocked forgets the finished pages nobody took in time.
func (p *Prefetcher) dropExpiredLocked(now time.Time) {
	for key, e := range p.pages {
		if now.Before(e.expireAt) {
			continue
		}
		select {
		case <-e.done:
		default:
			continue // still being read (its read is bounded by prefetchTimeout)
		}
		delete(p.pages, key)
		if e.counted {
			p.bytes -= e.size
		}
		p.unused.Add(1)
	}
}
