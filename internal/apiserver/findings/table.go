package findings

import (
	"context"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/meta/table"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/registry/rest"
)

// tableConvertor prints the resources for kubectl: a Name column, then the resource's columns
// (priority 1 ones only with -o wide). Rows carry the object; the request handler keeps it, reduces
// it to metadata or drops it as includeObject asks.
type tableConvertor struct {
	resource schema.GroupResource
	columns  []metav1.TableColumnDefinition
	// cells returns the cells after the name, nil for an object of another type.
	cells func(runtime.Object) []any
}

var _ rest.TableConvertor = tableConvertor{}

func column(name, typ, description string, priority int32) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ, Description: description, Priority: priority}
}

func newTableConvertor(resource schema.GroupResource, cells func(runtime.Object) []any, columns ...metav1.TableColumnDefinition) tableConvertor {
	name := metav1.TableColumnDefinition{
		Name: "Name", Type: "string", Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"],
	}
	return tableConvertor{resource: resource, columns: append([]metav1.TableColumnDefinition{name}, columns...), cells: cells}
}

func (c tableConvertor) ConvertToTable(_ context.Context, object, tableOptions runtime.Object) (*metav1.Table, error) {
	out := &metav1.Table{}
	if opts, ok := tableOptions.(*metav1.TableOptions); !ok || !opts.NoHeaders {
		out.ColumnDefinitions = c.columns
	}
	addRow := func(obj runtime.Object) error {
		m, err := meta.Accessor(obj)
		cells := c.cells(obj)
		if err != nil || cells == nil {
			return &apierrors.StatusError{ErrStatus: metav1.Status{
				Status:  metav1.StatusFailure,
				Code:    http.StatusNotAcceptable,
				Reason:  metav1.StatusReason("NotAcceptable"),
				Message: fmt.Sprintf("the resource %s cannot convert %T to a Table", c.resource, obj),
			}}
		}
		row := append([]any{m.GetName()}, cells...)
		if len(row) != len(c.columns) {
			return fmt.Errorf("%s table row has %d cells for %d columns", c.resource, len(row), len(c.columns))
		}
		out.Rows = append(out.Rows, metav1.TableRow{Cells: row, Object: runtime.RawExtension{Object: obj}})
		return nil
	}
	if meta.IsListType(object) {
		if err := meta.EachListItem(object, addRow); err != nil {
			return nil, err
		}
		if l, err := meta.ListAccessor(object); err == nil {
			out.ResourceVersion = l.GetResourceVersion()
			out.Continue = l.GetContinue()
		}
		return out, nil
	}
	if err := addRow(object); err != nil {
		return nil, err
	}
	if m, err := meta.Accessor(object); err == nil {
		out.ResourceVersion = m.GetResourceVersion()
	}
	return out, nil
}

// optional is the cell of an optional string: nil (kubectl prints <none>) when empty.
func optional(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// age is the cell of a point in time, as kubectl prints creation times ("5m"); nil when unknown.
func age(t *metav1.Time) any {
	if t == nil {
		return nil
	}
	return table.ConvertToHumanReadableDateType(*t)
}
