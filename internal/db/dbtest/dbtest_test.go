package dbtest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// TestParallelDatabases: parallel tests get different, migrated databases, dropped afterwards.
func TestParallelDatabases(t *testing.T) {
	var mu sync.Mutex
	names := map[string]string{}
	t.Run("group", func(t *testing.T) {
		for _, sub := range []string{"a", "b"} {
			t.Run(sub, func(t *testing.T) {
				t.Parallel()
				pool, _ := dbtest.Pool(t)
				ctx := context.Background()
				var name string
				if err := pool.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
					t.Fatal(err)
				}
				for _, table := range []string{"reports", "changes", "revisions"} {
					var ok bool
					if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok); err != nil || !ok {
						t.Errorf("table %s missing in %s (err=%v)", table, name, err)
					}
				}
				// Writes in one database are invisible in the other.
				if _, err := pool.Exec(ctx, "INSERT INTO revisions (cluster) VALUES ($1)", sub); err != nil {
					t.Fatal(err)
				}
				var n int
				if err := pool.QueryRow(ctx, "SELECT count(*) FROM revisions").Scan(&n); err != nil || n != 1 {
					t.Errorf("revisions has %d rows (err=%v), want only this test's", n, err)
				}
				mu.Lock()
				names[sub] = name
				mu.Unlock()
			})
		}
	})
	if len(names) != 2 || names["a"] == names["b"] {
		t.Fatalf("parallel tests did not get two databases: %v", names)
	}
	// Both were dropped when their tests ended.
	pool, _ := dbtest.Pool(t)
	for _, name := range names {
		var exists bool
		if err := pool.QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists {
			t.Errorf("database %s survived its test", name)
		}
	}
}

func TestEmptyURLHasNoSchema(t *testing.T) {
	ctx := context.Background()
	pool, err := db.Open(ctx, dbtest.EmptyURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("empty database has %d tables", n)
	}
}

// TestPrivateServerFallback runs this package's tests again in a child process with
// DATABASE_URL unset and the local server probe pointed at a closed port, so the harness must
// start its own PostgreSQL.
func TestPrivateServerFallback(t *testing.T) {
	if os.Getenv("DBTEST_FALLBACK_CHILD") != "" {
		t.Skip("already the child")
	}
	if testing.Short() {
		t.Skip("starts a private PostgreSQL")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^(TestParallelDatabases|TestEmptyURLHasNoSchema)$", "-test.v")
	env := []string{"DBTEST_FALLBACK_CHILD=1", dbtest.LocalEnv + "=postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, dbtest.LocalEnv+"=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fallback run failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "dbtest: using private PostgreSQL") || !strings.Contains(string(out), "--- PASS: TestParallelDatabases") {
		t.Fatalf("fallback run did not use a private server:\n%s", out)
	}
	t.Logf("fallback run:\n%s", out)
}
