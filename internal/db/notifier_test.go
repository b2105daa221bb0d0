package db_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

// TestNotifierDetectsSwallowedNotifications puts a proxy between the server and PostgreSQL
// that forwards everything except NotificationResponse messages, which is what a
// transaction-pooling PgBouncer amounts to for LISTEN: the notifier must say so in the log.
// Through a plain connection the same probe must come back and log nothing.
func TestNotifierDetectsSwallowedNotifications(t *testing.T) {
	target := dbtest.URL(t)
	for _, tc := range []struct {
		name   string
		drop   bool
		expect bool
	}{{"direct", false, false}, {"swallowing proxy", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			u := proxied(t, target, tc.drop)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pool, err := db.Open(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			var logs syncBuffer
			n := db.NewNotifier(pool, slog.New(slog.NewTextHandler(&logs, nil)))
			n.ProbeTimeout = 2 * time.Second
			done := make(chan struct{})
			go func() { n.Run(ctx); close(done) }()
			time.Sleep(n.ProbeTimeout + time.Second)
			cancel()
			<-done
			got := strings.Contains(logs.String(), "delivers nothing")
			if got != tc.expect {
				t.Errorf("warning logged: %v, want %v; log:\n%s", got, tc.expect, logs.String())
			}
		})
	}
}

// proxied returns target's URL rerouted through a local TCP proxy. With drop, the proxy removes
// NotificationResponse ('A') messages from what the server sends.
func proxied(t *testing.T, target string, drop bool) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	backend := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", backend)
			if err != nil {
				client.Close()
				continue
			}
			go func() { _, _ = io.Copy(server, client); server.Close() }()
			go func() { forwardMessages(client, server, drop); client.Close() }()
		}
	}()
	q := u.Query()
	q.Set("sslmode", "disable") // the proxy parses plain protocol messages
	u.RawQuery = q.Encode()
	u.Host = ln.Addr().String()
	return u.String()
}

// forwardMessages copies backend messages (type byte, int32 length, body) from src to dst,
// leaving out notifications when drop is set.
func forwardMessages(dst io.Writer, src io.Reader, drop bool) {
	header := make([]byte, 5)
	for {
		if _, err := io.ReadFull(src, header); err != nil {
			return
		}
		body := make([]byte, int(binary.BigEndian.Uint32(header[1:]))-4)
		if _, err := io.ReadFull(src, body); err != nil {
			return
		}
		if drop && header[0] == 'A' {
			continue
		}
		if _, err := dst.Write(append(header, body...)); err != nil {
			return
		}
		header = make([]byte, 5)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestNotifierCountsReconnects terminates the LISTEN connection: the notifier reconnects and
// counts it (reports_server_notify_reconnects_total).
func TestNotifierCountsReconnects(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pool, err := db.Open(ctx, dbtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	n := db.NewNotifier(pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { n.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()
	terminate := func() int64 {
		var killed int64
		err := pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = $1 AND datname = current_database()`, db.ListenerApplicationName).Scan(&killed)
		if err != nil {
			t.Fatal(err)
		}
		return killed
	}
	for terminate() == 0 {
		if ctx.Err() != nil {
			t.Fatal("the LISTEN connection never showed up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for n.Reconnects() < 1 {
		if ctx.Err() != nil {
			t.Fatalf("reconnects = %d after the LISTEN connection was terminated, want ≥ 1", n.Reconnects())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
