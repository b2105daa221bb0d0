package registry

import (
	"context"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/reports-server/reports-server/internal/apis/reports"
)

// tableConvertor prints a report kind the way kubectl printed the CRD: a Name column, then the
// kind's printer columns (Kind, Name, Pass, Fail, Warn, Error, Skip, Age for policy reports).
type tableConvertor struct {
	kind    reports.Kind
	columns []metav1.TableColumnDefinition
	// prependName is set when the kind's columns do not start with the object name.
	prependName bool
}

var _ rest.TableConvertor = tableConvertor{}

var nameColumn = metav1.TableColumnDefinition{
	Name:        "Name",
	Type:        "string",
	Format:      "name",
	Description: metav1.ObjectMeta{}.SwaggerDoc()["name"],
}

func newTableConvertor(kind reports.Kind) tableConvertor {
	c := tableConvertor{kind: kind}
	if len(kind.TableColumns) == 0 || kind.TableColumns[0].Format != "name" {
		c.prependName = true
		c.columns = append(c.columns, nameColumn)
	}
	c.columns = append(c.columns, kind.TableColumns...)
	return c
}

// ConvertToTable converts one report or a list of them. Each row carries the object itself;
// the request handler then keeps it, reduces it to metadata or drops it according to the
// includeObject parameter, so that parameter needs no handling here.
func (c tableConvertor) ConvertToTable(_ context.Context, object, tableOptions runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{}
	if opts, ok := tableOptions.(*metav1.TableOptions); !ok || !opts.NoHeaders {
		table.ColumnDefinitions = c.columns
	}
	addRow := func(obj runtime.Object) error {
		m, err := meta.Accessor(obj)
		if err != nil {
			return notAcceptable(c.kind, obj)
		}
		cells := make([]any, 0, len(c.columns))
		if c.prependName {
			cells = append(cells, m.GetName())
		}
		if c.kind.TableRow != nil {
			cells = append(cells, c.kind.TableRow(obj)...)
		}
		if len(cells) != len(c.columns) {
			return fmt.Errorf("%s table row has %d cells for %d columns", c.kind.Kind, len(cells), len(c.columns))
		}
		table.Rows = append(table.Rows, metav1.TableRow{Cells: cells, Object: runtime.RawExtension{Object: obj}})
		return nil
	}
	if meta.IsListType(object) {
		if err := meta.EachListItem(object, addRow); err != nil {
			return nil, err
		}
		if l, err := meta.ListAccessor(object); err == nil {
			table.ResourceVersion = l.GetResourceVersion()
			table.Continue = l.GetContinue()
			table.RemainingItemCount = l.GetRemainingItemCount()
		}
		return table, nil
	}
	if err := addRow(object); err != nil {
		return nil, err
	}
	if m, err := meta.Accessor(object); err == nil {
		table.ResourceVersion = m.GetResourceVersion()
	}
	return table, nil
}

// notAcceptable is the 406 the default convertor returns for objects it cannot print.
func notAcceptable(kind reports.Kind, obj runtime.Object) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusNotAcceptable,
		Reason:  metav1.StatusReason("NotAcceptable"),
		Message: fmt.Sprintf("the resource %s.%s cannot convert %T to a Table", kind.Resource, kind.GroupVersion.Group, obj),
	}}
}
