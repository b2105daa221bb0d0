package pgstorage_test

// What PostgreSQL itself takes for the write pattern of BenchmarkCreate, measured beside it in the
// same run (docs/benchmarks.md, "Raw PostgreSQL baseline").

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/apis/example"

	"github.com/reports-server/reports-server/internal/db/dbtest"
)

// rawWriters is the number of concurrent connections of the raw benchmarks: BenchmarkCreate's
// writers on this machine (8 per core, 2 cores).
const rawWriters = 16

// rawWrite is one way of writing object i on a connection, one transaction per write.
type rawWrite struct {
	name string
	// setup prepares a fresh database (after the schema's migrations) for the writes.
	setup string
	write func(ctx context.Context, conn *pgx.Conn, key string, object []byte) error
}

// rawWrites are the raw PostgreSQL baselines, from the least to the most of what the storage's
// write does. Every one commits each write in its own transaction, durably (the database's
// synchronous_commit, on here), into the storage's own tables with all their indexes and
// generated columns (a fresh database migrated to the schema, as BenchmarkCreate's).
var rawWrites = []rawWrite{
	{
		// The object row alone: INSERT into reports, autocommit. No change log, no revision
		// order (resource_version 0 for every row).
		name: "insert",
		write: func(ctx context.Context, conn *pgx.Conn, key string, object []byte) error {
			_, err := conn.Exec(ctx, `INSERT INTO reports (cluster, key, resource_version, object) VALUES ($1, $2, 0, $3)`,
				testCluster, key, object)
			return err
		},
	},
	{
		// The rows the storage writes: object row and change-log row (which keeps no copy of a
		// new object) in one statement (the storage's CreateObject), autocommit, the revision from
		// a sequence:
		// unique and increasing, but neither gapless nor in commit order (a watcher reading the
		// log could miss a write that commits after a later revision).
		name:  "insert+changelog",
		setup: `CREATE SEQUENCE rawpg_revision`,
		write: func(ctx context.Context, conn *pgx.Conn, key string, object []byte) error {
			_, err := conn.Exec(ctx, `WITH r AS (SELECT nextval('rawpg_revision') AS rv),
				w AS (INSERT INTO reports (cluster, key, resource_version, object)
				      SELECT $1, $2, r.rv, $3 FROM r RETURNING key, resource_version)
				INSERT INTO changes (cluster, resource_version, key, event)
				SELECT $1, w.resource_version, w.key, 'ADDED' FROM w`, testCluster, key, object)
			return err
		},
	},
	{
		// Everything a durable write with the storage's ordering guarantee needs, one write per
		// transaction: take the next revision under the cluster's row lock (gapless,
		// commit-ordered: the lock is held until commit), write object and change-log rows,
		// notify the watchers, commit. This is the storage's write before group commit, in
		// three round trips (BEGIN and the revision in one, the rows, COMMIT with the notify);
		// writes are serialised by the lock, so each one waits for the previous commit's WAL flush.
		name: "insert+changelog+ordered",
		write: func(ctx context.Context, conn *pgx.Conn, key string, object []byte) error {
			return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				var rv int64
				if err := tx.QueryRow(ctx, `UPDATE revisions SET current = current + 1 WHERE cluster = $1 RETURNING current`,
					testCluster).Scan(&rv); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `WITH w AS (INSERT INTO reports (cluster, key, resource_version, object)
					VALUES ($1, $2, $3, $4) RETURNING key)
					INSERT INTO changes (cluster, resource_version, key, event)
					SELECT $1, $3, w.key, 'ADDED' FROM w`, testCluster, key, rv, object); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `SELECT pg_notify('rawpg_changes', $1)`, strconv.FormatInt(rv, 10))
				return err
			})
		},
	},
}

// BenchmarkRawPostgresWrites measures what PostgreSQL takes for the durable writes of
// BenchmarkCreate without the storage: rawWriters connections, each writing the same ~10 KB
// object rows (the JSON the store's codec makes of BenchmarkCreate's pods, same keys and
// namespaces) one transaction per write, as fast as they go, into a fresh database. Each round
// runs BenchmarkCreate itself first and then every raw variant (rawWrites), so the ratio
// "storage Create / raw PostgreSQL" comes from interleaved runs; RAWPG_BENCH_ROUNDS sets the
// rounds (default 1).
//
//	RAWPG_BENCH_ROUNDS=3 go test ./internal/apiserver/pgstorage -run '^$' -bench RawPostgresWrites -benchtime 20000x -timeout 1h
func BenchmarkRawPostgresWrites(b *testing.B) {
	rounds := 1
	if s := os.Getenv("RAWPG_BENCH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("RAWPG_BENCH_ROUNDS: %q", s)
		}
		rounds = n
	}
	for round := 1; round <= rounds; round++ {
		b.Run(fmt.Sprintf("round=%d/store-create", round), BenchmarkCreate)
		for _, w := range rawWrites {
			b.Run(fmt.Sprintf("round=%d/raw-%s", round, w.name), func(b *testing.B) { benchRawWrite(b, w) })
		}
	}
}

func benchRawWrite(b *testing.B, w rawWrite) {
	ctx := context.Background()
	url := dbtest.URL(b)
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `INSERT INTO revisions (cluster) VALUES ($1) ON CONFLICT DO NOTHING`, testCluster); err != nil {
		b.Fatal(err)
	}
	if w.setup != "" {
		if _, err := admin.Exec(ctx, w.setup); err != nil {
			b.Fatal(err)
		}
	}
	object := rawObjectFunc(b)
	conns := make([]*pgx.Conn, rawWriters)
	for i := range conns {
		if conns[i], err = pgx.Connect(ctx, url); err != nil {
			b.Fatal(err)
		}
		defer conns[i].Close(ctx)
	}

	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for _, conn := range conns {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				ns, name := fmt.Sprintf("ns%d", i%50), fmt.Sprintf("p%d", i)
				if err := w.write(ctx, conn, "/pods/"+ns+"/"+name, object(ns, name)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

// rawObjectFunc returns the stored JSON of BenchmarkCreate's pod ns/name: encoded once with the
// store's codec (as the store encodes it: no resourceVersion), then only the name and namespace
// are substituted.
func rawObjectFunc(b *testing.B) func(ns, name string) []byte {
	const nsMark, nameMark = "NAMESPACE-MARK", "NAME-MARK"
	p := &example.Pod{ObjectMeta: metav1.ObjectMeta{
		Namespace: nsMark, Name: nameMark,
		Labels: map[string]string{"app": "bench"}, Annotations: map[string]string{"payload": strings.Repeat("x", 10_000)},
	}}
	data, err := runtime.Encode(testCodec, p)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := string(data)
	if strings.Count(tmpl, nsMark) != 1 || strings.Count(tmpl, nameMark) != 1 {
		b.Fatalf("unexpected encoding of the template pod: %s", tmpl[:min(len(tmpl), 300)])
	}
	return func(ns, name string) []byte {
		return []byte(strings.NewReplacer(nsMark, ns, nameMark, name).Replace(tmpl))
	}
}
