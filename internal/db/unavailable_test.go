package db_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/reports-server/reports-server/internal/db"
)

// TestIsUnavailable checks the classification that turns database failures into 503 (retry)
// rather than 500: a connection that breaks under a statement, as during an immediate shutdown,
// is the database being away.
func TestIsUnavailable(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("write batch: %w", reset), true},
		{fmt.Errorf("query: %w", io.ErrUnexpectedEOF), true},
		{fmt.Errorf("commit: %w", io.EOF), true},
		{fmt.Errorf("exec: %w", pgconn.ErrConnClosed), true},
		{fmt.Errorf("send: %w", syscall.EPIPE), true},
		{&pgconn.PgError{Code: "57P01"}, true}, // admin shutdown
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "53300"}, true}, // too many connections
		{&pgconn.PgError{Code: "22P05"}, false},
		{&pgconn.PgError{Code: "23505"}, false},
		{errors.New("decode stored object"), false},
		{nil, false},
	} {
		if got := db.IsUnavailable(tc.err); got != tc.want {
			t.Errorf("IsUnavailable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
