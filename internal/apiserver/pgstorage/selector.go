package pgstorage

import (
	"encoding/json"
	"slices"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apiserver/pkg/storage"
)

// sqlFields are the keys of the reports.fields generated column (reports_fields in
// sql/schema). Field selectors on them run in SQL; any other field is matched in Go.
var sqlFields = []string{"metadata.name", "metadata.namespace", "scope.kind", "scope.name", "scope.namespace"}

// requirement is one entry of the JSON array reports_match evaluates.
type requirement struct {
	Key    string   `json:"key"`
	Op     string   `json:"op"`
	Values []string `json:"values,omitempty"`
}

// sqlFilter is a selection predicate translated into the parameters of the list queries.
// Equality goes into a containment map and existence into a key list, because those two
// shapes are what the GIN indexes serve; everything else goes to reports_match.
type sqlFilter struct {
	labelContains []byte
	labelExists   []string
	labelReqs     []byte
	fieldContains []byte
	fieldReqs     []byte
	// complete is true when SQL evaluates the whole predicate, so rows need no Go matching.
	complete bool
}

type attrFilter struct {
	contains map[string]string
	exists   []string
	reqs     []requirement
}

func (f *attrFilter) equal(key, value string) {
	if f.contains == nil {
		f.contains = map[string]string{}
	}
	if prev, ok := f.contains[key]; ok && prev != value {
		// k=a,k=b matches nothing; keep both so SQL says so.
		f.reqs = append(f.reqs, requirement{Key: key, Op: "in", Values: []string{value}})
		return
	}
	f.contains[key] = value
}

func (f *attrFilter) params() (contains []byte, reqs []byte) {
	if len(f.contains) > 0 {
		contains, _ = json.Marshal(f.contains)
	}
	if len(f.reqs) > 0 {
		reqs, _ = json.Marshal(f.reqs)
	}
	return contains, reqs
}

// translate turns p into SQL parameters. Requirements SQL cannot express (label > and <,
// unknown fields) are left out and complete is false: the caller then matches rows in Go.
func translate(p storage.SelectionPredicate) sqlFilter {
	out := sqlFilter{complete: true}
	var lf attrFilter
	if p.Label != nil && !p.Label.Empty() {
		reqs, selectable := p.Label.Requirements()
		if !selectable {
			// A selector that can match nothing: an impossible requirement says so in SQL.
			lf.reqs = append(lf.reqs, requirement{Key: "", Op: "in", Values: []string{}})
		}
		for _, r := range reqs {
			if !translateLabel(&lf, r) {
				out.complete = false
			}
		}
	}
	out.labelContains, out.labelReqs = lf.params()
	out.labelExists = lf.exists

	if p.Field != nil && !p.Field.Empty() {
		var ff attrFilter
		ok := true
		for _, r := range p.Field.Requirements() {
			if !translateField(&ff, r) {
				ok = false
				break
			}
		}
		if ok {
			out.fieldContains, out.fieldReqs = ff.params()
		} else {
			out.complete = false
		}
	}
	return out
}

func translateLabel(f *attrFilter, r labels.Requirement) bool {
	values := r.ValuesUnsorted()
	slices.Sort(values)
	switch r.Operator() {
	case selection.Equals, selection.DoubleEquals:
		f.equal(r.Key(), values[0])
	case selection.In:
		if len(values) == 1 {
			f.equal(r.Key(), values[0])
		} else {
			f.reqs = append(f.reqs, requirement{Key: r.Key(), Op: "in", Values: values})
		}
	case selection.NotEquals, selection.NotIn:
		f.reqs = append(f.reqs, requirement{Key: r.Key(), Op: "notin", Values: values})
	case selection.Exists:
		f.exists = append(f.exists, r.Key())
	case selection.DoesNotExist:
		f.reqs = append(f.reqs, requirement{Key: r.Key(), Op: "!exists"})
	default:
		return false
	}
	return true
}

func translateField(f *attrFilter, r fields.Requirement) bool {
	if !slices.Contains(sqlFields, r.Field) {
		return false
	}
	// Field values are free text (label values are validated): compare them as stored.
	value := storedText(r.Value)
	switch r.Operator {
	case selection.Equals, selection.DoubleEquals:
		f.equal(r.Field, value)
	case selection.NotEquals:
		f.reqs = append(f.reqs, requirement{Key: r.Field, Op: "notin", Values: []string{value}})
	default:
		return false
	}
	return true
}
