package pgstorage_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

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

	// The change log: exactly the successful writes, gapless from the start.
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rows, err := pool.Query(ctx, "SELECT resource_version FROM changes WHERE cluster = 'c1' ORDER BY resource_version")
	if err != nil {
		t.Fatal(err)
	}
	revs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{a, b, b + 1, b + 2, b + 3}
	if len(revs) != len(want) {
		t.Fatalf("change log revisions %v, want %v", revs, want)
	}
	for i := range want {
		if revs[i] != want[i] {
			t.Fatalf("change log revisions %v, want %v", revs, want)
		}
	}
}
