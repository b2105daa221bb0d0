// Package ahead keeps work done ahead of the request that will ask for it: a value made in the
// background under a key, kept for a while, and handed once to the first request that takes that
// key (waiting for it if it is still being made). The server makes the next page of a paged
// list ahead twice over: its rows, read from PostgreSQL (pgstorage's Prefetcher), and the
// response made of them (internal/apiserver, pagesahead.go). A Cache bounds what it holds and
// makes at once, all its keys together, so work ahead never takes more than a share of the
// process's memory and connections from the requests themselves.
package ahead

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bound a Cache, all its keys together.
type Limits struct {
	// MaxBytes bounds the size of the values kept: beyond it nothing more is made until some are
	// taken or expire, and a value that does not fit when made is not kept.
	MaxBytes int64
	// MaxEntries bounds the values kept or being made, however small.
	MaxEntries int
	// MaxInFlight bounds the values being made at once.
	MaxInFlight int
	// TTL is how long a value waits to be taken: a client that stopped (or went to another
	// replica) leaves it behind.
	TTL time.Duration
	// Timeout bounds the making of a value.
	Timeout time.Duration
}

// Stats counts the values made ahead: taken and used (Used), made but not used (Unused: never
// taken in time, failed, or found unusable when taken), and not made because the limits were
// reached (Skipped).
type Stats struct {
	Used, Unused, Skipped int64
}

// Cache keeps values of type V made ahead under keys of type K. Safe for concurrent use.
type Cache[K comparable, V any] struct {
	limits Limits
	size   func(V) int64

	mu       sync.Mutex
	entries  map[K]*entry[V]
	bytes    int64 // size of the made values in entries
	inFlight int

	used, unused, skipped atomic.Int64
}

// entry is a value being made, or made.
type entry[V any] struct {
	done  chan struct{} // closed once value, err and size are set
	value V
	err   error
	size  int64
	// counted says size is in Cache.bytes (the value is made and kept).
	counted bool
	// expireAt is when the value is forgotten: TTL after it was made, which itself ends within
	// Timeout.
	expireAt time.Time
}

// New returns an empty Cache within limits; size tells a value's size, counted against
// MaxBytes.
func New[K comparable, V any](limits Limits, size func(V) int64) *Cache[K, V] {
	return &Cache[K, V]{limits: limits, size: size, entries: map[K]*entry[V]{}}
}

// Stats returns the counters so far.
func (c *Cache[K, V]) Stats() Stats {
	return Stats{Used: c.used.Load(), Unused: c.unused.Load(), Skipped: c.skipped.Load()}
}

// Start makes the value of key in the background with work, unless it is kept or being made
// already, or the limits are reached. ctx's values apply to work, its cancellation does not
// (it is usually the request that came before, which ends first).
func (c *Cache[K, V]) Start(ctx context.Context, key K, work func(context.Context) (V, error)) {
	now := time.Now()
	c.mu.Lock()
	c.dropExpiredLocked(now)
	if _, ok := c.entries[key]; ok {
		c.mu.Unlock()
		return
	}
	if c.inFlight >= c.limits.MaxInFlight || c.bytes >= c.limits.MaxBytes || len(c.entries) >= c.limits.MaxEntries {
		c.mu.Unlock()
		c.skipped.Add(1)
		return
	}
	e := &entry[V]{done: make(chan struct{}), expireAt: now.Add(c.limits.Timeout + c.limits.TTL)}
	c.entries[key] = e
	c.inFlight++
	c.mu.Unlock()

	go func() {
		makeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.limits.Timeout)
		value, err := work(makeCtx)
		cancel()
		c.finish(key, e, value, err)
	}()
}

// finish records the making of e: kept for TTL if it succeeded and fits MaxBytes.
func (c *Cache[K, V]) finish(key K, e *entry[V], value V, err error) {
	var size int64
	if err == nil {
		size = c.size(value)
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFlight--
	e.value, e.err, e.size, e.expireAt = value, err, size, now.Add(c.limits.TTL)
	close(e.done)
	if c.entries[key] != e {
		return // taken while being made: the taker waits on done
	}
	if err != nil || c.bytes+size > c.limits.MaxBytes {
		delete(c.entries, key)
		c.unused.Add(1)
		return
	}
	e.counted = true
	c.bytes += size
}

// Take returns the value of key, waiting for it if it is being made, and forgets it (a value is
// taken once). ok is false when there is none, making it failed, ctx ended first, or usable
// (unless nil) rejects it: usable runs after the wait, for what may have changed meanwhile.
func (c *Cache[K, V]) Take(ctx context.Context, key K, usable func(V) bool) (value V, ok bool) {
	c.mu.Lock()
	e, found := c.entries[key]
	if found {
		delete(c.entries, key)
		if e.counted {
			c.bytes -= e.size
		}
	}
	c.mu.Unlock()
	if !found {
		return value, false
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		c.unused.Add(1)
		return value, false
	}
	if e.err != nil || time.Now().After(e.expireAt) || (usable != nil && !usable(e.value)) {
		c.unused.Add(1)
		return value, false
	}
	c.used.Add(1)
	return e.value, true
}

// dropExpiredLocked forgets the made values nobody took in time.
func (c *Cache[K, V]) dropExpiredLocked(now time.Time) {
	for key, e := range c.entries {
		if now.Before(e.expireAt) {
			continue
		}
		select {
		case <-e.done:
		default:
			continue // still being made (bounded by Timeout)
		}
		delete(c.entries, key)
		if e.counted {
			c.bytes -= e.size
		}
		c.unused.Add(1)
	}
}
