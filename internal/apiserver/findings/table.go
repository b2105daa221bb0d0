package findings

import (
	"k8s.io/apimachinery/pkg/api/meta/table"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The findings resources print through tables.Convertor: a Name column, then their columns
// (priority 1 ones only with -o wide).

func column(name, typ, description string, priority int32) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ, Description: description, Priority: priority}
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
