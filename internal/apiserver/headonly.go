package apiserver

import (
	"net/http"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/endpoints/handlers/negotiation"

	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
)

// withHeadOnly marks GET requests whose response will hold only metadata (PartialObjectMetadata,
// which Kyverno's and Policy Reporter's informers ask for) or a Table without embedded objects
// (kubectl get), so that storage reads the reports without their results (pgstorage.WithHeadOnly).
//
// The decision must match what the handler will send, or a client would get reports stripped of
// their results: it is the handlers' own negotiation (NegotiateOutputMediaType) on the same
// request, serializer and endpoint restrictions. Only a negotiated conversion to one of those
// meta.k8s.io kinds marks the request.
func withHeadOnly(handler http.Handler, serializer runtime.NegotiatedSerializer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet && headOnlyResponse(req, serializer) {
			req = req.WithContext(pgstorage.WithHeadOnly(req.Context()))
		}
		handler.ServeHTTP(w, req)
	})
}

func headOnlyResponse(req *http.Request, serializer runtime.NegotiatedSerializer) bool {
	// Only an Accept with an "as=" parameter asks for a conversion: skip the negotiation for the
	// others (almost every request).
	if !strings.Contains(req.Header.Get("Accept"), "as=") {
		return false
	}
	mediaType, _, err := negotiation.NegotiateOutputMediaType(req, serializer, reportEndpoint{})
	if err != nil || mediaType.Convert == nil || mediaType.Convert.Group != metav1.GroupName {
		return false
	}
	switch mediaType.Convert.Kind {
	case "PartialObjectMetadata", "PartialObjectMetadataList":
		return true
	case "Table":
		// includeObject=Object embeds each whole object in its row.
		return req.URL.Query().Get("includeObject") != string(metav1.IncludeObject)
	}
	return false
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
