package apiserver

import (
	"fmt"
	"net/http"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metainternalversionscheme "k8s.io/apimachinery/pkg/apis/meta/internalversion/scheme"
	metainternalversionvalidation "k8s.io/apimachinery/pkg/apis/meta/internalversion/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apiserver/pkg/endpoints/handlers/negotiation"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/apiserver/pkg/endpoints/metrics"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/features"
	utilfeature "k8s.io/apiserver/pkg/util/feature"

	"github.com/reports-server/reports-server/internal/apis/storedjson"
	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
	"github.com/reports-server/reports-server/internal/apiserver/registry"
)

// metadataLists answers the metadata-only JSON lists of the report resources (GET of a
// collection as PartialObjectMetadataList of meta.k8s.io/v1, in JSON: what Kyverno's and Policy
// Reporter's informers, kubectl's metadata reads and our benchmarks ask for), in place of the
// generic list handler. The generic handler converts every list it gets from storage into a
// PartialObjectMetadataList (a copy of each item's metadata) and encodes that with
// encoding/json: as much server CPU per item as everything else on that path, and nothing a
// store or a serializer can skip. This handler lists with storage told to keep each item's stored
// metadata JSON (pgstorage.WithMetadataJSON) and writes those bytes in the generic handler's
// envelope (storedjson.MetadataList), through the same response writer (content negotiation,
// errors as a Status) and with the same request metrics.
//
// It also answers the plain JSON lists that will be gzip-compressed (the client accepts gzip and
// the list is over kube-apiserver's 128 KB threshold), of whole reports as well as of metadata:
// it writes the same JSON (storedjson.List, storedjson.MetadataList) through a faster gzip
// encoder than the generic response writer's (compress.go), with the same headers. Smaller
// lists, and lists not read as stored JSON, go through the generic response writer.
//
// Everything else about the request is the generic handler's: it parses and validates the list
// options as handlers.ListResource does, and runs inside the same handler chain
// (authentication, authorization, audit, priority and fairness, timeouts). Other media types
// (protobuf, YAML, pretty JSON, the v1beta1 conversion) and watches stay with the generic
// handlers.
type metadataLists struct {
	// convertor converts field selectors' labels, as the generic handlers' RequestScope does.
	convertor runtime.ObjectConvertor
	// errors encodes errors as a Status, as the report groups' handlers do.
	errors runtime.NegotiatedSerializer
	// encodings tells the plain JSON encoder of meta.k8s.io/v1 from the others.
	encodings *storedjson.Encodings
	// stores are the report resources' stores, set once they exist (New), before any request.
	stores atomic.Pointer[map[schema.GroupVersionResource]*registry.REST]
}

func newMetadataLists(convertor runtime.ObjectConvertor, errors runtime.NegotiatedSerializer) *metadataLists {
	return &metadataLists{convertor: convertor, errors: errors, encodings: storedjson.NewEncodings(metav1.SchemeGroupVersion)}
}

// serve answers req and returns true when it is a metadata-only JSON list of a report resource,
// or a plain JSON list of whole reports to a client that accepts gzip (mediaType and serializer
// are req's negotiated output); otherwise it leaves req to the generic handlers.
func (m *metadataLists) serve(w http.ResponseWriter, req *http.Request, mediaType negotiation.MediaTypeOptions, serializer runtime.SerializerInfo) bool {
	// Pretty JSON (asked for, or for curl and browsers) is compressed by the generic writer.
	pretty := serializer.PrettySerializer != nil && serializer.Serializer.Identifier() == serializer.PrettySerializer.Identifier()
	compress := !pretty && acceptsGzip(req)
	answer := m.list
	if convert := mediaType.Convert; convert == nil || convert.Kind != "PartialObjectMetadataList" ||
		convert.GroupVersion() != metav1.SchemeGroupVersion || mediaType.Accepted.MediaType != runtime.ContentTypeJSON {
		if !plainOutput(mediaType) || mediaType.Accepted.MediaType != runtime.ContentTypeJSON || !compress {
			return false
		}
		answer = m.objectList
	}
	info, ok := request.RequestInfoFrom(req.Context())
	if !ok || !info.IsResourceRequest || info.Verb != "list" || info.Subresource != "" {
		return false
	}
	stores := m.stores.Load()
	if stores == nil {
		return false
	}
	store, ok := (*stores)[schema.GroupVersionResource{Group: info.APIGroup, Version: info.APIVersion, Resource: info.Resource}]
	// A cluster-scoped resource has no path under a namespace: the generic handlers answer 404.
	if !ok || (!store.NamespaceScoped() && info.Namespace != "") {
		return false
	}
	metrics.InstrumentHandlerFunc("LIST", info.APIGroup, info.APIVersion, info.Resource, "", metrics.CleanScope(info),
		metrics.APIServerComponent, false, "", func(w http.ResponseWriter, req *http.Request) {
			answer(w, req, store, info, compress)
		})(w, req)
	return true
}

// objectList lists store's objects as their stored JSON and writes them, gzip-compressed when
// compress and the list is over gzipThreshold.
func (m *metadataLists) objectList(w http.ResponseWriter, req *http.Request, store *registry.REST, info *request.RequestInfo, compress bool) {
	gv := schema.GroupVersion{Group: info.APIGroup, Version: info.APIVersion}
	opts, err := m.listOptions(req, store.GroupVersionKind(gv))
	if err != nil {
		responsewriters.ErrorNegotiated(err, m.errors, gv, w, req)
		return
	}
	ctx := pgstorage.WithStoredJSON(request.WithNamespace(req.Context(), info.Namespace))
	obj, err := store.List(ctx, &opts)
	if err != nil {
		responsewriters.ErrorNegotiated(err, m.errors, gv, w, req)
		return
	}
	if list, ok := obj.(*storedjson.List); ok && compress && list.JSONSize() > gzipThreshold {
		m.sendCompressed(w, list, info)
		return
	}
	responsewriters.WriteObjectNegotiated(m.errors, reportEndpoint{}, gv, w, req, http.StatusOK, obj, false)
}

// sendCompressed writes list gzip-compressed (writeCompressed). As the generic writer does once
// the status is sent, an error is logged and the client sees the stream end early.
func (m *metadataLists) sendCompressed(w http.ResponseWriter, list jsonBody, info *request.RequestInfo) {
	if err := writeCompressed(w, list); err != nil {
		utilruntime.HandleError(fmt.Errorf("list %s: %w", info.Resource, err))
	}
}

// list lists the metadata of store's objects and writes it, gzip-compressed when compress and the
// list is over gzipThreshold.
func (m *metadataLists) list(w http.ResponseWriter, req *http.Request, store *registry.REST, info *request.RequestInfo, compress bool) {
	gv := schema.GroupVersion{Group: info.APIGroup, Version: info.APIVersion}
	fail := func(err error) { responsewriters.ErrorNegotiated(err, m.errors, gv, w, req) }
	opts, err := m.listOptions(req, store.GroupVersionKind(gv))
	if err != nil {
		fail(err)
		return
	}
	ctx := pgstorage.WithMetadataJSON(request.WithNamespace(req.Context(), info.Namespace))
	// The generic store's List, not REST.List: the list is written as metadata, not as reports.
	obj, err := store.Store.List(ctx, &opts)
	if err != nil {
		fail(err)
		return
	}
	carrier, ok := obj.(storedjson.Carrier)
	if !ok {
		fail(apierrors.NewInternalError(fmt.Errorf("list type %T cannot keep stored metadata", obj)))
		return
	}
	list, err := storedjson.NewMetadataList(carrier, m.encodings)
	if err != nil {
		fail(apierrors.NewInternalError(err))
		return
	}
	if compress && list.JSONSize() > gzipThreshold {
		m.sendCompressed(w, list, info)
		return
	}
	responsewriters.WriteObjectNegotiated(metainternalversionscheme.Codecs, reportEndpoint{}, metav1.SchemeGroupVersion, w, req, http.StatusOK, list, false)
}

// listOptions parses and checks req's list options as the generic list handler does
// (k8s.io/apiserver/pkg/endpoints/handlers.ListResource), for a resource of kind.
func (m *metadataLists) listOptions(req *http.Request, kind schema.GroupVersionKind) (metainternalversion.ListOptions, error) {
	opts := metainternalversion.ListOptions{}
	if err := metainternalversionscheme.ParameterCodec.DecodeParameters(req.URL.Query(), metav1.SchemeGroupVersion, &opts); err != nil {
		return opts, apierrors.NewBadRequest(err.Error())
	}
	watchList := utilfeature.DefaultFeatureGate.Enabled(features.WatchList)
	metainternalversion.SetListOptionsDefaults(&opts, watchList)
	if errs := metainternalversionvalidation.ValidateListOptions(&opts, watchList); len(errs) > 0 {
		return opts, apierrors.NewInvalid(schema.GroupKind{Group: metav1.GroupName, Kind: "ListOptions"}, "", errs)
	}
	if opts.FieldSelector != nil {
		var err error
		opts.FieldSelector, err = opts.FieldSelector.Transform(func(label, value string) (string, string, error) {
			return m.convertor.ConvertFieldLabel(kind, label, value)
		})
		if err != nil {
			return opts, apierrors.NewBadRequest(err.Error())
		}
	}
	return opts, nil
}
