package pgstorage_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

// TestCommitAnswerLost: a batch whose connection breaks while it commits is answered with the
// truth, not a 503 for a stored write. A proxy between the writer and PostgreSQL lets a COMMIT
// through and cuts the connection before its answer comes back: the writes committed, and the
// writer, asking PostgreSQL what became of the transaction, reports them as written with their
// revisions. When the connection is cut before COMMIT is sent, nothing is written and the writes
// fail as unavailable (503).
func TestCommitAnswerLost(t *testing.T) {
	ctx := context.Background()
	url := dbtest.URL(t)
	proxy := newCutProxy(t, url)
	s := processStore(t, proxy.url, "c1")
	obj := func(name string) []byte {
		return []byte(`{"apiVersion":"example.apiserver.k8s.io/v1","kind":"Pod","metadata":{"name":"` + name + `","namespace":"ns"}}`)
	}
	check, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close(ctx)
	exists := func(name string) bool {
		var n int
		if err := check.QueryRow(ctx, "SELECT count(*) FROM reports WHERE key = $1", "/pods/ns/"+name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}

	proxy.cut.Store("commit")
	got := s.CommitBatch([]pgstorage.WriteOp{
		{Kind: "create", Key: "/pods/ns/a", Data: obj("a")},
		{Kind: "create", Key: "/pods/ns/b", Data: obj("b")},
	})
	if proxy.cuts.Load() != 1 {
		t.Fatalf("the proxy cut %d connections at COMMIT, want 1", proxy.cuts.Load())
	}
	for i, r := range got {
		if r.Err != nil || r.Rev == 0 {
			t.Errorf("write %d after a lost COMMIT answer: revision %d, err %v; want its revision", i, r.Rev, r.Err)
		}
	}
	if !exists("a") || !exists("b") {
		t.Errorf("the committed writes are not in the database")
	}

	// Cut before COMMIT: the transaction aborts, nothing is written, and the answer says so.
	proxy.cut.Store("insert into reports") // the batch's first write (Parse on a new connection)
	got = s.CommitBatch([]pgstorage.WriteOp{{Kind: "create", Key: "/pods/ns/c", Data: obj("c")}})
	if proxy.cuts.Load() != 2 {
		t.Fatalf("the proxy cut %d connections, want 2", proxy.cuts.Load())
	}
	if got[0].Err == nil || !db.IsUnavailable(got[0].Err) {
		t.Errorf("write cut before COMMIT: err %v, want an unavailable error", got[0].Err)
	}
	if exists("c") {
		t.Errorf("a write cut before COMMIT is in the database")
	}
}

// TestCommitConfirmedByTheWrites: when the database reports a batch's transaction committed
// after the answer to COMMIT was lost, the writer checks the batch's writes, because after a
// crash PostgreSQL gives the ids (and the revisions) of lost transactions to new ones, whose
// commit is then reported for the lost batch (a create answered 201 that was never stored, found
// by TestDatabaseFaults/StopImmediate). One write found as written proves the batch committed,
// one found missing proves it did not, writes changed since prove nothing.
func TestCommitConfirmedByTheWrites(t *testing.T) {
	ctx := context.Background()
	s := processStore(t, dbtest.URL(t), "c1")
	obj := func(name, tag string) []byte {
		return []byte(`{"apiVersion":"example.apiserver.k8s.io/v1","kind":"Pod","metadata":{"name":"` + name +
			`","namespace":"ns","labels":{"tag":"` + tag + `"}}}`)
	}
	written := s.CommitBatch([]pgstorage.WriteOp{{Kind: "create", Key: "/pods/ns/a", Data: obj("a", "1")}})
	a := written[0].Rev
	written = s.CommitBatch([]pgstorage.WriteOp{{Kind: "create", Key: "/pods/ns/b", Data: obj("b", "1")}})
	b := written[0].Rev
	written = s.CommitBatch([]pgstorage.WriteOp{{Kind: "update", Key: "/pods/ns/b", Data: obj("b", "2"), Expected: b}})
	b2 := written[0].Rev
	if a == 0 || b == 0 || b2 == 0 {
		t.Fatalf("setup writes failed: %+v", written)
	}
	for _, tc := range []struct {
		name string
		ops  []pgstorage.WriteOp
		revs []int64
		want string
	}{
		{"the create is there", []pgstorage.WriteOp{{Kind: "create", Key: "/pods/ns/a", Data: obj("a", "1")}}, []int64{a}, "committed"},
		{"another object at its revision", []pgstorage.WriteOp{{Kind: "create", Key: "/pods/ns/a", Data: obj("a", "other")}}, []int64{a}, "aborted"},
		{"its key at an older revision", []pgstorage.WriteOp{{Kind: "update", Key: "/pods/ns/a", Data: obj("a", "3"), Expected: a}}, []int64{b2 + 1}, "aborted"},
		{"a delete whose key is still there", []pgstorage.WriteOp{{Kind: "delete", Key: "/pods/ns/b", Expected: b2}}, []int64{b2}, "aborted"},
		{"absent: never written, or deleted since", []pgstorage.WriteOp{{Kind: "create", Key: "/pods/ns/c", Data: obj("c", "1")}}, []int64{b2 + 1}, "unknown"},
		{"overwritten since", []pgstorage.WriteOp{{Kind: "create", Key: "/pods/ns/b", Data: obj("b", "1")}}, []int64{b}, "unknown"},
		{"one write of the batch tells", []pgstorage.WriteOp{
			{Kind: "create", Key: "/pods/ns/c", Data: obj("c", "1")},
			{Kind: "update", Key: "/pods/ns/b", Data: obj("b", "2"), Expected: b},
		}, []int64{b2 - 1, b2}, "committed"},
		{"a failed precondition tells nothing", []pgstorage.WriteOp{{Kind: "create", Key: "/pods/ns/a", Data: obj("a", "1")}}, []int64{0}, "unknown"},
	} {
		got, err := s.ConfirmBatch(ctx, tc.ops, tc.revs)
		if err != nil || got != tc.want {
			t.Errorf("%s: %s, %v; want %s", tc.name, got, err, tc.want)
		}
	}
}

// cutProxy forwards PostgreSQL connections from a loopback port to the test's server and, when
// armed with a piece of SQL, cuts the connection that sends a query (simple, or the Parse of an
// extended one) containing it: the message reaches the server, no answer reaches the client.
type cutProxy struct {
	url  string       // the test database, through the proxy
	cut  atomic.Value // string: the lower-case SQL that triggers a cut ("" none)
	cuts atomic.Int32
}

func newCutProxy(t *testing.T, databaseURL string) *cutProxy {
	t.Helper()
	cfg, err := pgconn.ParseConfig(databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	network, addr := "tcp", net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	if strings.HasPrefix(cfg.Host, "/") {
		network, addr = "unix", fmt.Sprintf("%s/.s.PGSQL.%d", cfg.Host, cfg.Port)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{}
	p.cut.Store("")
	port := ln.Addr().(*net.TCPAddr).Port
	p.url = fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", port, cfg.User, cfg.Database)
	if cfg.Password != "" {
		p.url += " password=" + cfg.Password
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial(network, addr)
			if err != nil {
				client.Close()
				continue
			}
			wg.Go(func() { p.relay(client, server) })
		}
	})
	return p
}

// relay copies one connection both ways, reading the client's messages to find the one to cut at.
func (p *cutProxy) relay(client, server net.Conn) {
	defer client.Close()
	defer server.Close()
	var blackhole atomic.Bool
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 && !blackhole.Load() {
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				client.Close()
				return
			}
		}
	}()
	r := bufio.NewReader(client)
	// The startup message has no type byte.
	if err := forward(r, server, false, nil); err != nil {
		return
	}
	for {
		err := forward(r, server, true, func(t byte, body []byte) {
			prefix, _ := p.cut.Load().(string)
			if (t == 'Q' || t == 'P') && prefix != "" && bytes.Contains(bytes.ToLower(body), []byte(prefix)) {
				blackhole.Store(true)
			}
		})
		if err != nil {
			return
		}
		if blackhole.Load() {
			p.cut.Store("")
			p.cuts.Add(1)
			time.Sleep(200 * time.Millisecond) // the server runs the statement
			return
		}
	}
}

// forward copies one message from r to w; inspect sees it first (after the server has it, when
// it is the one to cut at, the blackhole is already set: the inspection runs before writing).
func forward(r *bufio.Reader, w io.Writer, typed bool, inspect func(byte, []byte)) error {
	var typ byte
	if typed {
		b, err := r.ReadByte()
		if err != nil {
			return err
		}
		typ = b
	}
	var lenBuf [4]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(lenBuf[:])
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return err
	}
	if inspect != nil {
		inspect(typ, body)
	}
	msg := append([]byte{}, lenBuf[:]...)
	msg = append(msg, body...)
	if typed {
		msg = append([]byte{typ}, msg...)
	}
	_, err := w.Write(msg)
	return err
}
