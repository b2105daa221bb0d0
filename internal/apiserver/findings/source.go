// Package findings serves the analytics.reports-server.io API group: read-only Kubernetes resources over the SQL
// analytics (docs/design.md, "Findings through kubectl"). Finding and ClusterFinding are the results (the rows of
// reporting.results, read from its tables) of namespaced and cluster-scoped reports; FindingSummary
// are the rows of the materialized summaries. Nothing is stored: every request is one read-only transaction of
// sqlc queries (sql/queries/findings.sql), with field selectors and keyset pages in SQL.
//
// The resources support get and list only: kubectl get, -o, --field-selector, --chunk-size and explain work;
// watch does not (405), since the projection has no change log of its own to follow.
package findings

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/storage"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/db"
)

// Config is what the resources read from.
type Config struct {
	// Pool is the reports database.
	Pool *pgxpool.Pool
	// Replica, when set, serves the reads whose projection it has replayed up to the primary's
	// (db.Replica).
	Replica *db.Replica
	// Cluster is the server's cluster: only its rows are served.
	Cluster string
	// Projecting tells whether this server runs the analytics projector (--analytics). Without it nothing
	// guarantees that the tables follow the reports, so the resources answer 503 instead of stale rows.
	Projecting bool
}

// source is the state the resources share.
type source struct {
	cfg   Config
	q     *db.Queries
	kinds reportKinds
}

func newSource(cfg Config) (*source, error) {
	if cfg.Pool == nil || cfg.Cluster == "" {
		return nil, errors.New("findings: pool and cluster are required")
	}
	kinds, err := newReportKinds(reports.All())
	if err != nil {
		return nil, err
	}
	return &source{cfg: cfg, q: db.New(), kinds: kinds}, nil
}

// read runs fn in one read-only REPEATABLE READ transaction, so everything fn reads (a page and the
// revision it reflects) comes from one snapshot. Plans are custom per execution: the list queries
// switch predicates off with NULL parameters, which only a plan made for the actual values can fold
// away to use the right index.
func (s *source) read(ctx context.Context, gr schema.GroupResource, fn func(pgx.Tx) error) error {
	if !s.cfg.Projecting {
		return notProjecting(gr)
	}
	floor, err := s.primaryCheckpoint(ctx)
	if err != nil {
		return apiError(gr, err)
	}
	err = s.cfg.Replica.ReadTx(ctx, s.cfg.Pool, func(tx pgx.Tx, onReplica bool) error {
		if onReplica {
			// Never older than what the primary serves now: the replica's projection must have
			// reached the primary's checkpoint (so also every continue token's).
			state, err := s.q.AnalyticsClusterState(ctx, tx, s.cfg.Cluster)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			if state.Checkpoint < floor {
				return db.ErrReplicaBehind
			}
		}
		if err := s.q.FindingsCustomPlans(ctx, tx); err != nil {
			return fmt.Errorf("set plan cache mode: %w", err)
		}
		return fn(tx)
	})
	return apiError(gr, err)
}

// primaryCheckpoint is the primary's projection checkpoint when there is a replica (what a read
// on the replica must have reached), else 0 without a query.
func (s *source) primaryCheckpoint(ctx context.Context) (int64, error) {
	if !s.cfg.Replica.Active() {
		return 0, nil
	}
	state, err := s.q.AnalyticsClusterState(ctx, s.cfg.Pool, s.cfg.Cluster)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the projection checkpoint: %w", err)
	}
	return state.Checkpoint, nil
}

// checkpoint returns the revision of the cluster that the projection reflects: every report write
// up to it is in the table, none after. It is 503 (retry) before the projector's first pass.
func (s *source) checkpoint(ctx context.Context, tx pgx.Tx, gr schema.GroupResource) (int64, error) {
	state, err := s.q.AnalyticsClusterState(ctx, tx, s.cfg.Cluster)
	if errors.Is(err, pgx.ErrNoRows) {
		// No revision row: nothing was ever stored in this cluster, so nothing is missing either.
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read projection checkpoint: %w", err)
	}
	if state.Checkpoint < 0 {
		return 0, &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure,
			Code:   http.StatusServiceUnavailable,
			Reason: metav1.StatusReasonServiceUnavailable,
			Message: fmt.Sprintf("%s are not available yet: the analytics projector has not made its first pass over "+
				"cluster %q; retry shortly", gr, s.cfg.Cluster),
			Details: &metav1.StatusDetails{Group: gr.Group, Kind: gr.Resource, RetryAfterSeconds: 1},
		}}
	}
	return state.Checkpoint, nil
}

// notProjecting is the answer of a server started with --analytics=false.
func notProjecting(gr schema.GroupResource) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure,
		Code:   http.StatusServiceUnavailable,
		Reason: metav1.StatusReasonServiceUnavailable,
		Message: fmt.Sprintf("%s are served only by servers that run the analytics projector: this one was started "+
			"with --analytics=false (start it with --analytics=true, the default)", gr),
		Details: &metav1.StatusDetails{Group: gr.Group, Kind: gr.Resource},
	}}
}

// apiError maps a failed read to an API status: API errors as they are, an unreachable or overloaded
// database 503 with a retry hint (as the report storage does), anything else 500.
func apiError(gr schema.GroupResource, err error) error {
	if err == nil {
		return nil
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return storage.NewTimeoutError(gr.String(), fmt.Sprintf("read did not complete: %v", err))
	}
	if db.IsUnavailable(err) {
		return &apierrors.StatusError{ErrStatus: metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusServiceUnavailable,
			Reason:  metav1.StatusReasonServiceUnavailable,
			Message: fmt.Sprintf("the report database is unavailable (reading %s): %v; retry shortly", gr, err),
			Details: &metav1.StatusDetails{RetryAfterSeconds: 1},
		}}
	}
	return apierrors.NewInternalError(fmt.Errorf("read %s: %w", gr, err))
}

// listOptions checks what a list asks for beyond field selectors: no labels, no past revisions.
func listOptions(opts *metainternalversion.ListOptions, supportedFields []string) error {
	if opts == nil {
		return nil
	}
	if err := rejectLabels(opts.LabelSelector, supportedFields); err != nil {
		return err
	}
	if opts.ResourceVersionMatch == metav1.ResourceVersionMatchExact {
		return apierrors.NewBadRequest("resourceVersionMatch=Exact is not supported: findings are listed from the latest projection only")
	}
	return nil
}

// pageLimit is the number of rows a page returns (limit 0: all of them, as for any list) and the
// number the query asks for: one more, to know whether another page follows.
func pageLimit(limit int64) (page int, query int32) {
	const maxRows = 1<<31 - 2
	if limit <= 0 || limit > maxRows {
		return maxRows, maxRows + 1
	}
	return int(limit), int32(limit) + 1
}

// microTime converts an optional timestamp.
func microTime(t time.Time, valid bool) *metav1.MicroTime {
	if !valid {
		return nil
	}
	mt := metav1.NewMicroTime(t)
	return &mt
}
