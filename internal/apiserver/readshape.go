package apiserver

import (
	"context"
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/endpoints/handlers/negotiation"

	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
)

// withReadShape marks GET requests (lists, gets, watches) with what their response will hold, so
// that storage reads no more than that:
//   - only metadata (PartialObjectMetadata, which Kyverno's and Policy Reporter's informers ask
//     for): storage reads the reports' metadata alone (pgstorage.WithMetadataOnly);
//   - a Table without embedded objects (kubectl get): storage reads the reports without their
//     results (pgstorage.WithHeadOnly);
//   - plain JSON or YAML of the served version, no conversion: storage hands back the stored
//     JSON instead of decoding it (pgstorage.WithStoredJSON, package storedjson).
//
// The decision must match what the handler will send, or a client would get reports stripped of
// their results: it is the handlers' own negotiation (NegotiateOutputMediaType) on the same
// request, serializer and endpoint restrictions. (A stored-JSON response that ends up encoded
// otherwise is still right, only slower: storedjson decodes the objects for such an encoder.)
func withReadShape(handler http.Handler, serializer runtime.NegotiatedSerializer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet {
			if mark := readShape(req, serializer); mark != nil {
				req = req.WithContext(mark(req.Context()))
			}
		}
		handler.ServeHTTP(w, req)
	})
}

// readShape returns the pgstorage marker of what req's response will hold, nil for typed objects
// (anything but the cases above).
func readShape(req *http.Request, serializer runtime.NegotiatedSerializer) func(context.Context) context.Context {
	mediaType, _, err := negotiation.NegotiateOutputMediaType(req, serializer, reportEndpoint{})
	if err != nil {
		return nil
	}
	if mediaType.Convert == nil {
		switch mediaType.Accepted.MediaType {
		case runtime.ContentTypeJSON, runtime.ContentTypeYAML:
			return pgstorage.WithStoredJSON
		}
		return nil
	}
	if mediaType.Convert.Group != metav1.GroupName {
		return nil
	}
	switch mediaType.Convert.Kind {
	case "PartialObjectMetadata", "PartialObjectMetadataList":
		return pgstorage.WithMetadataOnly
	case "Table":
		// includeObject=Object embeds each whole object in its row.
		if req.URL.Query().Get("includeObject") != string(metav1.IncludeObject) {
			return pgstorage.WithHeadOnly
		}
	}
	return nil
}

// reportEndpoint are the endpoint restrictions of the report resources, as the generic
// handlers' RequestScope has them (k8s.io/apiserver/pkg/endpoints/handlers.RequestScope): every
// standard serializer, Table as JSON or YAML (the resources have a table convertor), and
// PartialObjectMetadata(List) in any.
type reportEndpoint struct{}

func (reportEndpoint) AllowsMediaTypeTransform(mimeType, mimeSubType string, gvk *schema.GroupVersionKind) bool {
	if gvk == nil {
		return true
	}
	if gvk.Group != metav1.GroupName || (gvk.Version != "v1" && gvk.Version != "v1beta1") {
		return false
	}
	switch gvk.Kind {
	case "Table":
		return mimeType == "application" && (mimeSubType == "json" || mimeSubType == "yaml")
	case "PartialObjectMetadata", "PartialObjectMetadataList":
		return true
	}
	return false
}

func (reportEndpoint) AllowsServerVersion(version string) bool {
	return version == metav1.SchemeGroupVersion.Version
}

func (reportEndpoint) AllowsStreamSchema(s string) bool { return s == "watch" }
