package db_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

// TestCheckSettings checks the start-up check of PostgreSQL's settings: it says nothing when
// autovacuum and track_counts are on, and names the setting and what to do when one is off.
// autovacuum is a server-wide setting the test cannot change, so the "off" case turns off
// track_counts, which a superuser may do for a session (autovacuum needs both).
func TestCheckSettings(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var autovacuum string
	if err := conn.QueryRow(ctx, "SHOW autovacuum").Scan(&autovacuum); err != nil {
		t.Fatal(err)
	}
	problems, err := db.CheckSettings(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if autovacuum == "on" && len(problems) != 0 {
		t.Errorf("autovacuum and track_counts are on, yet: %q", problems)
	}
	if autovacuum == "off" && (len(problems) != 1 || !strings.Contains(problems[0], "autovacuum=off")) {
		t.Errorf("autovacuum is off on this server, the check says: %q", problems)
	}

	if _, err := conn.Exec(ctx, "SET track_counts = off"); err != nil {
		t.Skipf("cannot turn track_counts off for the session (not a superuser?): %v", err)
	}
	problems, err = db.CheckSettings(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 {
		t.Fatalf("track_counts off: got %d problems, want 1: %q", len(problems), problems)
	}
	for _, want := range []string{"track_counts=off", "turn both on", "docs/operations.md"} {
		if !strings.Contains(problems[0], want) {
			t.Errorf("the message does not say %q: %s", want, problems[0])
		}
	}
}

// TestSessionSettings checks the settings the server's own sessions run with: its
// application_name, and JIT compilation off, unless the database URL sets either.
func TestSessionSettings(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := dbtest.URL(t)
	asked, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := asked.Query()
	q.Set("jit", "on")
	q.Set("application_name", "someone-else")
	asked.RawQuery = q.Encode()

	for _, tc := range []struct {
		name, url, jit, app string
	}{
		{"defaults", base, "off", "reports-server"},
		{"asked for in the URL", asked.String(), "on", "someone-else"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := db.Open(ctx, tc.url)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			var jit, app string
			if err := pool.QueryRow(ctx, "SELECT current_setting('jit'), current_setting('application_name')").Scan(&jit, &app); err != nil {
				t.Fatal(err)
			}
			if jit != tc.jit || app != tc.app {
				t.Errorf("jit = %q, application_name = %q; want %q, %q", jit, app, tc.jit, tc.app)
			}
		})
	}
}
