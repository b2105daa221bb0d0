package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	sqlfiles "github.com/reports-server/reports-server/sql"
)

// migrationLockID is the advisory lock key goose's session locker takes, so replicas that start
// together apply migrations one at a time. Any constant works as long as it never changes.
const migrationLockID = 0x7265706f727473 // "reports"

// Migrator applies the embedded goose migrations to one database.
type Migrator struct {
	db       *sql.DB
	provider *goose.Provider
}

// NewMigrator opens a dedicated connection pool for migrations (goose needs database/sql).
// Close releases it.
func NewMigrator(databaseURL string) (*Migrator, error) {
	cfg, err := ParseConfig(databaseURL)
	if err != nil {
		return nil, err
	}
	sqlDB := stdlib.OpenDB(*cfg.ConnConfig)
	schema, err := fs.Sub(sqlfiles.Schema, "schema")
	if err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("open embedded migrations: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID))
	if err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("create migration lock: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, sqlDB, schema, goose.WithSessionLocker(locker))
	if err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return &Migrator{db: sqlDB, provider: provider}, nil
}

// Close releases the migrator's connections.
func (m *Migrator) Close() error { return m.db.Close() }

// Up applies every pending migration.
func (m *Migrator) Up(ctx context.Context) error {
	results, err := m.provider.Up(ctx)
	for _, r := range results {
		slog.Info("applied migration", "version", r.Source.Version, "path", r.Source.Path, "duration", r.Duration)
	}
	if err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	return nil
}

// UpTo applies the pending migrations up to and including version.
func (m *Migrator) UpTo(ctx context.Context, version int64) error {
	results, err := m.provider.UpTo(ctx, version)
	for _, r := range results {
		slog.Info("applied migration", "version", r.Source.Version, "path", r.Source.Path, "duration", r.Duration)
	}
	if err != nil {
		return fmt.Errorf("apply migrations up to %d: %w", version, err)
	}
	return nil
}

// Down rolls back the most recent migration.
func (m *Migrator) Down(ctx context.Context) error {
	r, err := m.provider.Down(ctx)
	if r != nil {
		slog.Info("rolled back migration", "version", r.Source.Version, "path", r.Source.Path)
	}
	if err != nil {
		return fmt.Errorf("roll back migration: %w", err)
	}
	return nil
}

// DownTo rolls back every migration above version (0 removes them all).
func (m *Migrator) DownTo(ctx context.Context, version int64) error {
	if _, err := m.provider.DownTo(ctx, version); err != nil {
		return fmt.Errorf("roll back migrations to %d: %w", version, err)
	}
	return nil
}

// MigrationStatus is one migration and whether it is applied.
type MigrationStatus struct {
	Version int64
	Path    string
	Applied bool
}

// Status lists every known migration with its state.
func (m *Migrator) Status(ctx context.Context) ([]MigrationStatus, error) {
	st, err := m.provider.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("read migration status: %w", err)
	}
	out := make([]MigrationStatus, 0, len(st))
	for _, s := range st {
		out = append(out, MigrationStatus{Version: s.Source.Version, Path: s.Source.Path, Applied: s.State == goose.StateApplied})
	}
	return out, nil
}

// ErrNotMigrated is returned (wrapped, with the versions) by CheckMigrated when the database's
// schema is older than this build's migrations.
var ErrNotMigrated = errors.New("database schema is older than this server")

// CheckMigrated fails with ErrNotMigrated unless every migration this build knows is applied to
// databaseURL. A server that does not migrate (its role owns nothing, see migration 00011) checks
// this at start instead. A newer schema is fine: during a rolling upgrade the old replicas keep
// serving on the migrated database. It takes no lock and writes nothing.
func CheckMigrated(ctx context.Context, databaseURL string) error {
	m, err := NewMigrator(databaseURL)
	if err != nil {
		return err
	}
	defer m.Close()
	sources := m.provider.ListSources()
	if len(sources) == 0 {
		return nil
	}
	target := sources[len(sources)-1].Version
	// Read goose's table directly: goose's own version queries first create the table, which a
	// role that owns nothing may not.
	var current int64
	var exists bool
	err = m.db.QueryRowContext(ctx, `SELECT to_regclass('goose_db_version') IS NOT NULL`).Scan(&exists)
	if err == nil && exists {
		err = m.db.QueryRowContext(ctx, `SELECT coalesce(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&current)
	}
	if err != nil {
		return fmt.Errorf("read the database's schema version: %w", err)
	}
	if current < target {
		return fmt.Errorf("%w: it is at migration %d, this server needs %d; run `reports-server migrate up` as the database's owner",
			ErrNotMigrated, current, target)
	}
	return nil
}

// Migrate applies every pending migration to databaseURL.
func Migrate(ctx context.Context, databaseURL string) error {
	m, err := NewMigrator(databaseURL)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Up(ctx)
}
