package pgstorage

import (
	"time"

	"github.com/reports-server/reports-server/internal/ahead"
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

// Prefetcher keeps the pages read ahead for the paged lists of every store of a process (its
// counters: Stats). Share one per process (a store without one makes its own). Safe for
// concurrent use.
type Prefetcher = ahead.Cache[prefetchKey, pageRows]

// NewPrefetcher returns an empty Prefetcher.
func NewPrefetcher() *Prefetcher {
	return ahead.New[prefetchKey](ahead.Limits{
		MaxBytes: prefetchMaxBytes, MaxEntries: prefetchMaxPages, MaxInFlight: prefetchMaxInFlight,
		TTL: prefetchTTL, Timeout: prefetchTimeout,
	}, pageRows.bytes)
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
