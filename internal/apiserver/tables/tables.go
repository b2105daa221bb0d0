// Package tables converts objects to the Tables kubectl prints, for every resource this server
// serves: the report kinds (their CRDs' printer columns) and the read-only findings resources.
package tables

import (
	"context"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/registry/rest"
)

// NameColumn is the object-name column every Table starts with.
var NameColumn = metav1.TableColumnDefinition{
	Name:        "Name",
	Type:        "string",
	Format:      "name",
	Description: metav1.ObjectMeta{}.SwaggerDoc()["name"],
}

// Convertor prints one resource: the object name, then the resource's columns.
type Convertor struct {
	resource schema.GroupResource
	columns  []metav1.TableColumnDefinition
	cells    func(runtime.Object) []any
	// prependName is set when the resource's own columns do not start with the object name.
	prependName bool
}

var _ rest.TableConvertor = Convertor{}

// New returns the convertor of resource with columns; cells returns a row's cells for those
// columns, or nil for an object it cannot print (406). NameColumn comes first, unless columns
// already start with a name column, whose cell cells then gives.
func New(resource schema.GroupResource, cells func(runtime.Object) []any, columns ...metav1.TableColumnDefinition) Convertor {
	c := Convertor{resource: resource, cells: cells}
	if len(columns) == 0 || columns[0].Format != "name" {
		c.prependName = true
		c.columns = append(c.columns, NameColumn)
	}
	c.columns = append(c.columns, columns...)
	return c
}

// ConvertToTable converts one object or a list of them. Each row carries the object itself; the
// request handler then keeps it, reduces it to metadata or drops it according to the
// includeObject parameter, so that parameter needs no handling here.
func (c Convertor) ConvertToTable(_ context.Context, object, tableOptions runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{}
	if opts, ok := tableOptions.(*metav1.TableOptions); !ok || !opts.NoHeaders {
		table.ColumnDefinitions = c.columns
	}
	addRow := func(obj runtime.Object) error {
		row, err := c.row(obj)
		if err != nil {
			return err
		}
		table.Rows = append(table.Rows, metav1.TableRow{Cells: row, Object: runtime.RawExtension{Object: obj}})
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

// row is obj's cells, checked against the columns.
func (c Convertor) row(obj runtime.Object) ([]any, error) {
	m, err := meta.Accessor(obj)
	cells := c.cells(obj)
	if err != nil || cells == nil {
		return nil, &apierrors.StatusError{ErrStatus: metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusNotAcceptable,
			Reason:  metav1.StatusReason("NotAcceptable"),
			Message: fmt.Sprintf("the resource %s cannot convert %T to a Table", c.resource, obj),
		}}
	}
	row := make([]any, 0, len(c.columns))
	if c.prependName {
		row = append(row, m.GetName())
	}
	row = append(row, cells...)
	if len(row) != len(c.columns) {
		return nil, fmt.Errorf("%s table row has %d cells for %d columns", c.resource, len(row), len(c.columns))
	}
	return row, nil
}
