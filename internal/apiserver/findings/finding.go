package findings

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"

	analyticsv1alpha1 "github.com/reports-server/reports-server/internal/apis/analytics/v1alpha1"
	"github.com/reports-server/reports-server/internal/apiserver/tables"
	"github.com/reports-server/reports-server/internal/db/sqlc"
)

// findingREST serves Finding (namespaced: results of namespaced reports, in the report's namespace)
// or ClusterFinding (results of cluster-scoped reports).
type findingREST struct {
	src        *source
	namespaced bool
	resource   schema.GroupResource
	singular   string
	tables.Convertor
}

var (
	_ rest.Storage              = (*findingREST)(nil)
	_ rest.Getter               = (*findingREST)(nil)
	_ rest.Lister               = (*findingREST)(nil)
	_ rest.Scoper               = (*findingREST)(nil)
	_ rest.SingularNameProvider = (*findingREST)(nil)
	_ rest.TableConvertor       = (*findingREST)(nil)
)

func newFindingREST(src *source, namespaced bool) *findingREST {
	r := &findingREST{src: src, namespaced: namespaced}
	if namespaced {
		r.resource, r.singular = analyticsv1alpha1.SchemeGroupVersion.WithResource("findings").GroupResource(), "finding"
	} else {
		r.resource, r.singular = analyticsv1alpha1.SchemeGroupVersion.WithResource("clusterfindings").GroupResource(), "clusterfinding"
	}
	r.Convertor = tables.New(r.resource, findingCells,
		column("Policy", "string", "The result's policy.", 0),
		column("Rule", "string", "The result's rule.", 0),
		column("Result", "string", "pass, fail, warn, error or skip; none for vulnerability scanners.", 0),
		column("Severity", "string", "critical, high, medium, low or info.", 0),
		column("Subject", "string", "Kind/name of the resource the result is about.", 0),
		column("Age", "date", "Time since the result's timestamp.", 0),
		column("Source", "string", "The result's source (the producer).", 1),
		column("Category", "string", "The result's category.", 1),
		column("Score", "number", "CVSS-like score.", 1),
		column("Report", "string", "Kind/name of the report.", 1),
		column("Message", "string", "The result's message.", 1),
	)
	return r
}

// New implements rest.Storage.
func (r *findingREST) New() runtime.Object {
	if r.namespaced {
		return &analyticsv1alpha1.Finding{}
	}
	return &analyticsv1alpha1.ClusterFinding{}
}

// NewList implements rest.Lister.
func (r *findingREST) NewList() runtime.Object {
	if r.namespaced {
		return &analyticsv1alpha1.FindingList{}
	}
	return &analyticsv1alpha1.ClusterFindingList{}
}

// Destroy implements rest.Storage: the pool belongs to the server.
func (r *findingREST) Destroy() {}

// NamespaceScoped implements rest.Scoper.
func (r *findingREST) NamespaceScoped() bool { return r.namespaced }

// GetSingularName implements rest.SingularNameProvider.
func (r *findingREST) GetSingularName() string { return r.singular }

// Get implements rest.Getter: a lookup of the name's report (namespace and key) and position.
func (r *findingREST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	n, ok := r.src.kinds.parse(name)
	if !ok || n.kind.Namespaced != r.namespaced {
		return nil, apierrors.NewNotFound(r.resource, name)
	}
	var obj runtime.Object
	err := r.src.read(ctx, r.resource, func(tx pgx.Tx) error {
		if _, err := r.src.checkpoint(ctx, tx, r.resource); err != nil {
			return err
		}
		namespace := ""
		if r.namespaced {
			namespace = genericapirequest.NamespaceValue(ctx)
		}
		row, err := r.src.q.GetFinding(ctx, tx, sqlc.GetFindingParams{
			Cluster: r.src.cfg.Cluster, Namespace: namespace, Key: n.key(namespace), ResultIndex: n.index,
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return apierrors.NewNotFound(r.resource, name)
		}
		if err != nil {
			return fmt.Errorf("get finding: %w", err)
		}
		meta, fields, err := r.src.finding(sqlc.ListFindingsRow(row))
		if err != nil {
			return err
		}
		if r.namespaced {
			obj = &analyticsv1alpha1.Finding{ObjectMeta: meta, FindingFields: fields}
		} else {
			obj = &analyticsv1alpha1.ClusterFinding{ObjectMeta: meta, FindingFields: fields}
		}
		return nil
	})
	return obj, err
}

// List implements rest.Lister: one keyset page, every selector a predicate of the query. Its
// resourceVersion is the cluster revision the results reflect (the projection checkpoint): the
// page holds the effect of every report write up to it and of none after.
func (r *findingREST) List(ctx context.Context, opts *metainternalversion.ListOptions) (runtime.Object, error) {
	params, page, none, err := r.listParams(ctx, opts)
	if err != nil {
		return nil, err
	}
	var (
		rows     []sqlc.ListFindingsRow
		revision int64
	)
	err = r.src.read(ctx, r.resource, func(tx pgx.Tx) error {
		var err error
		if revision, err = r.src.checkpoint(ctx, tx, r.resource); err != nil || none {
			return err
		}
		if rows, err = r.src.q.ListFindings(ctx, tx, params); err != nil {
			return fmt.Errorf("list findings: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	listMeta := metav1.ListMeta{ResourceVersion: strconv.FormatInt(revision, 10)}
	if len(rows) > page {
		rows = rows[:page]
		last := rows[page-1]
		listMeta.Continue = continueToken{Namespace: last.ReportNamespace, Key: last.Key, Index: last.ResultIndex}.encode()
	}
	if r.namespaced {
		list := &analyticsv1alpha1.FindingList{ListMeta: listMeta, Items: make([]analyticsv1alpha1.Finding, 0, len(rows))}
		for _, row := range rows {
			meta, fields, err := r.src.finding(row)
			if err != nil {
				return nil, apiError(r.resource, err)
			}
			list.Items = append(list.Items, analyticsv1alpha1.Finding{ObjectMeta: meta, FindingFields: fields})
		}
		return list, nil
	}
	list := &analyticsv1alpha1.ClusterFindingList{ListMeta: listMeta, Items: make([]analyticsv1alpha1.ClusterFinding, 0, len(rows))}
	for _, row := range rows {
		meta, fields, err := r.src.finding(row)
		if err != nil {
			return nil, apiError(r.resource, err)
		}
		list.Items = append(list.Items, analyticsv1alpha1.ClusterFinding{ObjectMeta: meta, FindingFields: fields})
	}
	return list, nil
}

// listParams translates a list request into the parameters of ListFindings, the number of rows
// its page returns, and whether the selector matches nothing at all (no query needed).
func (r *findingREST) listParams(ctx context.Context, opts *metainternalversion.ListOptions) (sqlc.ListFindingsParams, int, bool, error) {
	if opts == nil {
		opts = &metainternalversion.ListOptions{}
	}
	if err := listOptions(opts, analyticsv1alpha1.FindingFieldSelectors); err != nil {
		return sqlc.ListFindingsParams{}, 0, false, err
	}
	filter, err := parseFindingSelector(opts.FieldSelector, r.src.kinds)
	if err != nil {
		return sqlc.ListFindingsParams{}, 0, false, err
	}
	if !r.namespaced {
		filter.restrictNamespace("")
	} else if ns := genericapirequest.NamespaceValue(ctx); ns != "" {
		filter.restrictNamespace(ns)
	}
	after, err := decodeContinue(opts.Continue)
	if err != nil {
		return sqlc.ListFindingsParams{}, 0, false, err
	}
	page, queryLimit := pageLimit(opts.Limit)
	params := sqlc.ListFindingsParams{Cluster: r.src.cfg.Cluster, Namespaced: r.namespaced, RowLimit: queryLimit}
	filter.apply(&params)
	if after != nil {
		params.AfterNamespace = pgtype.Text{String: after.Namespace, Valid: true}
		params.AfterKey = pgtype.Text{String: after.Key, Valid: true}
		params.AfterIndex = pgtype.Int4{Int32: after.Index, Valid: true}
	}
	return params, page, filter.none, nil
}

// finding converts a result row (ListFindings, GetFinding). The resourceVersion is the report's: a finding
// changes exactly when its report is written.
func (s *source) finding(row sqlc.ListFindingsRow) (metav1.ObjectMeta, analyticsv1alpha1.FindingFields, error) {
	name, err := s.kinds.name(row.ReportApiGroup, row.ReportKind.String, row.ReportName.String, row.ResultIndex)
	if err != nil {
		return metav1.ObjectMeta{}, analyticsv1alpha1.FindingFields{}, err
	}
	meta := metav1.ObjectMeta{
		Name:            name,
		Namespace:       row.ReportNamespace,
		UID:             findingUID(row),
		ResourceVersion: strconv.FormatInt(row.ReportResourceVersion, 10),
	}
	f := analyticsv1alpha1.FindingFields{
		Report: analyticsv1alpha1.ReportReference{
			APIVersion:  row.ReportApiVersion.String,
			Kind:        row.ReportKind.String,
			Name:        row.ReportName.String,
			UID:         types.UID(row.ReportUid.String),
			ResultIndex: row.ResultIndex,
		},
		Source:    row.Source.String,
		Policy:    row.Policy.String,
		Rule:      row.Rule.String,
		Category:  row.Category.String,
		Severity:  row.Severity,
		Result:    row.Result,
		Finding:   row.Finding,
		Message:   row.Message.String,
		Timestamp: microTime(row.Timestamp.Time, row.Timestamp.Valid),
	}
	if row.Scored.Valid {
		f.Scored = &row.Scored.Bool
	}
	if row.Score.Valid {
		f.Score = &row.Score.Float64
	}
	if anyValid(row.ResourceApiVersion, row.ResourceKind, row.ResourceNamespace, row.ResourceName, row.ResourceUid) {
		f.Subject = &analyticsv1alpha1.SubjectReference{
			APIVersion: row.ResourceApiVersion.String,
			Kind:       row.ResourceKind.String,
			Namespace:  row.ResourceNamespace.String,
			Name:       row.ResourceName.String,
			UID:        types.UID(row.ResourceUid.String),
		}
	}
	if f.Properties, err = properties(row.Properties); err != nil {
		return metav1.ObjectMeta{}, analyticsv1alpha1.FindingFields{}, fmt.Errorf("finding %s: %w", name, err)
	}
	return meta, f, nil
}

func anyValid(texts ...pgtype.Text) bool {
	for _, t := range texts {
		if t.Valid {
			return true
		}
	}
	return false
}

// properties decodes the properties object. Values are strings in every report schema; anything
// else (written before validation existed, say) is kept as its JSON text rather than failing the list.
func properties(raw []byte) (map[string]string, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var values map[string]json.RawMessage
	if err := json.Unmarshal(raw, &values); err != nil {
		return nil, fmt.Errorf("decode properties: %w", err)
	}
	out := make(map[string]string, len(values))
	for k, v := range values {
		var s string
		if json.Unmarshal(v, &s) != nil {
			s = string(v)
		}
		out[k] = s
	}
	return out, nil
}

// findingUID identifies what a name denotes: the report (by uid) and, at the name's position, the
// result's identity (source, policy, rule, category, subject). It stays when only the outcome
// changes (result, severity, message, timestamp) and changes when another result takes the
// position, as a uid does for an object deleted and recreated under the same name. It has the
// form of an RFC 9562 version 8 (custom) UUID.
func findingUID(row sqlc.ListFindingsRow) types.UID {
	h := sha256.New()
	for _, s := range []string{
		row.ReportUid.String, strconv.FormatInt(int64(row.ResultIndex), 10), row.Source.String, row.Policy.String,
		row.Rule.String, row.Category.String, row.ResourceKind.String, row.ResourceNamespace.String, row.ResourceName.String,
	} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	b := h.Sum(nil)[:16]
	b[6] = b[6]&0x0f | 0x80 // version 8
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	return types.UID(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}

// findingCells are the table cells of a Finding or ClusterFinding after its name.
func findingCells(obj runtime.Object) []any {
	var f *analyticsv1alpha1.FindingFields
	switch o := obj.(type) {
	case *analyticsv1alpha1.Finding:
		f = &o.FindingFields
	case *analyticsv1alpha1.ClusterFinding:
		f = &o.FindingFields
	default:
		return nil
	}
	var subject, ts, score any
	if s := f.Subject; s != nil && (s.Kind != "" || s.Name != "") {
		subject = s.Kind + "/" + s.Name
	}
	if f.Timestamp != nil {
		t := metav1.NewTime(f.Timestamp.Time)
		ts = age(&t)
	}
	if f.Score != nil {
		score = *f.Score
	}
	return []any{
		optional(f.Policy), optional(f.Rule), optional(f.Result), optional(f.Severity), subject, ts,
		optional(f.Source), optional(f.Category), score, f.Report.Kind + "/" + f.Report.Name, optional(f.Message),
	}
}
