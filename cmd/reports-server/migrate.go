package main

import (
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/reports-server/reports-server/internal/db"
)

func newMigrateCommand() *cobra.Command {
	databaseURL := os.Getenv("DATABASE_URL")
	withMigrator := func(run func(cmd *cobra.Command, m *db.Migrator) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			if databaseURL == "" {
				return errors.New("--database-url (or $DATABASE_URL) is required")
			}
			m, err := db.NewMigrator(databaseURL)
			if err != nil {
				return err
			}
			defer m.Close()
			return run(cmd, m)
		}
	}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Manage the database schema (serve applies pending migrations itself)",
	}
	cmd.PersistentFlags().StringVar(&databaseURL, "database-url", databaseURL, "PostgreSQL URL. Default $DATABASE_URL.")
	cmd.AddCommand(
		&cobra.Command{
			Use:   "up",
			Short: "Apply every pending migration",
			Args:  cobra.NoArgs,
			RunE: withMigrator(func(cmd *cobra.Command, m *db.Migrator) error {
				return m.Up(cmd.Context())
			}),
		},
		&cobra.Command{
			Use:   "down",
			Short: "Roll back the most recent migration",
			Args:  cobra.NoArgs,
			RunE: withMigrator(func(cmd *cobra.Command, m *db.Migrator) error {
				return m.Down(cmd.Context())
			}),
		},
		&cobra.Command{
			Use:   "status",
			Short: "List the migrations and whether each is applied",
			Args:  cobra.NoArgs,
			RunE: withMigrator(func(cmd *cobra.Command, m *db.Migrator) error {
				st, err := m.Status(cmd.Context())
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "VERSION\tSTATE\tFILE")
				for _, s := range st {
					state := "pending"
					if s.Applied {
						state = "applied"
					}
					fmt.Fprintf(w, "%d\t%s\t%s\n", s.Version, state, s.Path)
				}
				return w.Flush()
			}),
		},
	)
	return cmd
}
