package db

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reports-server/reports-server/internal/db/sqlc"
)

// ChangesChannel is the NOTIFY channel every write signals on, with a Change as payload.
const ChangesChannel = "reports_changes"

// Change is the message of the change-notification protocol, the one place it is encoded and
// decoded. On the wire (a NOTIFY payload) it says that a write of Cluster committed Revision:
// "cluster:revision". Resync never goes on the wire: the notifier hands it to subscribers when
// notifications may have been lost (the LISTEN connection was re-established, or a subscriber
// fell behind), and every subscriber must then look for itself.
type Change struct {
	Cluster  string
	Revision int64
	Resync   bool
}

// Payload is c as a NOTIFY payload.
func (c Change) Payload() string {
	return c.Cluster + ":" + strconv.FormatInt(c.Revision, 10)
}

// ParseChange decodes a NOTIFY payload; ok is false for anything that is not a change.
func ParseChange(payload string) (c Change, ok bool) {
	// The revision follows the last colon: cluster names may contain colons.
	i := strings.LastIndexByte(payload, ':')
	if i < 0 {
		return Change{}, false
	}
	rev, err := strconv.ParseInt(payload[i+1:], 10, 64)
	if err != nil {
		return Change{}, false
	}
	return Change{Cluster: payload[:i], Revision: rev}, true
}

const probePrefix = "probe:"

// ListenerApplicationName is the application_name of the LISTEN connection.
const ListenerApplicationName = "reports-server-listener"

// Notifier owns one dedicated LISTEN connection, taken out of the pool, and fans notifications out
// to in-process subscribers. It reconnects after losing the connection and then hands every
// subscriber a resync, because notifications sent while it was away are lost.
type Notifier struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	// ProbeTimeout is how long the start-up probe notification may take to come back before
	// the notifier reports that notifications are not delivered. Set it before Run.
	ProbeTimeout time.Duration

	mu   sync.Mutex
	subs map[chan Change]struct{}

	reconnects atomic.Int64
}

// Reconnects is how often the LISTEN connection was lost (or could not be made) and retried.
func (n *Notifier) Reconnects() int64 { return n.reconnects.Load() }

// NewNotifier returns a notifier; Run starts it.
func NewNotifier(pool *pgxpool.Pool, log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.Default()
	}
	return &Notifier{pool: pool, log: log, subs: map[chan Change]struct{}{}, ProbeTimeout: 10 * time.Second}
}

// Subscribe returns a channel of changes and a cancel function. Delivery never blocks the
// notifier: a subscriber that is behind gets the newest change replaced by a resync.
func (n *Notifier) Subscribe() (<-chan Change, func()) {
	ch := make(chan Change, 16)
	n.mu.Lock()
	n.subs[ch] = struct{}{}
	n.mu.Unlock()
	return ch, func() {
		n.mu.Lock()
		delete(n.subs, ch)
		n.mu.Unlock()
	}
}

func (n *Notifier) publish(c Change) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.subs {
		select {
		case ch <- c:
		default:
			// Full: drop the oldest and ask for a resync instead, which covers everything.
			select {
			case <-ch:
			default:
			}
			select {
			case ch <- Change{Resync: true}:
			default:
			}
		}
	}
}

// Run listens until ctx ends, reconnecting with backoff.
func (n *Notifier) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := n.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		n.reconnects.Add(1)
		n.log.Warn("LISTEN connection lost; watchers fall back to polling until it is back", "err", err, "retry_in", backoff)
		n.publish(Change{Resync: true})
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func (n *Notifier) listen(ctx context.Context) error {
	pc, err := n.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire listen connection: %w", err)
	}
	// Hijack: the connection leaves the pool for good, so no query ever shares it.
	conn := pc.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	// A name operators (and tests) can find in pg_stat_activity.
	if _, err := conn.Exec(ctx, "SET application_name = '"+ListenerApplicationName+"'"); err != nil {
		return fmt.Errorf("name listen connection: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ChangesChannel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Anything that happened before LISTEN took effect was missed: resync everyone.
	n.publish(Change{Resync: true})
	probe := n.startProbe(ctx)
	for {
		note, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if probe.received(note.Payload) {
			continue
		}
		if c, ok := ParseChange(note.Payload); ok {
			n.publish(c)
		}
	}
}

// probe sends one notification through the pool right after LISTEN and warns when it does not
// come back: a pooler in transaction mode (e.g. PgBouncer) accepts LISTEN but delivers nothing.
type probe struct {
	payload string
	got     chan struct{}
	once    sync.Once
}

func (n *Notifier) startProbe(ctx context.Context) *probe {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	p := &probe{payload: probePrefix + hex.EncodeToString(b), got: make(chan struct{})}
	go func() {
		q := New()
		if err := q.Notify(ctx, n.pool, sqlc.NotifyParams{Channel: ChangesChannel, Payload: p.payload}); err != nil {
			if ctx.Err() == nil {
				n.log.Warn("could not send LISTEN probe", "err", err)
			}
			return
		}
		select {
		case <-p.got:
		case <-ctx.Done():
		case <-time.After(n.ProbeTimeout):
			n.log.Error("LISTEN/NOTIFY delivers nothing on this database connection: is a transaction-pooling proxy (e.g. PgBouncer in transaction mode) in the path? Watches still work by polling, with more latency; connect reports-server to PostgreSQL directly or through a session-mode pooler.")
		}
	}()
	return p
}

func (p *probe) received(payload string) bool {
	if payload != p.payload {
		return len(payload) > len(probePrefix) && payload[:len(probePrefix)] == probePrefix
	}
	p.once.Do(func() { close(p.got) })
	return true
}
