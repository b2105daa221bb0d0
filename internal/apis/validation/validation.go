// Package validation holds the checks the report CRDs' OpenAPI schemas make, shared by all report groups.
//
// The report types represent presence: a field the CRDs require, or whose empty value they reject, is a pointer,
// nil when the key was missing (or null: the CRDs prune the nulls of non-nullable fields before validating). So the
// typed object shows everything the schemas check, and these helpers need nothing else. Type errors are left to the
// decoder, object metadata to the registry.
package validation

import (
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ResultValues are the values the CRDs allow for results[].result and configuration.limits.statusFilter[], in the
// CRDs' order.
var ResultValues = []string{"pass", "fail", "warn", "error", "skip"}

// SeverityValues are the values the CRDs allow for results[].severity, in the CRDs' order.
var SeverityValues = []string{"critical", "high", "low", "medium", "info"}

// Required reports a required key that is missing: v is nil. An empty value is not checked; the CRDs accept it.
func Required[T any](fldPath *field.Path, v *T) field.ErrorList {
	if v == nil {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	return nil
}

// Enum checks an optional enum value: nil (missing) is accepted; any other value, empty included, must be one of
// allowed.
func Enum[T ~string](fldPath *field.Path, v *T, allowed []string) field.ErrorList {
	if v == nil {
		return nil
	}
	return EnumValue(fldPath, *v, allowed)
}

// EnumValue checks a present enum value, such as an item of a list.
func EnumValue[T ~string](fldPath *field.Path, v T, allowed []string) field.ErrorList {
	if !slices.Contains(allowed, string(v)) {
		return field.ErrorList{field.NotSupported(fldPath, string(v), allowed)}
	}
	return nil
}

// FieldLabelConversionFunc accepts the given field selector labels unchanged and rejects any other.
func FieldLabelConversionFunc(selectable []string) runtime.FieldLabelConversionFunc {
	return func(label, value string) (string, string, error) {
		if slices.Contains(selectable, label) {
			return label, value, nil
		}
		return "", "", fmt.Errorf("field label not supported: %s", label)
	}
}
