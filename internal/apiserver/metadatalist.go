package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
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
// After a page of a list it compresses or could (the client accepts gzip) that has more, it
// answers the request that continues the list ahead of time (pagesahead.go).
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
	// ahead keeps the pages of compressed lists answered ahead of their requests (pagesahead.go).
	ahead *pagesAhead
}

// listAnswer writes the list req asks for on w and tells about the page it wrote (ok: a 200).
type listAnswer func(w http.ResponseWriter, req *http.Request, store *registry.REST, info *request.RequestInfo, compress bool) (page pageInfo, ok bool)

func newMetadataLists(convertor runtime.ObjectConvertor, errors runtime.NegotiatedSerializer) *metadataLists {
	return &metadataLists{convertor: convertor, errors: errors, encodings: storedjson.NewEncodings(metav1.SchemeGroupVersion), ahead: newPagesAhead()}
}

// serve answers req and returns true when it is a metadata-only JSON list of a report resource,
// or a plain JSON list of whole reports to a client that accepts gzip (mediaType and serializer
// are req's negotiated output); otherwise it leaves req to the generic handlers.
func (m *metadataLists) serve(w http.ResponseWriter, req *http.Request, mediaType negotiation.MediaTypeOptions, serializer runtime.SerializerInfo) bool {
	// Pretty JSON (asked for, or for curl and browsers) is compressed by the generic writer.
	pretty := serializer.PrettySerializer != nil && serializer.Serializer.Identifier() == serializer.PrettySerializer.Identifier()
	compress := !pretty && acceptsGzip(req)
	answer, metadata := listAnswer(m.list), true
	if convert := mediaType.Convert; convert == nil || convert.Kind != "PartialObjectMetadataList" ||
		convert.GroupVersion() != metav1.SchemeGroupVersion || mediaType.Accepted.MediaType != runtime.ContentTypeJSON {
		if !plainOutput(mediaType) || mediaType.Accepted.MediaType != runtime.ContentTypeJSON || !compress {
			return false
		}
		answer, metadata = m.objectList, false
	}
	info, ok := request.RequestInfoFrom(req.Context())
	if !ok || !info.IsResourceRequest || info.Verb != "list" || info.Subresource != "" {
		return false
	}
	stores := m.stores.Load()
	if stores == nil {
		return false
	}
	gvr := schema.GroupVersionResource{Group: info.APIGroup, Version: info.APIVersion, Resource: info.Resource}
	store, ok := (*stores)[gvr]
	// A cluster-scoped resource has no path under a namespace: the generic handlers answer 404.
	if !ok || (!store.NamespaceScoped() && info.Namespace != "") {
		return false
	}
	metrics.InstrumentHandlerFunc("LIST", info.APIGroup, info.APIVersion, info.Resource, "", metrics.CleanScope(info),
		metrics.APIServerComponent, false, "", func(w http.ResponseWriter, req *http.Request) {
			if !compress {
				answer(w, req, store, info, compress)
				return
			}
			query := req.URL.Query()
			key := aheadKey{resource: gvr, namespace: info.Namespace, metadata: metadata, query: canonicalQuery(query)}
			page, ok := m.answerAhead(w, req, query, store, key)
			if !ok {
				page, ok = answer(w, req, store, info, compress)
			}
			// A client asking for huge pages would have the next one made for nothing if it
			// stopped: such pages are not answered ahead.
			if ok && page.next != "" && page.size >= 0 && page.size <= aheadMaxPageJSON {
				m.startAhead(req, query, store, info, answer, key, page.next)
			}
		})(w, req)
	return true
}

// answerAhead writes the page of key answered ahead (req is a list with query), if there is one
// and the change log still reaches its revision (else the request is answered as usual, with 410
// Gone after compaction).
func (m *metadataLists) answerAhead(w http.ResponseWriter, req *http.Request, query url.Values, store *registry.REST, key aheadKey) (pageInfo, bool) {
	if query.Get("continue") == "" {
		return pageInfo{}, false
	}
	st := store.Storage.Storage
	p, ok := m.ahead.Take(req.Context(), key, func(p *aheadAnswer) bool {
		_, err := st.GetCurrentResourceVersion(req.Context())
		return err == nil && p.page.rev >= st.CompactRevision()
	})
	if !ok {
		return pageInfo{}, false
	}
	if err := p.resp.writeTo(w); err != nil {
		utilruntime.HandleError(fmt.Errorf("list %s: write a page answered ahead: %w", key.resource.Resource, err))
	}
	return p.page, true
}

// startAhead answers in the background the request that continues req's list (asked with
// query) at token next (pagesahead.go). It runs as req's user, outside req's handler chain,
// whose checks the request itself passes when it comes.
func (m *metadataLists) startAhead(req *http.Request, query url.Values, store *registry.REST, info *request.RequestInfo, answer listAnswer, key aheadKey, next string) {
	query = continuationQuery(query, next)
	key.query = canonicalQuery(query)
	// A request of its own, without req's context: what req's handler chain put there (its
	// audit event, its warnings, its deadline) ends with req.
	user, _ := request.UserFrom(req.Context())
	cont := req.Clone(context.Background())
	cont.URL.RawQuery = query.Encode()
	m.ahead.Start(context.Background(), key, func(ctx context.Context) (*aheadAnswer, error) {
		ctx = request.WithRequestInfo(ctx, info)
		if user != nil {
			ctx = request.WithUser(ctx, user)
		}
		return answerAhead(ctx, func(ctx context.Context, w http.ResponseWriter) (pageInfo, bool) {
			return answer(w, cont.WithContext(ctx), store, info, true)
		})
	})
}

// pageOf is what list (a list object, size bytes of JSON, -1 if not known) tells about its page.
func pageOf(list runtime.Object, size int) (pageInfo, bool) {
	var meta metav1.ListInterface
	var err error
	if l, ok := list.(*storedjson.List); ok {
		meta, err = l.ListMeta() // ListAccessor knows only typed lists
	} else {
		meta, err = apimeta.ListAccessor(list)
	}
	if err != nil {
		return pageInfo{}, false
	}
	rev, err := strconv.ParseInt(meta.GetResourceVersion(), 10, 64)
	if err != nil {
		return pageInfo{}, false
	}
	return pageInfo{rev: rev, next: meta.GetContinue(), size: size}, true
}

// objectList lists store's objects as their stored JSON and writes them, gzip-compressed when
// compress and the list is over gzipThreshold.
func (m *metadataLists) objectList(w http.ResponseWriter, req *http.Request, store *registry.REST, info *request.RequestInfo, compress bool) (pageInfo, bool) {
	gv := schema.GroupVersion{Group: info.APIGroup, Version: info.APIVersion}
	opts, err := m.listOptions(req, store.GroupVersionKind(gv))
	if err != nil {
		responsewriters.ErrorNegotiated(err, m.errors, gv, w, req)
		return pageInfo{}, false
	}
	ctx := pgstorage.WithStoredJSON(request.WithNamespace(req.Context(), info.Namespace))
	obj, err := store.List(ctx, &opts)
	if err != nil {
		responsewriters.ErrorNegotiated(err, m.errors, gv, w, req)
		return pageInfo{}, false
	}
	size := -1
	if list, ok := obj.(*storedjson.List); ok {
		size = list.JSONSize()
	}
	if size > gzipThreshold && compress {
		m.sendCompressed(w, obj.(*storedjson.List), info)
	} else {
		responsewriters.WriteObjectNegotiated(m.errors, reportEndpoint{}, gv, w, req, http.StatusOK, obj, false)
	}
	return pageOf(obj, size)
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
func (m *metadataLists) list(w http.ResponseWriter, req *http.Request, store *registry.REST, info *request.RequestInfo, compress bool) (pageInfo, bool) {
	gv := schema.GroupVersion{Group: info.APIGroup, Version: info.APIVersion}
	fail := func(err error) (pageInfo, bool) {
		responsewriters.ErrorNegotiated(err, m.errors, gv, w, req)
		return pageInfo{}, false
	}
	opts, err := m.listOptions(req, store.GroupVersionKind(gv))
	if err != nil {
		return fail(err)
	}
	ctx := pgstorage.WithMetadataJSON(request.WithNamespace(req.Context(), info.Namespace))
	// The generic store's List, not REST.List: the list is written as metadata, not as reports.
	obj, err := store.Store.List(ctx, &opts)
	if err != nil {
		return fail(err)
	}
	carrier, ok := obj.(storedjson.Carrier)
	if !ok {
		return fail(apierrors.NewInternalError(fmt.Errorf("list type %T cannot keep stored metadata", obj)))
	}
	list, err := storedjson.NewMetadataList(carrier, m.encodings)
	if err != nil {
		return fail(apierrors.NewInternalError(err))
	}
	size := list.JSONSize()
	if compress && size > gzipThreshold {
		m.sendCompressed(w, list, info)
	} else {
		responsewriters.WriteObjectNegotiated(metainternalversionscheme.Codecs, reportEndpoint{}, metav1.SchemeGroupVersion, w, req, http.StatusOK, list, false)
	}
	return pageOf(obj, size)
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
