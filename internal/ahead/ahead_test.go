package ahead

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestCacheBounds: values are made at most MaxInFlight at a time (the others are skipped), a
// value is taken once and only when making it succeeded and usable accepts it, a take that comes
// while its value is being made waits for it, a value over MaxBytes is not kept, and one not
// taken within its TTL is dropped.
func TestCacheBounds(t *testing.T) {
	limits := Limits{MaxBytes: 10, MaxEntries: 8, MaxInFlight: 2, TTL: time.Minute, Timeout: time.Minute}
	c := New[string](limits, func(v string) int64 { return int64(len(v)) })
	ctx := context.Background()
	release := make(chan struct{})
	value := func(v string, err error) func(context.Context) (string, error) {
		return func(context.Context) (string, error) {
			<-release
			return v, err
		}
	}
	for i, k := range []string{"a", "b", "c"} {
		c.Start(ctx, k, value(k, nil))
		if want := int64(max(0, i+1-limits.MaxInFlight)); c.Stats().Skipped != want {
			t.Fatalf("after %d starts: %d skipped, want %d", i+1, c.Stats().Skipped, want)
		}
	}
	c.Start(ctx, "a", value("again", nil)) // being made already: nothing new
	if st := c.Stats(); st.Skipped != 1 {
		t.Fatalf("a value being made started again: %+v", st)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		close(release)
	}()
	if v, ok := c.Take(ctx, "a", nil); !ok || v != "a" {
		t.Fatalf("take a while being made: %q %v", v, ok)
	}
	if _, ok := c.Take(ctx, "a", nil); ok {
		t.Fatal("a value was taken twice")
	}
	if _, ok := c.Take(ctx, "c", nil); ok {
		t.Fatal("a skipped value was taken")
	}
	if _, ok := c.Take(ctx, "b", func(string) bool { return false }); ok {
		t.Fatal("a value usable rejected was taken")
	}
	// Failures and values over MaxBytes are not kept.
	c.Start(ctx, "failed", value("", errors.New("no")))
	c.Start(ctx, "big", value("0123456789x", nil))
	waitIdle(t, c)
	if _, ok := c.Take(ctx, "failed", nil); ok {
		t.Error("a failed value was taken")
	}
	if _, ok := c.Take(ctx, "big", nil); ok {
		t.Error("a value over MaxBytes was taken")
	}
	if st := c.Stats(); st.Used != 1 || st.Unused != 3 || c.bytes != 0 || len(c.entries) != 0 {
		t.Errorf("%+v, %d bytes kept, %d entries; want 1 used, 3 unused, nothing kept", st, c.bytes, len(c.entries))
	}
}

// TestCacheExpiry: a value not taken within its TTL is dropped (and counted unused) when the
// next one starts, and never taken.
func TestCacheExpiry(t *testing.T) {
	c := New[string](Limits{MaxBytes: 100, MaxEntries: 8, MaxInFlight: 2, TTL: 20 * time.Millisecond, Timeout: time.Minute},
		func(v string) int64 { return int64(len(v)) })
	ctx := context.Background()
	c.Start(ctx, "old", func(context.Context) (string, error) { return "old", nil })
	waitIdle(t, c)
	time.Sleep(40 * time.Millisecond)
	c.Start(ctx, "new", func(context.Context) (string, error) { return "new", nil })
	waitIdle(t, c)
	if _, ok := c.Take(ctx, "old", nil); ok {
		t.Error("an expired value was taken")
	}
	if st := c.Stats(); st.Unused != 1 || c.bytes != 3 {
		t.Errorf("%+v, %d bytes kept; want the expired value dropped and counted unused", st, c.bytes)
	}
}

// waitIdle waits until c makes nothing.
func waitIdle[K comparable, V any](t *testing.T, c *Cache[K, V]) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		c.mu.Lock()
		n := c.inFlight
		c.mu.Unlock()
		if n == 0 {
			return
		}
	}
	t.Fatal("values still being made after 10 s")
}
