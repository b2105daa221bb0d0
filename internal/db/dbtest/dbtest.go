// Package dbtest gives each test its own database on a real PostgreSQL.
//
// The server is chosen once per test binary:
//  1. $DATABASE_URL when set (its database is used for administration: CREATE/DROP DATABASE);
//  2. otherwise the local server at $REPORTS_TEST_LOCAL_PG (default
//     postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable) if it answers within 2 s
//     ("off" skips this probe);
//  3. otherwise a private throw-away cluster started with pglocal in a temporary directory.
//     Call Main from TestMain to stop and remove it when the binary exits; without it the server
//     still stops when the binary exits (parent-death signal) and its directory is removed by a
//     later run once it is an hour old.
//
// Each test gets a copy of a template database migrated to the embedded schema. The template's
// name carries a hash of the migration files, so a schema change never reuses a stale one, and it
// is built under an advisory lock, so parallel test binaries build it once. Test databases are
// named reports_test_<unix seconds>_<random> and dropped when the test ends; ones left by crashed
// runs are dropped by a later run once they are an hour old.
package dbtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/pglocal"
	sqlfiles "github.com/reports-server/reports-server/sql"
)

const (
	// LocalEnv overrides the address of the local server probed when DATABASE_URL is unset;
	// "off" skips the probe and goes straight to a private cluster.
	LocalEnv     = "REPORTS_TEST_LOCAL_PG"
	defaultLocal = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

	testPrefix     = "reports_test_"
	templatePrefix = "reports_tmpl_"
	tempDirPattern = "reports-server-dbtest-*"
	staleAfter     = time.Hour
	// templateLockKey serialises template creation across test binaries (any constant).
	templateLockKey = int64(0x7265706f7274_7431) // "report" "t1"
)

type server struct {
	adminURL string // a database to run CREATE/DROP DATABASE from
	what     string // for the log line
	admin    *pgxpool.Pool
	local    *pglocal.Server
	tempDir  string
	template string
}

var (
	once     sync.Once
	srv      *server
	setupErr error
)

// URL returns the URL of a fresh database, migrated to the latest schema, dropped when t ends.
func URL(t testing.TB) string {
	t.Helper()
	return newDatabase(t, true)
}

// EmptyURL returns the URL of a fresh database with no migrations applied (for migration tests).
func EmptyURL(t testing.TB) string {
	t.Helper()
	return newDatabase(t, false)
}

// Pool returns a pgxpool on URL(t), closed when t ends.
func Pool(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	u := URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := db.Open(ctx, u)
	if err != nil {
		t.Fatalf("dbtest: open pool: %v", err)
	}
	t.Cleanup(pool.Close) // runs before the DROP registered by URL
	return pool, u
}

// Main runs the tests and then stops the private cluster, if one was started. Call it from
// TestMain: func TestMain(m *testing.M) { dbtest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	shutdown()
	os.Exit(code)
}

func shutdown() {
	if srv == nil {
		return
	}
	if srv.admin != nil {
		srv.admin.Close()
	}
	if srv.local != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := srv.local.Stop(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "dbtest: stop private PostgreSQL: %v\n", err)
		}
		cancel()
	}
	if srv.tempDir != "" {
		_ = os.RemoveAll(srv.tempDir)
	}
}

func get(t testing.TB) *server {
	t.Helper()
	once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		srv, setupErr = setup(ctx)
		if setupErr == nil {
			fmt.Fprintf(os.Stderr, "dbtest: using %s\n", srv.what)
		}
	})
	if setupErr != nil {
		t.Fatalf("dbtest: %v", setupErr)
	}
	return srv
}

func setup(ctx context.Context) (*server, error) {
	s, err := chooseServer(ctx)
	if err != nil {
		return s, err
	}
	cfg, err := pgxpool.ParseConfig(s.adminURL)
	if err != nil {
		return s, fmt.Errorf("parse %s: %w", redact(s.adminURL), err)
	}
	cfg.MaxConns = 4
	if s.admin, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return s, fmt.Errorf("connect to %s: %w", s.what, err)
	}
	if s.template, err = ensureTemplate(ctx, s); err != nil {
		return s, err
	}
	dropStale(ctx, s)
	return s, nil
}

func chooseServer(ctx context.Context) (*server, error) {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		if err := ping(ctx, u, 10*time.Second); err != nil {
			return nil, fmt.Errorf("DATABASE_URL is set but %s does not answer: %w", redact(u), err)
		}
		return &server{adminURL: u, what: "DATABASE_URL " + redact(u)}, nil
	}
	local := os.Getenv(LocalEnv)
	if local == "" {
		local = defaultLocal
	}
	var probeErr error
	if local != "off" {
		if probeErr = ping(ctx, local, 2*time.Second); probeErr == nil {
			return &server{adminURL: local, what: "local PostgreSQL " + redact(local)}, nil
		}
	}
	removeStaleTempDirs()
	dir, err := os.MkdirTemp("", tempDirPattern)
	if err != nil {
		return nil, err
	}
	_ = os.Chmod(dir, 0o711) // the server may run as another user (when we are root) and must reach data/
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ls, err := pglocal.Start(ctx, pglocal.Options{DataDir: filepath.Join(dir, "data"), Logger: logger})
	if err != nil {
		_ = os.RemoveAll(dir)
		why := "probe of " + LocalEnv + " skipped"
		if probeErr != nil {
			why = fmt.Sprintf("%s does not answer: %v", redact(local), probeErr)
		}
		return nil, fmt.Errorf("no PostgreSQL to test against: DATABASE_URL is unset, %s, and a private server could not be started: %w", why, err)
	}
	return &server{
		adminURL: ls.URL("postgres"),
		what:     fmt.Sprintf("private PostgreSQL %s (data in %s, log in %s)", ls.URL("postgres"), ls.DataDir(), filepath.Join(ls.DataDir(), pglocal.LogFile)),
		local:    ls,
		tempDir:  dir,
	}, nil
}

func ping(ctx context.Context, u string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// schemaHash identifies the embedded migrations (names and contents).
func schemaHash() (string, error) {
	h := sha256.New()
	var names []string
	err := fs.WalkDir(sqlfiles.Schema, ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, path)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	for _, name := range names {
		b, err := fs.ReadFile(sqlfiles.Schema, name)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

const readyComment = "reports-server dbtest template, ready at "

// ensureTemplate creates and migrates the template for the current schema unless a finished
// one exists. A template is finished when it carries the ready comment; one without it was left
// by a binary that died while migrating and is rebuilt.
func ensureTemplate(ctx context.Context, s *server) (string, error) {
	hash, err := schemaHash()
	if err != nil {
		return "", fmt.Errorf("hash migrations: %w", err)
	}
	name := templatePrefix + hash
	conn, err := s.admin.Acquire(ctx)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", s.what, err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", templateLockKey); err != nil {
		return "", fmt.Errorf("lock template creation: %w", err)
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", templateLockKey)

	var comment *string
	err = conn.QueryRow(ctx, "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", name).Scan(&comment)
	switch {
	case err == nil && comment != nil && strings.HasPrefix(*comment, readyComment):
		return name, nil
	case err == nil:
		if _, err := conn.Exec(ctx, "DROP DATABASE "+quote(name)+" WITH (FORCE)"); err != nil {
			return "", fmt.Errorf("drop unfinished template %s: %w", name, err)
		}
	case !errors.Is(err, pgx.ErrNoRows):
		return "", fmt.Errorf("look up template %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+quote(name)+" TEMPLATE template0"); err != nil {
		return "", fmt.Errorf("create template %s: %w", name, err)
	}
	if err := db.Migrate(ctx, withDatabase(s.adminURL, name)); err != nil {
		return "", fmt.Errorf("migrate template %s: %w", name, err)
	}
	// No connections to the template from now on: CREATE DATABASE ... TEMPLATE needs it idle.
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+quote(name)+" WITH ALLOW_CONNECTIONS false"); err != nil {
		return "", fmt.Errorf("close template %s: %w", name, err)
	}
	ready := readyComment + strconv.FormatInt(time.Now().Unix(), 10)
	if _, err := conn.Exec(ctx, "COMMENT ON DATABASE "+quote(name)+" IS "+quoteLiteral(ready)); err != nil {
		return "", fmt.Errorf("mark template %s ready: %w", name, err)
	}
	return name, nil
}

func newDatabase(t testing.TB, migrated bool) string {
	t.Helper()
	s := get(t)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	name := fmt.Sprintf("%s%d_%s", testPrefix, time.Now().Unix(), hex.EncodeToString(rnd[:]))
	template := "template0"
	if migrated {
		template = s.template
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sql := "CREATE DATABASE " + quote(name) + " TEMPLATE " + quote(template)
	for attempt := 0; ; attempt++ {
		_, err := s.admin.Exec(ctx, sql)
		if err == nil {
			break
		}
		// 55006 object_in_use: a connection to the template (the migrator's, just closed) is
		// still going away.
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55006" && attempt < 50 {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		t.Fatalf("dbtest: create database %s from %s: %v", name, template, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := s.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+quote(name)+" WITH (FORCE)"); err != nil {
			t.Errorf("dbtest: drop database %s: %v", name, err)
		}
	})
	return withDatabase(s.adminURL, name)
}

// dropStale drops test databases older than staleAfter (from crashed runs) and templates of
// other schemas that were finished more than a day ago. Failures are only reported.
func dropStale(ctx context.Context, s *server) {
	rows, err := s.admin.Query(ctx, `SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '')
		FROM pg_database WHERE starts_with(datname, $1) OR starts_with(datname, $2)`, testPrefix, templatePrefix)
	if err != nil {
		fmt.Fprintf(os.Stderr, "dbtest: list stale databases: %v\n", err)
		return
	}
	type dbRow struct{ Name, Comment string }
	all, err := pgx.CollectRows(rows, pgx.RowToStructByPos[dbRow])
	if err != nil {
		fmt.Fprintf(os.Stderr, "dbtest: list stale databases: %v\n", err)
		return
	}
	now := time.Now()
	for _, row := range all {
		d := struct{ name, comment string }{row.Name, row.Comment}
		var created int64
		switch {
		case strings.HasPrefix(d.name, testPrefix):
			ts, _, _ := strings.Cut(strings.TrimPrefix(d.name, testPrefix), "_")
			if created, err = strconv.ParseInt(ts, 10, 64); err != nil || now.Sub(time.Unix(created, 0)) < staleAfter {
				continue
			}
		case d.name != s.template && strings.HasPrefix(d.comment, readyComment):
			created, err = strconv.ParseInt(strings.TrimPrefix(d.comment, readyComment), 10, 64)
			if err != nil || now.Sub(time.Unix(created, 0)) < 24*time.Hour {
				continue
			}
		default:
			continue
		}
		if _, err := s.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+quote(d.name)+" WITH (FORCE)"); err != nil {
			fmt.Fprintf(os.Stderr, "dbtest: drop stale database %s: %v\n", d.name, err)
		}
	}
}

// removeStaleTempDirs removes private clusters left by binaries that ran without Main (or died):
// older than staleAfter and with no live postmaster.
func removeStaleTempDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempDirPattern))
	for _, dir := range dirs {
		st, err := os.Stat(dir)
		if err != nil || !st.IsDir() || time.Since(st.ModTime()) < staleAfter {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])); err == nil && alive(pid) {
				continue
			}
		}
		_ = os.RemoveAll(dir)
	}
}

func alive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// withDatabase returns u pointing at database name; u is a URL or a keyword/value string.
func withDatabase(u, name string) string {
	if strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://") {
		parsed, err := url.Parse(u)
		if err == nil {
			parsed.Path = "/" + name
			parsed.RawPath = ""
			return parsed.String()
		}
	}
	return u + " dbname=" + name // our names need no quoting
}

// redact hides a password in a URL for logs.
func redact(u string) string {
	parsed, err := url.Parse(u)
	if err != nil || parsed.User == nil {
		return u
	}
	if _, has := parsed.User.Password(); has {
		parsed.User = url.UserPassword(parsed.User.Username(), "xxxxx")
	}
	return parsed.String()
}

func quote(ident string) string { return pgx.Identifier{ident}.Sanitize() }

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
