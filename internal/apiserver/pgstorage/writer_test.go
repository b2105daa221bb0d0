package pgstorage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/storage"

	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

// TestBatchWithFailedPreconditions: a batch is sent to PostgreSQL in one round trip on the
// assumption that every precondition holds. When some fail (a create of an existing key, an
// update or delete of a revision that moved), those writes fail alone and take no revision: the
// others get consecutive revisions in queue order, with no gap, and the change log has exactly
// their entries. A batch without failures takes the pipelined path; the same checks hold.
func TestBatchWithFailedPreconditions(t *testing.T) {
	ctx := context.Background()
	url := dbtest.URL(t)
	s := processStore(t, url, "c1")
	obj := func(name string) []byte {
		return []byte(`{"apiVersion":"example.apiserver.k8s.io/v1","kind":"Pod","metadata":{"name":"` + name + `","namespace":"ns"}}`)
	}
	key := func(name string) string { return "/pods/ns/" + name }

	// All preconditions hold: the pipelined path.
	first := s.CommitBatch([]pgstorage.WriteOp{
		{Kind: "create", Key: key("a"), Data: obj("a")},
		{Kind: "create", Key: key("b"), Data: obj("b")},
	})
	for i, r := range first {
		if r.Err != nil {
			t.Fatalf("write %d: %v", i, r.Err)
		}
	}
	if first[1].Rev != first[0].Rev+1 {
		t.Fatalf("revisions %d, %d: want consecutive", first[0].Rev, first[1].Rev)
	}
	a, b := first[0].Rev, first[1].Rev

	// Mixed: failures in the middle and at the ends.
	got := s.CommitBatch([]pgstorage.WriteOp{
		{Kind: "create", Key: key("a"), Data: obj("a")},              // exists
		{Kind: "update", Key: key("a"), Data: obj("a"), Expected: a}, // ok: b+1
		{Kind: "update", Key: key("b"), Data: obj("b"), Expected: a}, // stale
		{Kind: "create", Key: key("c"), Data: obj("c")},              // ok: b+2
		{Kind: "delete", Key: key("b"), Expected: b},                 // ok: b+3
		{Kind: "delete", Key: key("a"), Expected: a},                 // moved by the update above
	})
	wantRev := []int64{0, b + 1, 0, b + 2, b + 3, 0}
	for i, r := range got {
		if (r.Err != nil) != (wantRev[i] == 0) || r.Rev != wantRev[i] {
			t.Errorf("write %d: revision %d, err %v; want revision %d (0: a failed precondition)", i, r.Rev, r.Err, wantRev[i])
		}
	}

	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	// Runs of creates go to PostgreSQL as one statement each. All new, around an update: the
	// pipelined path, every key at the revision its write was answered with.
	// (ApplyBatch: an error of the statements must not be hidden by commit's one-by-one retry.)
	c := b + 2
	oneByOne := s.OneByOneBatches()
	runs, err := s.ApplyBatch([]pgstorage.WriteOp{
		{Kind: "create", Key: key("d"), Data: obj("d")},              // b+4
		{Kind: "create", Key: key("e"), Data: obj("e")},              // b+5
		{Kind: "create", Key: key("f"), Data: obj("f")},              // b+6
		{Kind: "update", Key: key("c"), Data: obj("c"), Expected: c}, // b+7
		{Kind: "create", Key: key("g"), Data: obj("g")},              // b+8
		{Kind: "create", Key: key("h"), Data: obj("h")},              // b+9
	})
	if err != nil {
		t.Fatalf("a batch of runs of creates: %v", err)
	}
	if n := s.OneByOneBatches() - oneByOne; n != 0 {
		t.Errorf("a batch of runs of new keys was applied one write at a time (%d), want in one pipeline", n)
	}
	// A key that exists in the middle of a run, and a key created twice in one run: those
	// creates fail alone, the others keep consecutive revisions.
	failing, err := s.ApplyBatch([]pgstorage.WriteOp{
		{Kind: "create", Key: key("i"), Data: obj("i")}, // b+10
		{Kind: "create", Key: key("e"), Data: obj("e")}, // exists
		{Kind: "create", Key: key("j"), Data: obj("j")}, // b+11
		{Kind: "create", Key: key("k"), Data: obj("k")}, // b+12
		{Kind: "create", Key: key("k"), Data: obj("k")}, // created just before
		{Kind: "create", Key: key("l"), Data: obj("l")}, // b+13
	})
	if err != nil {
		t.Fatalf("a batch of runs of creates, some failing: %v", err)
	}
	if n := s.OneByOneBatches() - oneByOne; n != 1 {
		t.Errorf("%d batches applied one write at a time, want 1 (the one with failing creates)", n)
	}
	runs = append(runs, failing...)
	wantRuns := []int64{b + 4, b + 5, b + 6, b + 7, b + 8, b + 9, b + 10, 0, b + 11, b + 12, 0, b + 13}
	runKeys := []string{"d", "e", "f", "c", "g", "h", "i", "e", "j", "k", "k", "l"}
	for i, r := range runs {
		if (r.Err != nil) != (wantRuns[i] == 0) || r.Rev != wantRuns[i] {
			t.Errorf("run write %d (%s): revision %d, err %v; want revision %d (0: a failed precondition)", i, runKeys[i], r.Rev, r.Err, wantRuns[i])
		}
	}
	for i, r := range runs {
		if r.Err != nil || runKeys[i] == "c" {
			continue
		}
		var stored int64
		var same bool
		if err := pool.QueryRow(ctx, "SELECT resource_version, object = $2::jsonb FROM reports WHERE cluster = 'c1' AND key = $1",
			key(runKeys[i]), obj(runKeys[i])).Scan(&stored, &same); err != nil || stored != r.Rev || !same {
			t.Errorf("%s is stored at revision %d, the object written: %v (%v); want revision %d", runKeys[i], stored, same, err, r.Rev)
		}
	}

	// The change log: exactly the successful writes, gapless from the start.
	rows, err := pool.Query(ctx, "SELECT resource_version FROM changes WHERE cluster = 'c1' ORDER BY resource_version")
	if err != nil {
		t.Fatal(err)
	}
	revs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{a, b, b + 1, b + 2, b + 3}
	for rev := b + 4; rev <= b+13; rev++ {
		want = append(want, rev)
	}
	if len(revs) != len(want) {
		t.Fatalf("change log revisions %v, want %v", revs, want)
	}
	for i := range want {
		if revs[i] != want[i] {
			t.Fatalf("change log revisions %v, want %v", revs, want)
		}
	}
}

// TestHungDatabaseAnswersBeforeDeadline: while every statement of the store waits (an outside
// transaction holds the revisions and reports tables in ACCESS EXCLUSIVE mode, as a database that
// hangs),
// reads and writes give up before their context's deadline with a 503, instead of waiting for
// the database: the write in flight stops being waited for, the ones queued behind it are
// withdrawn, and the batch is cancelled once nobody waits for it. Nothing they asked for is
// stored, and once the lock goes the store writes again.
func TestHungDatabaseAnswersBeforeDeadline(t *testing.T) {
	ctx := context.Background()
	url := dbtest.URL(t)
	s := processStore(t, url, "c1")
	create := func(ctx context.Context, name string) error {
		pod := &example.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
		return s.Create(ctx, "/pods/ns/"+name, pod, &example.Pod{}, 0)
	}
	if err := create(ctx, "before"); err != nil {
		t.Fatal(err)
	}

	tx := lockTables(ctx, t, url, "revisions, reports")
	const timeout = 2 * time.Second
	type answer struct {
		what string
		err  error
		took time.Duration
	}
	answers := make(chan answer, 4)
	for i := range 4 {
		go func() {
			reqCtx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			start := time.Now()
			a := answer{what: fmt.Sprintf("create during-%d", i)}
			if i == 3 {
				a.what, a.err = "get", s.Get(reqCtx, "/pods/ns/before", storage.GetOptions{}, &example.Pod{})
			} else {
				a.err = create(reqCtx, fmt.Sprintf("during-%d", i))
			}
			a.took = time.Since(start)
			answers <- a
		}()
	}
	for range 4 {
		var a answer
		select {
		case a = <-answers:
		case <-time.After(timeout + 10*time.Second):
			t.Fatalf("a request did not answer within %v of its deadline while the database hangs", 10*time.Second)
		}
		if a.took >= timeout {
			t.Errorf("%s answered after %v, at or past its deadline of %v", a.what, a.took, timeout)
		}
		if !apierrors.IsServiceUnavailable(a.err) {
			t.Errorf("%s while the database hangs: %v, want 503", a.what, a.err)
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	if err := create(ctx, "after"); err != nil {
		t.Fatalf("create once the lock is gone: %v", err)
	}
	var n int
	if err := tx.Conn().QueryRow(ctx, "SELECT count(*) FROM reports WHERE cluster = 'c1' AND key LIKE '/pods/ns/during-%'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d writes that were given up are stored", n)
	}
}
