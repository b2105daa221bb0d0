package validation

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

func errStrings(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func TestRequired(t *testing.T) {
	p := field.NewPath("results").Index(2).Child("policy")
	empty := ""
	if errs := Required(p, &empty); len(errs) != 0 {
		t.Errorf("empty value rejected: %v", errs)
	}
	errs := Required[string](p, nil)
	if len(errs) != 1 || errs[0].Type != field.ErrorTypeRequired || errs[0].Field != "results[2].policy" {
		t.Errorf("got %v", errs)
	}
}

func TestEnum(t *testing.T) {
	type result string
	p := field.NewPath("results").Index(0).Child("result")
	pass, empty, bad := result("pass"), result(""), result("bad")
	if errs := Enum[result](p, nil, ResultValues); len(errs) != 0 {
		t.Errorf("missing value rejected: %v", errs)
	}
	if errs := Enum(p, &pass, ResultValues); len(errs) != 0 {
		t.Errorf("valid value rejected: %v", errs)
	}
	for v, want := range map[*result]string{
		&empty: `results[0].result: Unsupported value: "": supported values: "pass", "fail", "warn", "error", "skip"`,
		&bad:   `results[0].result: Unsupported value: "bad": supported values: "pass", "fail", "warn", "error", "skip"`,
	} {
		if got := errStrings(Enum(p, v, ResultValues)); len(got) != 1 || got[0] != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if got := errStrings(EnumValue(field.NewPath("s").Index(1), "urgent", SeverityValues)); len(got) != 1 ||
		got[0] != `s[1]: Unsupported value: "urgent": supported values: "critical", "high", "low", "medium", "info"` {
		t.Errorf("got %q", got)
	}
}

func TestFieldLabelConversionFunc(t *testing.T) {
	conv := FieldLabelConversionFunc([]string{"metadata.name", "scope.kind"})
	if l, v, err := conv("scope.kind", "Pod"); err != nil || l != "scope.kind" || v != "Pod" {
		t.Fatalf("got %q %q %v", l, v, err)
	}
	if _, _, err := conv("spec.owner", "x"); err == nil {
		t.Fatal("unsupported label accepted")
	}
}
