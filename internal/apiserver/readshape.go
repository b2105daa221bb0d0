package apiserver

import (
	"context"
	"mime"
	"net/http"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/endpoints/handlers/negotiation"

	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
)

// withReadShape marks GET requests (lists, gets, watches) with what their response will hold, so
// that storage reads no more than that (and creates whose response is plain JSON or YAML, so that
// they answer with the JSON they stored, see REST.Create):
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
//
// Metadata-only lists in JSON are answered by a handler of their own (metadataLists), which
// writes each item's stored metadata without decoding it; so are plain JSON lists of whole
// reports that will be gzip-compressed, by a faster encoder than the generic writer's.
func withReadShape(handler http.Handler, serializer runtime.NegotiatedSerializer, lists *metadataLists) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		withoutObjectProtobuf(req)
		switch req.Method {
		case http.MethodGet:
			// A type nothing produces is the handlers' to refuse (406).
			if mediaType, info, err := negotiation.NegotiateOutputMediaType(req, serializer, reportEndpoint{}); err == nil {
				if lists.serve(w, req, mediaType, info) {
					return
				}
				if mark := readShape(req, mediaType); mark != nil {
					req = req.WithContext(mark(req.Context()))
				}
			}
		case http.MethodPost:
			// A create answers with the object it wrote: as its stored JSON when the response
			// is plain JSON or YAML (REST.Create).
			if mediaType, _, err := negotiation.NegotiateOutputMediaType(req, serializer, reportEndpoint{}); err == nil && plainOutput(mediaType) {
				req = req.WithContext(pgstorage.WithStoredJSON(req.Context()))
			}
		}
		handler.ServeHTTP(w, req)
	})
}

// plainOutput tells whether a response of mediaType is the served objects as JSON or YAML, with
// no conversion: what their stored JSON can be written as.
func plainOutput(mediaType negotiation.MediaTypeOptions) bool {
	if mediaType.Convert != nil {
		return false
	}
	switch mediaType.Accepted.MediaType {
	case runtime.ContentTypeJSON, runtime.ContentTypeYAML:
		return true
	}
	return false
}

// readShape returns the pgstorage marker of what req's response (of the negotiated mediaType)
// will hold, nil for typed objects (anything but the cases above).
func readShape(req *http.Request, mediaType negotiation.MediaTypeOptions) func(context.Context) context.Context {
	if plainOutput(mediaType) {
		return pgstorage.WithStoredJSON
	}
	if mediaType.Convert == nil {
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

// withoutObjectProtobuf drops from req's Accept header the protobuf clauses that ask for the
// report objects themselves (no as=PartialObjectMetadata or Table conversion). The report types
// have no protobuf encoding, as custom resources have none, yet the generic handlers would pick
// protobuf for them when a client lists it first, and fail to encode the response: client-go's
// metadata clients send "application/vnd.kubernetes.protobuf,application/json", so
// kube-controller-manager's namespace controller could not delete any namespace (its
// deletecollection of every report resource failed) and the garbage collector's deletes answered
// 500 after deleting. Without those clauses the handlers negotiate what else the client accepts,
// as kube-apiserver does for custom resources; a client that accepts only protobuf gets 406.
// Conversions keep protobuf: PartialObjectMetadata(List) and Table encode in it.
func withoutObjectProtobuf(req *http.Request) {
	accept := req.Header.Values("Accept")
	if len(accept) == 0 {
		return
	}
	var kept []string
	dropped := false
	for _, header := range accept {
		for _, clause := range strings.Split(header, ",") {
			if isObjectProtobuf(clause) {
				dropped = true
				continue
			}
			kept = append(kept, strings.TrimSpace(clause))
		}
	}
	if !dropped {
		return
	}
	if len(kept) == 0 {
		// Nothing else is acceptable: a media type no serializer has makes the handlers answer
		// 406 Not Acceptable, as they answer any other type they cannot produce.
		kept = []string{runtime.ContentTypeProtobuf + ";as=Object;g=" + unservableGroup + ";v=v1"}
	}
	req.Header.Set("Accept", strings.Join(kept, ","))
}

// unservableGroup names no API group, so a conversion to it is never negotiated.
const unservableGroup = "reports-server.invalid"

// isObjectProtobuf reports whether an Accept clause asks for protobuf without a conversion.
func isObjectProtobuf(clause string) bool {
	mediaType, params, err := mime.ParseMediaType(strings.TrimSpace(clause))
	if err != nil || mediaType != runtime.ContentTypeProtobuf {
		return false
	}
	_, convert := params["as"]
	return !convert
}
