package db_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

// TestElectorHandOver: two processes run for one leadership. One leads; while it does, the other
// does not, and a one-shot run elsewhere is refused. When the leader's connection dies
// (pg_terminate_backend, as when its replica loses the database), its work ends with an error
// and the other process takes over.
func TestElectorHandOver(t *testing.T) {
	t.Parallel()
	pool, _ := dbtest.Pool(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lock := db.Lock{Class: 0x74657374, Scope: "hand-over"}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	type lead struct {
		who  int
		pid  uint32
		done chan error
	}
	leads := make(chan lead, 4)
	for who := range 2 {
		e := db.NewElector(pool, lock, nil)
		go e.Run(ctx, 20*time.Millisecond, quiet, func(ctx context.Context, conn *pgx.Conn) error {
			// One session holds the lock. (The old leader's goroutine may not have noticed its
			// dead connection yet when the next one starts: it leads nothing, as it can no
			// longer write.)
			var holders int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
				AND objsubid = 2 AND classid::bigint = $1 AND objid::bigint = (hashtext($2)::bigint & 4294967295)`,
				lock.Class, lock.Scope).Scan(&holders); err != nil || holders != 1 {
				t.Errorf("%d sessions hold the lock (%v), want 1", holders, err)
			}
			l := lead{who: who, pid: conn.PgConn().PID(), done: make(chan error, 1)}
			leads <- l
			// Work until the connection fails, as a leader writing through it would.
			for {
				if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
					l.done <- err
					return err
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(10 * time.Millisecond):
				}
			}
		})
	}

	first := waitLead(t, leads)
	if led, err := db.NewElector(pool, lock, nil).Once(ctx, false, func(*pgx.Conn) error { return nil }); err != nil || led {
		t.Errorf("a one-shot run led while process %d leads (err %v)", first.who, err)
	}
	if _, err := pool.Exec(ctx, "SELECT pg_terminate_backend($1)", first.pid); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-first.done:
		t.Logf("the old leader's work ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the old leader kept working after its connection died")
	}
	second := waitLead(t, leads)
	if second.pid == first.pid {
		t.Errorf("leadership continued on the dead connection %d", first.pid)
	}
	t.Logf("process %d led, then process %d", first.who, second.who)
}

func waitLead[T any](t *testing.T, leads <-chan T) T {
	t.Helper()
	select {
	case l := <-leads:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("nobody leads after 10 s")
	}
	var zero T
	return zero
}
