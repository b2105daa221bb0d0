package pgstorage

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/storage"
	kjson "sigs.k8s.io/json"

	"github.com/reports-server/reports-server/internal/apis/storedjson"
)

// storedJSONKey marks a request whose response is plain JSON or YAML of the served version.
type storedJSONKey struct{}

// WithStoredJSON marks ctx's request as one whose response the API server's handlers encode as
// JSON or YAML of the served version, with no conversion: its lists then return hollow items
// with their stored JSON (storedjson.Items), its watches storedjson.Objects, which encode as the
// stored JSON without decoding it (see package storedjson), and its creates and gets the object
// written or read as such an Object (Answer). The API server's handler chain sets it after
// negotiating the response's media type exactly as the handlers do. Unmarked requests (and
// every caller inside the server) get typed objects.
func WithStoredJSON(ctx context.Context) context.Context {
	return context.WithValue(ctx, storedJSONKey{}, true)
}

// storedJSON reports whether WithStoredJSON marked ctx.
func storedJSON(ctx context.Context) bool {
	v, _ := ctx.Value(storedJSONKey{}).(bool)
	return v
}

// answerKey holds a request's Answer.
type answerKey struct{}

// Answer is where Create and Get leave, for a request marked WithStoredJSON, the object as a
// storedjson.Object with the JSON it was stored as (and its resourceVersion), so the response is
// written from those bytes instead of encoded again: Create the object it wrote (typed as well),
// Get the object it read (hollow: decoded only if something asks for the typed object, which
// the plain JSON response does not).
type Answer struct {
	Object runtime.Object
	// get: filled by Get, not by Create. (The generic store's Create calls Get itself when the
	// key exists, and needs that object typed.)
	get bool
}

// WithCreateAnswer returns ctx with an Answer for the Create it is passed to, WithGetAnswer for
// the Get. The generic store hands the object storage wrote or read back to its caller as typed:
// REST.Create and REST.Get, which own the Answer, answer with a.Object when storage filled it.
// (A Get that fills it leaves its typed object empty.)
func WithCreateAnswer(ctx context.Context) (context.Context, *Answer) {
	a := &Answer{}
	return context.WithValue(ctx, answerKey{}, a), a
}

// WithGetAnswer: see WithCreateAnswer.
func WithGetAnswer(ctx context.Context) (context.Context, *Answer) {
	a := &Answer{get: true}
	return context.WithValue(ctx, answerKey{}, a), a
}

// answerOf is ctx's Answer for a Get (get) or a Create when the request's response is plain
// JSON or YAML (WithStoredJSON), else nil.
func answerOf(ctx context.Context, get bool) *Answer {
	a, _ := ctx.Value(answerKey{}).(*Answer)
	if a == nil || a.get != get || !storedJSON(ctx) {
		return nil
	}
	return a
}

// keepWritten leaves obj, written as data (stored JSON) at rev, in ctx's Answer for a Create. A
// failure only costs the encoding it would have saved.
func (s *Store) keepWritten(ctx context.Context, obj runtime.Object, data []byte, rev int64) {
	if a, sent := s.answerWith(ctx, false, data, rev); a != nil {
		a.Object = storedjson.NewShared(obj, sent, s.encodings)
	}
}

// keepRead leaves the object stored as data at rev in ctx's Answer for a Get, hollow, and
// reports whether it did; if not, the caller decodes the object itself.
func (s *Store) keepRead(ctx context.Context, data []byte, rev int64) bool {
	a, sent := s.answerWith(ctx, true, data, rev)
	if a != nil {
		a.Object = storedjson.NewHollow(s.hollowItem(s.newFunc), sent, s.encodings, s.decodeJSON)
	}
	return a != nil
}

// answerWith is ctx's Answer for a Get (get) or a Create (answerOf) and the stored JSON data at
// rev as that answer sends it (storedBytes); a nil Answer when there is none or the bytes could
// not be made.
func (s *Store) answerWith(ctx context.Context, get bool, data []byte, rev int64) (*Answer, []byte) {
	a := answerOf(ctx, get)
	if a == nil {
		return nil, nil
	}
	sent, err := s.storedBytes(data, rev)
	if err != nil {
		return nil, nil
	}
	return a, sent
}

// metadataJSONKey marks a metadata-only list whose response is written from stored metadata.
type metadataJSONKey struct{}

// WithMetadataJSON marks ctx's request as a metadata-only list (WithMetadataOnly) whose response
// is written from each item's stored metadata JSON (storedjson.MetadataList): its lists then
// return hollow items and keep each one's metadata JSON, with its resourceVersion
// (storedjson.Items.KeepMetadata), when SQL does all the selecting; otherwise typed items, as
// for WithMetadataOnly. The API server's metadata-only list handler sets it.
func WithMetadataJSON(ctx context.Context) context.Context {
	return context.WithValue(WithMetadataOnly(ctx), metadataJSONKey{}, true)
}

// metadataJSON reports whether WithMetadataJSON marked ctx.
func metadataJSON(ctx context.Context) bool {
	v, _ := ctx.Value(metadataJSONKey{}).(bool)
	return v
}

// servedKind is the kind and group version the codec stores objects as: the version of their
// stored JSON, which storedjson compares with the one a response is encoded in.
func servedKind(codec runtime.Codec, newFunc func() runtime.Object) (schema.GroupVersionKind, error) {
	data, err := runtime.Encode(codec, newFunc())
	if err != nil {
		return schema.GroupVersionKind{}, fmt.Errorf("encode an empty object: %w", err)
	}
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(data, &tm); err != nil {
		return schema.GroupVersionKind{}, err
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	return gv.WithKind(tm.Kind), err
}

// storedBytes is a row's object as a client receives it: unescaped (text.go) and with its
// resourceVersion. Should the stored JSON not have the shape storage writes, it is the typed
// object's encoding instead (decoded and encoded again), so the bytes are always right.
func (s *Store) storedBytes(data []byte, rev int64) ([]byte, error) {
	out, err := storedjson.WithResourceVersion(unescapeJSON(data), rev)
	if err == nil {
		return out, nil
	}
	obj := s.newFunc()
	if err := s.decode(data, obj, rev); err != nil {
		return nil, err
	}
	return runtime.Encode(s.codec, obj)
}

// storedMetadata is the metadata of an object's stored JSON (a whole object's, or a metadata
// row's: readMetadata) as a client receives it: unescaped (text.go) and with its resourceVersion.
func storedMetadata(data []byte, rev int64) ([]byte, error) {
	out, err := storedjson.MetadataWithResourceVersion(unescapeJSON(data), rev)
	if err != nil {
		return nil, storage.NewInternalError(fmt.Errorf("stored object: %w", err))
	}
	return out, nil
}

// decodeJSON decodes an object's JSON (unescaped) into a typed object; it is also the
// storedjson.Decoder of what storedBytes returns. With Config.PlainJSON it is one unmarshal, as
// the codec's JSON serializer does it (case-sensitive, integers kept), without the codec's first
// pass to find the kind: the stored JSON is always of the store's own kind.
func (s *Store) decodeJSON(data []byte, into runtime.Object) error {
	if s.plainJSON {
		if err := kjson.UnmarshalCaseSensitivePreserveInts(data, into); err != nil {
			return fmt.Errorf("decode stored object: %w", err)
		}
		return nil
	}
	if _, _, err := s.codec.Decode(data, nil, into); err != nil {
		return fmt.Errorf("decode stored object: %w", err)
	}
	return nil
}

// hollowItem returns an empty object of the list's item type for a list that keeps its items'
// stored JSON (a storedjson.List), with the item's kind set as a decoded one would have it.
func (s *Store) hollowItem(newItem func() runtime.Object) runtime.Object {
	obj := newItem()
	obj.GetObjectKind().SetGroupVersionKind(s.kind)
	return obj
}

// decodeMetadata decodes the metadata of an object's stored JSON alone, into an otherwise empty
// object of the store's type, with resourceVersion rev: what a metadata-only watcher's event needs
// (PartialObjectMetadata), without decoding the results, which are almost all of a report.
func (s *Store) decodeMetadata(data []byte, rev int64) (runtime.Object, error) {
	meta, err := storedMetadata(data, rev)
	if err != nil {
		return nil, err
	}
	return s.decodeSentMetadata(meta, s.newFunc)
}

// decodeSentMetadata returns an otherwise empty item of newItem's type with meta, an object's
// metadata as a client receives it (storedMetadata), decoded into its ObjectMeta.
func (s *Store) decodeSentMetadata(meta []byte, newItem func() runtime.Object) (runtime.Object, error) {
	obj := s.hollowItem(newItem)
	if err := decodeMetadataInto(meta, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// decodeMetadataInto decodes meta, an object's metadata as a client receives it, into the
// ObjectMeta of obj, a typed object.
func decodeMetadataInto(meta []byte, obj runtime.Object) error {
	objMeta, ok := objectMeta(obj)
	if !ok {
		return fmt.Errorf("%T has no ObjectMeta", obj)
	}
	if err := storedjson.UnmarshalObjectMeta(meta, objMeta); err != nil {
		return storage.NewInternalError(fmt.Errorf("decode stored metadata: %w", err))
	}
	return nil
}

// objectMeta returns obj's ObjectMeta, if it is a typed object that has one.
func objectMeta(obj runtime.Object) (*metav1.ObjectMeta, bool) {
	accessor, ok := obj.(metav1.ObjectMetaAccessor)
	if !ok {
		return nil, false
	}
	objMeta, ok := accessor.GetObjectMeta().(*metav1.ObjectMeta)
	return objMeta, ok
}

// metadataPredicate reports whether pred reads nothing but an object's metadata: labels, and
// fields that are metadata.name or metadata.namespace.
func metadataPredicate(pred storage.SelectionPredicate) bool {
	if pred.Field == nil || pred.Field.Empty() {
		return true
	}
	for _, r := range pred.Field.Requirements() {
		if r.Field != "metadata.name" && r.Field != "metadata.namespace" {
			return false
		}
	}
	return true
}
