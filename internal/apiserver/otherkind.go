package apiserver

import (
	"reflect"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/reports-server/reports-server/internal/apis/reports"
)

// otherKindDecoder is the report groups' decoder (see reportSerializer): it accepts a body of
// another kind of the resource's group version (a ClusterPolicyReport sent to policyreports) and
// hands it on as that kind, which the registry then refuses with 422 on `kind` ("must be
// PolicyReport"), as kube-apiserver does for a CRD (registry.REST.Create and Update). Without
// this the codec fails to convert one kind into the other and the generic handlers answer 400
// with that internal conversion error, which tells the client nothing about what to fix.
type otherKindDecoder struct {
	runtime.Decoder
	served map[reflect.Type]reports.Kind
}

// Decode decodes as the codec does. Only when that fails, and the body is another served kind of
// the group version of into's kind, does it decode the body as the kind it names. The path of
// well-formed requests is not touched.
func (d otherKindDecoder) Decode(data []byte, defaults *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	obj, gvk, err := d.Decoder.Decode(data, defaults, into)
	if err == nil || into == nil {
		return obj, gvk, err
	}
	want, ok := d.served[reflect.TypeOf(into)]
	if !ok {
		return obj, gvk, err
	}
	other, otherGVK, otherErr := d.Decoder.Decode(data, defaults, nil)
	if otherErr != nil {
		return obj, gvk, err
	}
	if k, ok := d.served[reflect.TypeOf(other)]; !ok || k.GroupVersion != want.GroupVersion {
		return obj, gvk, err
	}
	return other, otherGVK, nil
}
