package registry

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/apiserver/tables"
)

// newTableConvertor prints a report kind the way kubectl printed the CRD: a Name column, then the
// kind's printer columns (Kind, Name, Pass, Fail, Warn, Error, Skip, Age for policy reports).
func newTableConvertor(kind reports.Kind) tables.Convertor {
	cells := func(obj runtime.Object) []any {
		if kind.TableRow == nil {
			return []any{}
		}
		return kind.TableRow(obj)
	}
	gr := schema.GroupResource{Group: kind.GroupVersion.Group, Resource: kind.Resource}
	return tables.New(gr, cells, kind.TableColumns...)
}
