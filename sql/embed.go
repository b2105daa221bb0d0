// Package sql embeds the project's SQL so the binary carries its own migrations.
// go:embed cannot reach parent directories, so this file lives beside the SQL it embeds.
package sql

import "embed"

// Schema holds the goose migrations under schema/.
//
//go:embed schema/*.sql
var Schema embed.FS
