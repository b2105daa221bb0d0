package findings

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/registry/rest"

	analyticsv1alpha1 "github.com/reports-server/reports-server/internal/apis/analytics/v1alpha1"
	"github.com/reports-server/reports-server/internal/apiserver/tables"
	"github.com/reports-server/reports-server/internal/db/sqlc"
)

// summaryREST serves FindingSummary: the rows of the four materialized summaries, in the order
// Cluster, Namespace, Policy, Resource, each in the order of its view's unique index.
type summaryREST struct {
	src      *source
	resource schema.GroupResource
	tables.Convertor
}

var (
	_ rest.Storage              = (*summaryREST)(nil)
	_ rest.Getter               = (*summaryREST)(nil)
	_ rest.Lister               = (*summaryREST)(nil)
	_ rest.Scoper               = (*summaryREST)(nil)
	_ rest.SingularNameProvider = (*summaryREST)(nil)
	_ rest.TableConvertor       = (*summaryREST)(nil)
)

// summaryTypes is the list order; a continue token names the type its page ended in.
var summaryTypes = []analyticsv1alpha1.SummaryType{
	analyticsv1alpha1.SummaryCluster, analyticsv1alpha1.SummaryNamespace,
	analyticsv1alpha1.SummaryPolicy, analyticsv1alpha1.SummaryResource,
}

// summaryFields are the selectable fields each type has; on the others the field is "".
var summaryFields = map[analyticsv1alpha1.SummaryType][]string{
	analyticsv1alpha1.SummaryCluster:   nil,
	analyticsv1alpha1.SummaryNamespace: {"namespace"},
	analyticsv1alpha1.SummaryPolicy:    {"source", "policy"},
	analyticsv1alpha1.SummaryResource:  {"namespace", "subject.kind", "subject.name"},
}

func newSummaryREST(src *source) *summaryREST {
	r := &summaryREST{src: src, resource: analyticsv1alpha1.SchemeGroupVersion.WithResource("findingsummaries").GroupResource()}
	r.Convertor = tables.New(r.resource, summaryCells,
		column("Type", "string", "Cluster, Namespace, Policy or Resource.", 0),
		column("Scope", "string", "What is counted: the namespace, source/policy or namespace/kind/name.", 0),
		column("Results", "integer", "Results.", 0),
		column("Pass", "integer", "Results with result pass.", 0),
		column("Fail", "integer", "Results with result fail.", 0),
		column("Warn", "integer", "Results with result warn.", 0),
		column("Error", "integer", "Results with result error.", 0),
		column("Skip", "integer", "Results with result skip.", 0),
		column("Critical", "integer", "Findings of severity critical.", 0),
		column("High", "integer", "Findings of severity high.", 0),
		column("Refreshed", "date", "Time since the summary was refreshed.", 0),
		column("Findings", "integer", "Findings: results that are fail, warn, error, or have none.", 1),
		column("Medium", "integer", "Findings of severity medium.", 1),
		column("Low", "integer", "Findings of severity low.", 1),
		column("Info", "integer", "Findings of severity info.", 1),
	)
	return r
}

// New implements rest.Storage.
func (r *summaryREST) New() runtime.Object { return &analyticsv1alpha1.FindingSummary{} }

// NewList implements rest.Lister.
func (r *summaryREST) NewList() runtime.Object { return &analyticsv1alpha1.FindingSummaryList{} }

// Destroy implements rest.Storage.
func (r *summaryREST) Destroy() {}

// NamespaceScoped implements rest.Scoper: summaries span namespaces.
func (r *summaryREST) NamespaceScoped() bool { return false }

// GetSingularName implements rest.SingularNameProvider.
func (r *summaryREST) GetSingularName() string { return "findingsummary" }

// Get implements rest.Getter. The name's prefix is the type, so one view is searched.
func (r *summaryREST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	typ, ok := summaryTypeOf(name)
	if !ok {
		return nil, apierrors.NewNotFound(r.resource, name)
	}
	filter := summaryFilter{text: map[string]*textFilter{"metadata.name": {eq: &name}}}
	var rows []analyticsv1alpha1.FindingSummary
	err := r.src.read(ctx, r.resource, func(tx pgx.Tx) error {
		var err error
		rows, err = r.src.summaries(ctx, tx, typ, filter, nil, 1)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, apierrors.NewNotFound(r.resource, name)
	}
	return &rows[0], nil
}

// List implements rest.Lister. Its resourceVersion is the oldest projection generation the four
// summaries reflect (analytics_refreshes): it grows with every refresh that had changes to count.
func (r *summaryREST) List(ctx context.Context, opts *metainternalversion.ListOptions) (runtime.Object, error) {
	if opts == nil {
		opts = &metainternalversion.ListOptions{}
	}
	if err := listOptions(opts, analyticsv1alpha1.SummaryFieldSelectors); err != nil {
		return nil, err
	}
	filter, err := parseSummarySelector(opts.FieldSelector, analyticsv1alpha1.SummaryFieldSelectors)
	if err != nil {
		return nil, err
	}
	after, err := decodeContinue(opts.Continue)
	if err != nil {
		return nil, err
	}
	start := 0
	if after != nil {
		if start = slices.Index(summaryTypes, analyticsv1alpha1.SummaryType(after.Type)); start < 0 {
			return nil, apierrors.NewBadRequest("invalid continue token: pass the metadata.continue of the previous page unchanged")
		}
	}
	page, queryLimit := pageLimit(opts.Limit)

	list := &analyticsv1alpha1.FindingSummaryList{}
	err = r.src.read(ctx, r.resource, func(tx pgx.Tx) error {
		refreshes, err := r.src.q.AnalyticsRefreshes(ctx, tx)
		if err != nil {
			return fmt.Errorf("read summary refreshes: %w", err)
		}
		var generation int64 = -1
		for _, f := range refreshes {
			if generation < 0 || f.Generation < generation {
				generation = f.Generation
			}
		}
		list.ResourceVersion = strconv.FormatInt(max(generation, 0), 10)
		if filter.none {
			return nil
		}
		for i, typ := range summaryTypes[start:] {
			var keys []string
			if i == 0 && after != nil {
				if typ == analyticsv1alpha1.SummaryCluster {
					continue // one row per cluster: a page that ended in it ended the type
				}
				keys = after.Keys
			}
			rows, err := r.src.summaries(ctx, tx, typ, filter, keys, queryLimit-int32(len(list.Items)))
			if err != nil {
				return err
			}
			list.Items = append(list.Items, rows...)
			if len(list.Items) > page {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(list.Items) > page {
		list.Items = list.Items[:page]
		last := &list.Items[page-1]
		list.Continue = continueToken{Type: string(last.Type), Keys: summaryKeys(last)}.encode()
	}
	return list, nil
}

// summaryTypeOf reads the type from a name's prefix.
func summaryTypeOf(name string) (analyticsv1alpha1.SummaryType, bool) {
	prefix, _, ok := strings.Cut(name, "-")
	for _, t := range summaryTypes {
		if ok && prefix == strings.ToLower(string(t)) {
			return t, true
		}
	}
	return "", false
}

// summaryKeys are the key columns of a summary in its view's index order.
func summaryKeys(s *analyticsv1alpha1.FindingSummary) []string {
	var kind, name string
	if s.Subject != nil {
		kind, name = s.Subject.Kind, s.Subject.Name
	}
	switch s.Type {
	case analyticsv1alpha1.SummaryNamespace:
		return []string{s.Namespace}
	case analyticsv1alpha1.SummaryPolicy:
		return []string{s.Source, s.Policy}
	case analyticsv1alpha1.SummaryResource:
		return []string{s.Namespace, kind, name}
	}
	return nil
}

// summaries reads up to limit rows of one summary type after keys (nil: from the start) that match
// filter. A type that lacks a selected field is matched against "" without a query.
func (s *source) summaries(ctx context.Context, tx pgx.Tx, typ analyticsv1alpha1.SummaryType, f summaryFilter,
	keys []string, limit int32) ([]analyticsv1alpha1.FindingSummary, error) {
	if !f.text["type"].matches(string(typ)) {
		return nil, nil
	}
	for field, tf := range f.text {
		if field != "type" && field != "metadata.name" && !slices.Contains(summaryFields[typ], field) && !tf.matches("") {
			return nil, nil
		}
	}
	// A name says its type: other views need not be searched (names are hashes, computed per row).
	if n := f.text["metadata.name"]; n != nil && n.eq != nil {
		if t, ok := summaryTypeOf(*n.eq); !ok || t != typ {
			return nil, nil
		}
	}
	key := func(i int) pgtype.Text {
		if i >= len(keys) {
			return pgtype.Text{}
		}
		return pgtype.Text{String: keys[i], Valid: true}
	}
	name, notName := f.text["metadata.name"].params()
	namespace, notNamespace := f.text["namespace"].params()
	var out []analyticsv1alpha1.FindingSummary
	add := func(sum analyticsv1alpha1.FindingSummary, refreshed pgtype.Timestamptz, generation int64) {
		sum.Type = typ
		sum.ResourceVersion = strconv.FormatInt(generation, 10)
		if refreshed.Valid {
			t := metav1.NewTime(refreshed.Time)
			sum.RefreshedAt = &t
		}
		out = append(out, sum)
	}
	switch typ {
	case analyticsv1alpha1.SummaryCluster:
		rows, err := s.q.ListClusterSummary(ctx, tx, sqlc.ListClusterSummaryParams{Cluster: s.cfg.Cluster, Name: name, NotName: notName})
		if err != nil {
			return nil, fmt.Errorf("list cluster summary: %w", err)
		}
		for _, r := range rows {
			add(analyticsv1alpha1.FindingSummary{
				ObjectMeta: metav1.ObjectMeta{Name: r.Name},
				Counts:     counts(r.Results, r.Pass, r.Fail, r.Warn, r.Error, r.Skip, r.Findings, r.Critical, r.High, r.Medium, r.Low, r.Info),
			}, r.RefreshedAt, r.Generation)
		}
	case analyticsv1alpha1.SummaryNamespace:
		rows, err := s.q.ListNamespaceSummary(ctx, tx, sqlc.ListNamespaceSummaryParams{
			Cluster: s.cfg.Cluster, AfterNamespace: key(0), Namespace: namespace, NotNamespace: notNamespace,
			Name: name, NotName: notName, RowLimit: limit,
		})
		if err != nil {
			return nil, fmt.Errorf("list namespace summary: %w", err)
		}
		for _, r := range rows {
			add(analyticsv1alpha1.FindingSummary{
				ObjectMeta: metav1.ObjectMeta{Name: r.Name},
				Namespace:  r.Namespace,
				Counts:     counts(r.Results, r.Pass, r.Fail, r.Warn, r.Error, r.Skip, r.Findings, r.Critical, r.High, r.Medium, r.Low, r.Info),
			}, r.RefreshedAt, r.Generation)
		}
	case analyticsv1alpha1.SummaryPolicy:
		source, notSource := f.text["source"].params()
		policy, notPolicy := f.text["policy"].params()
		rows, err := s.q.ListPolicySummary(ctx, tx, sqlc.ListPolicySummaryParams{
			Cluster: s.cfg.Cluster, AfterSource: key(0), AfterPolicy: key(1),
			Source: source, NotSource: notSource, Policy: policy, NotPolicy: notPolicy,
			Name: name, NotName: notName, RowLimit: limit,
		})
		if err != nil {
			return nil, fmt.Errorf("list policy summary: %w", err)
		}
		for _, r := range rows {
			add(analyticsv1alpha1.FindingSummary{
				ObjectMeta: metav1.ObjectMeta{Name: r.Name},
				Source:     r.Source,
				Policy:     r.Policy,
				Counts:     counts(r.Results, r.Pass, r.Fail, r.Warn, r.Error, r.Skip, r.Findings, r.Critical, r.High, r.Medium, r.Low, r.Info),
			}, r.RefreshedAt, r.Generation)
		}
	case analyticsv1alpha1.SummaryResource:
		kind, notKind := f.text["subject.kind"].params()
		subject, notSubject := f.text["subject.name"].params()
		rows, err := s.q.ListResourceSummary(ctx, tx, sqlc.ListResourceSummaryParams{
			Cluster: s.cfg.Cluster, AfterNamespace: key(0), AfterKind: key(1), AfterName: key(2),
			Namespace: namespace, NotNamespace: notNamespace, SubjectKind: kind, NotSubjectKind: notKind,
			SubjectName: subject, NotSubjectName: notSubject, Name: name, NotName: notName, RowLimit: limit,
		})
		if err != nil {
			return nil, fmt.Errorf("list resource summary: %w", err)
		}
		for _, r := range rows {
			sum := analyticsv1alpha1.FindingSummary{
				ObjectMeta: metav1.ObjectMeta{Name: r.Name},
				Namespace:  r.Namespace,
				Counts:     counts(r.Results, r.Pass, r.Fail, r.Warn, r.Error, r.Skip, r.Findings, r.Critical, r.High, r.Medium, r.Low, r.Info),
			}
			if r.ResourceKind != "" || r.ResourceName != "" {
				sum.Subject = &analyticsv1alpha1.SummarySubject{Kind: r.ResourceKind, Name: r.ResourceName}
			}
			add(sum, r.RefreshedAt, r.Generation)
		}
	}
	return out, nil
}

func counts(results, pass, fail, warn, errs, skip, findings, critical, high, medium, low, info int64) analyticsv1alpha1.FindingCounts {
	return analyticsv1alpha1.FindingCounts{
		Results: results, Pass: pass, Fail: fail, Warn: warn, Error: errs, Skip: skip,
		Findings: findings, Critical: critical, High: high, Medium: medium, Low: low, Info: info,
	}
}

// summaryCells are the table cells of a FindingSummary after its name.
func summaryCells(obj runtime.Object) []any {
	s, ok := obj.(*analyticsv1alpha1.FindingSummary)
	if !ok {
		return nil
	}
	// The non-empty key columns, "/"-separated: "default", "kyverno/require-labels",
	// "default/Pod/web-0"; a resource summary of results about no resource shows its namespace.
	var parts []string
	for _, k := range summaryKeys(s) {
		if k != "" {
			parts = append(parts, k)
		}
	}
	scope := optional(strings.Join(parts, "/"))
	c := s.Counts
	return []any{
		string(s.Type), scope, c.Results, c.Pass, c.Fail, c.Warn, c.Error, c.Skip, c.Critical, c.High, age(s.RefreshedAt),
		c.Findings, c.Medium, c.Low, c.Info,
	}
}
