package findings

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/reports-server/reports-server/internal/db/sqlc"
)

// Field selectors become parameters of the list queries (sql/queries/findings.sql): every
// requirement is a predicate in SQL, none is evaluated in Go. The API server has already refused
// unknown fields (the field label conversion functions of the analytics API package); what is left
// here are operators and values.

// textFilter is what the selector requires of one text column: a value it must equal (nil: any)
// and values it must differ from. A missing value counts as "", as for every field selector.
type textFilter struct {
	eq *string
	ne []string
}

// add adds a requirement. It reports false when the filter can no longer match anything
// (severity=high,severity=low): the list is then empty without a query.
func (f *textFilter) add(field string, op selection.Operator, value string) (bool, error) {
	switch op {
	case selection.Equals, selection.DoubleEquals:
		if f.eq != nil && *f.eq != value {
			return false, nil
		}
		f.eq = &value
	case selection.NotEquals:
		f.ne = append(f.ne, value)
	default:
		return false, apierrors.NewBadRequest(fmt.Sprintf("field selector %s: operator %q not supported (use =, == or !=)", field, op))
	}
	return f.eq == nil || !slices.Contains(f.ne, *f.eq), nil
}

// params returns the query parameters: NULL (pgtype.Text{}) and nil switch the predicate off.
func (f *textFilter) params() (pgtype.Text, []string) {
	if f == nil {
		return pgtype.Text{}, nil
	}
	var eq pgtype.Text
	if f.eq != nil {
		eq = pgtype.Text{String: *f.eq, Valid: true}
	}
	return eq, f.ne
}

// matches evaluates the filter on a value known without a query (a column a summary lacks is "").
func (f *textFilter) matches(v string) bool {
	return f == nil || ((f.eq == nil || *f.eq == v) && !slices.Contains(f.ne, v))
}

// rejectLabels refuses label selectors: findings and summaries have no labels. A selector that
// requires a label would match nothing and one that excludes labels everything, which is correct
// but never what the user meant (report labels are not carried over); a 400 says so.
func rejectLabels(sel labels.Selector, supported []string) error {
	if sel == nil || sel.Empty() {
		return nil
	}
	return apierrors.NewBadRequest(fmt.Sprintf(
		"label selector %q not supported: findings have no labels; select with --field-selector on %s",
		sel.String(), strings.Join(supported, ", ")))
}

// findingFilter is a field selector of Finding or ClusterFinding.
type findingFilter struct {
	text    map[string]*textFilter // by field selector key
	finding *bool
	// ephemeral selects the results of ephemeral reports (report.ephemeral); nil: final reports.
	ephemeral *bool
	name      *findingName
	// none is set when the selector matches nothing.
	none bool
}

// findingColumns are the text fields and the ListFindings parameters of their column.
func findingColumns(p *sqlc.ListFindingsParams) map[string]struct {
	eq *pgtype.Text
	ne *[]string
} {
	type col = struct {
		eq *pgtype.Text
		ne *[]string
	}
	return map[string]col{
		"metadata.namespace": {&p.Namespace, &p.NotNamespace},
		"severity":           {&p.Severity, &p.NotSeverity},
		"result":             {&p.Result, &p.NotResult},
		"policy":             {&p.Policy, &p.NotPolicy},
		"rule":               {&p.Rule, &p.NotRule},
		"source":             {&p.Source, &p.NotSource},
		"category":           {&p.Category, &p.NotCategory},
		"subject.kind":       {&p.SubjectKind, &p.NotSubjectKind},
		"subject.namespace":  {&p.SubjectNamespace, &p.NotSubjectNamespace},
		"subject.name":       {&p.SubjectName, &p.NotSubjectName},
		"report.name":        {&p.ReportName, &p.NotReportName},
	}
}

// parseFindingSelector translates sel. kinds parses metadata.name.
func parseFindingSelector(sel fields.Selector, kinds reportKinds) (findingFilter, error) {
	f := findingFilter{text: map[string]*textFilter{}}
	if sel == nil || sel.Empty() {
		return f, nil
	}
	textFields := findingColumns(&sqlc.ListFindingsParams{})
	for _, r := range sel.Requirements() {
		ok := true
		var err error
		switch field := r.Field; {
		case field == "metadata.name":
			ok, err = f.addName(r, kinds)
		case field == "finding":
			ok, err = addBool(&f.finding, r)
		case field == "report.ephemeral":
			ok, err = addBool(&f.ephemeral, r)
		default:
			if _, known := textFields[field]; !known {
				// The field label conversion functions let only known fields through.
				return f, apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", field))
			}
			tf := f.text[field]
			if tf == nil {
				tf = &textFilter{}
				f.text[field] = tf
			}
			ok, err = tf.add(field, r.Operator, r.Value)
		}
		if err != nil {
			return f, err
		}
		if !ok {
			f.none = true
		}
	}
	return f, nil
}

func (f *findingFilter) addName(r fields.Requirement, kinds reportKinds) (bool, error) {
	if r.Operator != selection.Equals && r.Operator != selection.DoubleEquals {
		return false, apierrors.NewBadRequest(fmt.Sprintf("field selector metadata.name: operator %q not supported for findings (use = or ==)", r.Operator))
	}
	n, ok := kinds.parse(r.Value)
	if !ok || (f.name != nil && !f.name.equal(n)) {
		return false, nil
	}
	f.name = &n
	return true, nil
}

// addBool adds a requirement on a boolean field to *dst.
func addBool(dst **bool, r fields.Requirement) (bool, error) {
	v, err := strconv.ParseBool(r.Value)
	if err != nil {
		return false, apierrors.NewBadRequest(fmt.Sprintf("field selector %s=%q: the value must be true or false", r.Field, r.Value))
	}
	switch r.Operator {
	case selection.Equals, selection.DoubleEquals:
	case selection.NotEquals:
		v = !v
	default:
		return false, apierrors.NewBadRequest(fmt.Sprintf("field selector %s: operator %q not supported (use =, == or !=)", r.Field, r.Operator))
	}
	if *dst != nil && **dst != v {
		return false, nil
	}
	*dst = &v
	return true, nil
}

// restrictNamespace adds the request's namespace ("" for ClusterFinding, whose reports have none)
// as metadata.namespace=<ns>.
func (f *findingFilter) restrictNamespace(namespace string) {
	tf := f.text["metadata.namespace"]
	if tf == nil {
		tf = &textFilter{}
		f.text["metadata.namespace"] = tf
	}
	if ok, _ := tf.add("metadata.namespace", selection.Equals, namespace); !ok {
		f.none = true
	}
}

// apply sets the filter's parameters of ListFindings.
func (f *findingFilter) apply(p *sqlc.ListFindingsParams) {
	for field, col := range findingColumns(p) {
		*col.eq, *col.ne = f.text[field].params()
	}
	if f.finding != nil {
		p.Finding = pgtype.Bool{Bool: *f.finding, Valid: true}
	}
	if f.ephemeral != nil {
		p.Ephemeral = pgtype.Bool{Bool: *f.ephemeral, Valid: true}
	}
	if n := f.name; n != nil {
		p.NameGroup = pgtype.Text{String: n.kind.GroupVersion.Group, Valid: true}
		p.NameKind = pgtype.Text{String: n.kind.Kind, Valid: true}
		p.NameReport = pgtype.Text{String: n.report, Valid: true}
		p.NameIndex = pgtype.Int4{Int32: n.index, Valid: true}
	}
}

// summaryFilter is a field selector of FindingSummary: one textFilter per field, "type" included.
type summaryFilter struct {
	text map[string]*textFilter
	none bool
}

func parseSummarySelector(sel fields.Selector, supported []string) (summaryFilter, error) {
	f := summaryFilter{text: map[string]*textFilter{}}
	if sel == nil || sel.Empty() {
		return f, nil
	}
	for _, r := range sel.Requirements() {
		if !slices.Contains(supported, r.Field) {
			return f, apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", r.Field))
		}
		tf := f.text[r.Field]
		if tf == nil {
			tf = &textFilter{}
			f.text[r.Field] = tf
		}
		ok, err := tf.add(r.Field, r.Operator, r.Value)
		if err != nil {
			return f, err
		}
		if !ok {
			f.none = true
		}
	}
	return f, nil
}
