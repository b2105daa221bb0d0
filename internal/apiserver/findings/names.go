package findings

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/reports-server/reports-server/internal/apis/reports"
)

// A finding's name is <short name of the report kind>.<report name>.<result index>, e.g.
// polr.trivy-pod-web.3. It says where the result is, so `kubectl get finding` is a primary-key
// lookup, and it stays the same across updates of the report as long as the result keeps its
// position. Report names are DNS subdomains, so the finding's is one too, except for report names
// over 241 characters, whose findings' names are longer than 253: they still work in every request.

// reportKinds indexes the report kinds by short name (to parse names) and by group and kind (to
// build them).
type reportKinds struct {
	byShort map[string]reports.Kind
	byKind  map[schema.GroupKind]reports.Kind
}

func newReportKinds(kinds []reports.Kind) (reportKinds, error) {
	k := reportKinds{byShort: map[string]reports.Kind{}, byKind: map[schema.GroupKind]reports.Kind{}}
	for _, kind := range kinds {
		if len(kind.ShortNames) == 0 {
			return reportKinds{}, fmt.Errorf("report kind %s has no short name to name its findings", kind.GroupVersionKind())
		}
		short := kind.ShortNames[0]
		if prev, ok := k.byShort[short]; ok {
			return reportKinds{}, fmt.Errorf("report kinds %s and %s share the short name %q", prev.Kind, kind.Kind, short)
		}
		k.byShort[short] = kind
		k.byKind[kind.GroupVersionKind().GroupKind()] = kind
	}
	return k, nil
}

// findingName is a parsed finding name: the report (kind and name) and the result's position.
type findingName struct {
	kind   reports.Kind
	report string
	index  int32
}

func (n findingName) equal(o findingName) bool {
	return n.kind.GroupVersionKind() == o.kind.GroupVersionKind() && n.report == o.report && n.index == o.index
}

// name returns the name of the result at index of the report group/kind/report.
func (k reportKinds) name(group, kind, report string, index int32) (string, error) {
	rk, ok := k.byKind[schema.GroupKind{Group: group, Kind: kind}]
	if !ok {
		return "", fmt.Errorf("result of a report of unknown kind %s.%s", kind, group)
	}
	return rk.ShortNames[0] + "." + report + "." + strconv.FormatInt(int64(index), 10), nil
}

// parse reads a finding name; ok is false for a name no finding can have.
func (k reportKinds) parse(name string) (findingName, bool) {
	short, rest, ok := strings.Cut(name, ".")
	if !ok {
		return findingName{}, false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 {
		return findingName{}, false
	}
	index, err := strconv.ParseInt(rest[i+1:], 10, 32)
	if err != nil || index < 0 || strconv.FormatInt(index, 10) != rest[i+1:] {
		return findingName{}, false
	}
	kind, ok := k.byShort[short]
	if !ok {
		return findingName{}, false
	}
	return findingName{kind: kind, report: rest[:i], index: int32(index)}, true
}

// key is the storage key of the report in namespace, as the generic registry builds it
// (pgstorage.RESTOptionsGetter: /<group>/<resource>[/<namespace>]/<name>), which is also the key
// of its rows in analytics_reports.
func (n findingName) key(namespace string) string {
	prefix := "/" + n.kind.GroupVersion.Group + "/" + n.kind.Resource
	if n.kind.Namespaced {
		return prefix + "/" + namespace + "/" + n.report
	}
	return prefix + "/" + n.report
}
