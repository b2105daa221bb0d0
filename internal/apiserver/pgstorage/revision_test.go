package pgstorage_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/storage"

	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

// processStore opens a store with its own pool, as a separate server process would.
func processStore(t *testing.T, url, cluster string) *pgstorage.Store {
	t.Helper()
	s, err := pgstorage.New(podConfig(openProcess(t, url).pool, cluster))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRevisionsAcrossProcesses: writers in several "processes" (separate pools and writers) on
// one database get unique revisions, a gapless sequence, and every object's revision is the one
// its write returned.
func TestRevisionsAcrossProcesses(t *testing.T) {
	url := dbtest.URL(t)
	ctx := context.Background()
	const procs, writers, writes = 3, 4, 25
	var mu sync.Mutex
	var revs []uint64
	var wg sync.WaitGroup
	for p := range procs {
		s := processStore(t, url, "c1")
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range writes {
					pod := &example.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("p%d-w%d-%d", p, w, i)}}
					out := &example.Pod{}
					if err := s.Create(ctx, "/pods/ns/"+pod.Name, pod, out, 0); err != nil {
						t.Error(err)
						return
					}
					rv, _ := s.Versioner().ObjectResourceVersion(out)
					mu.Lock()
					revs = append(revs, rv)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	slices.Sort(revs)
	for i := 1; i < len(revs); i++ {
		if revs[i] != revs[i-1]+1 {
			t.Fatalf("revisions are not unique and gapless around %d: %v", revs[i], revs[max(0, i-3):min(len(revs), i+3)])
		}
	}
	list := &example.PodList{}
	if err := processStore(t, url, "c1").GetList(ctx, "/pods/", storage.ListOptions{Recursive: true, Predicate: storage.Everything}, list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != procs*writers*writes {
		t.Fatalf("listed %d objects, want %d", len(list.Items), procs*writers*writes)
	}
	if list.ResourceVersion != fmt.Sprint(revs[len(revs)-1]) {
		t.Errorf("list resourceVersion %s, want the last write's %d", list.ResourceVersion, revs[len(revs)-1])
	}
}

// TestClustersAreIsolated: two clusters in one database see only their own objects and keep
// their own revision sequences.
func TestClustersAreIsolated(t *testing.T) {
	url := dbtest.URL(t)
	ctx := context.Background()
	a, b := processStore(t, url, "cluster-a"), processStore(t, url, "cluster-b")
	create := func(s *pgstorage.Store, name string) string {
		out := &example.Pod{}
		if err := s.Create(ctx, "/pods/ns/"+name, &example.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}, out, 0); err != nil {
			t.Fatal(err)
		}
		return out.ResourceVersion
	}
	rvA := create(a, "same-name")
	rvB := create(b, "same-name") // the same key in another cluster is not a conflict
	create(a, "only-in-a")
	if rvA != rvB {
		t.Errorf("first writes of two fresh clusters got revisions %s and %s; each cluster has its own sequence", rvA, rvB)
	}
	for _, tc := range []struct {
		s    *pgstorage.Store
		want []string
	}{{a, []string{"only-in-a", "same-name"}}, {b, []string{"same-name"}}} {
		list := &example.PodList{}
		if err := tc.s.GetList(ctx, "/pods/", storage.ListOptions{Recursive: true, Predicate: storage.Everything}, list); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range list.Items {
			got = append(got, p.Name)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("list: %v, want %v", got, tc.want)
		}
	}
	if err := b.Get(ctx, "/pods/ns/only-in-a", storage.GetOptions{}, &example.Pod{}); !storage.IsNotFound(err) {
		t.Errorf("cluster-b reads cluster-a's object: %v", err)
	}
}

// TestGetsStayOffTheRevisionRow: a get without a resourceVersion (or with "0", any) reads the
// object alone, so it answers while another transaction holds the cluster's revision row, which
// every write batch locks and updates (docs/design.md, "Revisions"); a get with a minimum
// resourceVersion reads the revision with the object and waits for the row like the writes.
func TestGetsStayOffTheRevisionRow(t *testing.T) {
	ctx := context.Background()
	url := dbtest.URL(t)
	s := processStore(t, url, "c1")
	created := &example.Pod{}
	if err := s.Create(ctx, "/pods/ns/p", &example.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}, created, 0); err != nil {
		t.Fatal(err)
	}

	lockTables(ctx, t, url, "revisions")
	get := func(rv string) error {
		getCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return s.Get(getCtx, "/pods/ns/p", storage.GetOptions{ResourceVersion: rv}, &example.Pod{})
	}
	for _, rv := range []string{"", "0"} {
		if err := get(rv); err != nil {
			t.Errorf("get with resourceVersion %q while the revisions are locked: %v", rv, err)
		}
	}
	if err := get(created.ResourceVersion); !apierrors.IsServiceUnavailable(err) {
		t.Errorf("get with a minimum resourceVersion while the revisions are locked: %v, want 503 once its deadline passes", err)
	}
}

// lockTables holds ACCESS EXCLUSIVE locks on tables (a comma-separated list) in a transaction of
// its own connection, so the store's statements on them wait as on a database that hangs. The
// locks go when the returned transaction is rolled back, or when the test ends.
func lockTables(ctx context.Context, t *testing.T, url, tables string) pgx.Tx {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) }) // closed already when the test rolled it back
	if _, err := tx.Exec(ctx, "LOCK TABLE "+tables+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	return tx
}
