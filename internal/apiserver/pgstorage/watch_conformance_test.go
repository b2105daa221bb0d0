package pgstorage_test

import (
	"testing"

	storagetesting "k8s.io/apiserver/pkg/storage/testing"
)

// The watch cases of the suite. Issue-level guarantees (several replicas, LISTEN/NOTIFY) are
// tested elsewhere; these pin the storage.Interface semantics.

func TestWatch(t *testing.T) {
	ctx, s := newStore(t)
	storagetesting.RunTestWatch(ctx, t, s)
}

func TestDeleteTriggerWatch(t *testing.T) {
	ctx, s := newStore(t)
	storagetesting.RunTestDeleteTriggerWatch(ctx, t, s)
}

func TestWatchFromZero(t *testing.T) {
	ctx, s := newStore(t)
	storagetesting.RunTestWatchFromZero(ctx, t, s, compaction(s))
}

func TestWatchFromNonZero(t *testing.T) {
	ctx, s := newStore(t)
	storagetesting.RunTestWatchFromNonZero(ctx, t, s)
}

func TestWatchContextCancel(t *testing.T) {
	ctx, s := newStore(t)
	storagetesting.RunTestWatchContextCancel(ctx, t, s)
}

func TestWatcherTimeout(t *testing.T) {
	ctx, s := newStore(t)
	storagetesting.RunTestWatcherTimeout(ctx, t, s)
}

func TestWatchDeleteEventObjectHaveLatestRV(t *testing.T) {
	ctx, s := newStore(t)
	storagetesting.RunTestWatchDeleteEventObjectHaveLatestRV(ctx, t, s)
}

func TestWatchInitializationSignal(t *testing.T) {
	ctx, s := newStore(t)
	storagetesting.RunTestWatchInitializationSignal(ctx, t, s)
}

func TestClusterScopedWatch(t *testing.T) {
	ctx, s := newStore(t)
	storagetesting.RunTestClusterScopedWatch(ctx, t, s)
}

func TestNamespaceScopedWatch(t *testing.T) {
	ctx, s := newStore(t)
	storagetesting.RunTestNamespaceScopedWatch(ctx, t, s)
}

func TestWatchDispatchBookmarkEvents(t *testing.T) {
	t.Parallel() // it mostly waits
	ctx, s := newStore(t)
	// Like the watch cache, a watcher with bookmarks gets one shortly before its deadline.
	storagetesting.RunTestWatchDispatchBookmarkEvents(ctx, t, s, true)
}

func TestWatchBookmarksWithCorrectResourceVersion(t *testing.T) {
	t.Parallel() // it mostly waits
	ctx, s := newStore(t)
	storagetesting.RunTestOptionalWatchBookmarksWithCorrectResourceVersion(ctx, t, s)
}

func TestSendInitialEventsBackwardCompatibility(t *testing.T) {
	ctx, s := newStore(t)
	storagetesting.RunSendInitialEventsBackwardCompatibility(ctx, t, s)
}

func TestWatchSemantics(t *testing.T) {
	ctx, s := newStore(t)
	storagetesting.RunWatchSemantics(ctx, t, s)
}

func TestWatchSemanticInitialEventsExtended(t *testing.T) {
	ctx, s := newStore(t)
	storagetesting.RunWatchSemanticInitialEventsExtended(ctx, t, s)
}

func TestWatchListMatchSingle(t *testing.T) {
	ctx, s := newStore(t)
	storagetesting.RunWatchListMatchSingle(ctx, t, s)
}

func TestDelayedWatchDelivery(t *testing.T) {
	ctx, s := newStore(t)
	storagetesting.RunTestDelayedWatchDelivery(ctx, t, s)
}

// Watch cases not run, with the reason:
//   RunTestWatchError, RunTestWatchWithUnsafeDelete, RunWatchErrorIsBlockingFurtherEvents: they
//     make a value.Transformer fail on stored bytes; our rows are JSONB that SQL reads, so stored
//     bytes are never transformed (see conformance_test.go).
//   RunOptionalTestProgressNotify: etcd progress notifications (storage.ListOptions.ProgressNotify)
//     are requested only by the watch cache, which this store replaces; bookmarks are sent by the
//     watchers themselves (TestWatchDispatchBookmarkEvents, TestPeriodicBookmarks).
