package storedjson

import (
	"io"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Object is one object of a response (a watch event's) with its stored JSON. It is a
// runtime.CacheableObject: the API server's encoders call CacheEncode, which writes the stored
// JSON when they want plain JSON of the served version (or a watch event of its metadata as
// plain JSON PartialObjectMetadata), and otherwise encodes the typed object.
//
// The typed object is either complete (a watch event shared by many watchers: each gets its own
// Object around the shared typed object, which nobody may change) or hollow, decoded from the
// stored JSON only when an encoding or a caller needs it (an initial event of a watch-list,
// which one watcher sends once).
type Object struct {
	encodings *Encodings
	// data is the object's JSON as a client receives it, or nil for an object read as its
	// metadata alone (NewMetadata), which has only metadata.
	data []byte
	// metadata is the metadata of an object read as its metadata alone, as a client receives
	// it; nil otherwise (the metadata is then in data).
	metadata []byte
	decode   Decoder

	mu     sync.Mutex
	obj    runtime.Object
	hollow bool
	shared bool
}

var _ runtime.CacheableObject = (*Object)(nil)

// NewShared wraps obj, a complete object that other responses hold too, with its stored JSON
// data. obj is never changed: GetObject returns a copy.
func NewShared(obj runtime.Object, data []byte, encodings *Encodings) *Object {
	return &Object{encodings: encodings, data: data, obj: obj, shared: true}
}

// NewHollow wraps stored JSON data for a response of its own. into is an empty object of the
// right type: decode fills it from data the first time the typed object is needed.
func NewHollow(into runtime.Object, data []byte, encodings *Encodings, decode Decoder) *Object {
	return &Object{encodings: encodings, data: data, decode: decode, obj: into, hollow: true}
}

// NewMetadata wraps the metadata of an object read as its metadata alone, as a client receives
// it (with its resourceVersion), for a response of its own. into is an empty object of the
// right type: decode fills its metadata from metadata the first time the typed object is needed.
func NewMetadata(into runtime.Object, metadata []byte, encodings *Encodings, decode Decoder) *Object {
	return &Object{encodings: encodings, metadata: metadata, decode: decode, obj: into, hollow: true}
}

// CacheEncode implements runtime.CacheableObject.
func (o *Object) CacheEncode(id runtime.Identifier, encode func(runtime.Object, io.Writer) error, w io.Writer) error {
	enc := o.encodings.of(id)
	switch {
	case enc.kind == plainJSON && o.data != nil:
		return writeAll(w, o.data, newline)
	case enc.kind == plainJSONEvent && o.data != nil:
		return writeAll(w, enc.eventStart, o.data, eventEnd)
	case enc.kind == metadataJSONEvent:
		metadata, err := o.metadataJSON()
		if err != nil {
			return err
		}
		return writeAll(w, enc.eventStart, metadata, metadataEventEnd)
	case enc.kind == watchFrame || enc.kind == plainJSONEvent:
		// The event's encoder encodes the object with its embedded encoder, which asks this
		// object again: hand it this object, not a typed copy.
		return encode(o, w)
	}
	obj, err := o.typed()
	if err != nil {
		return err
	}
	return encode(obj, w)
}

// GetObject implements runtime.CacheableObject: the typed object, a copy when it is shared (the
// caller may change it).
func (o *Object) GetObject() runtime.Object {
	obj, err := o.typed()
	if err != nil {
		// The stored JSON decoded when the object was read (or was just written by us); an
		// error here means memory corruption, not bad data.
		panic(err)
	}
	return obj
}

// metadataJSON is the object's metadata as a client receives it.
func (o *Object) metadataJSON() ([]byte, error) {
	if o.metadata != nil {
		return o.metadata, nil
	}
	return Metadata(o.data)
}

// typed returns the typed object: decoded if hollow, copied if shared.
func (o *Object) typed() (runtime.Object, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.hollow {
		source := o.data
		if source == nil {
			source = o.metadata
		}
		if err := o.decode(source, o.obj); err != nil {
			return nil, err
		}
		o.hollow = false
	}
	if o.shared {
		return o.obj.DeepCopyObject(), nil
	}
	return o.obj, nil
}

// GetObjectKind implements runtime.Object. As the watch cache's cachingObject does, it is the
// typed object's own (a hollow object's kind is set when it is made).
func (o *Object) GetObjectKind() schema.ObjectKind { return o.obj.GetObjectKind() }

// DeepCopyObject implements runtime.Object.
func (o *Object) DeepCopyObject() runtime.Object {
	c := &Object{encodings: o.encodings, data: o.data, metadata: o.metadata, decode: o.decode}
	obj, err := o.typed()
	if err != nil {
		panic(err)
	}
	c.obj = obj.DeepCopyObject()
	return c
}

// newline ends an encoded object, as the JSON serializer ends it; eventEnd a watch event;
// metadataEventEnd a watch event's PartialObjectMetadata and the event.
var (
	newline          = []byte("\n")
	eventEnd         = []byte("}\n")
	metadataEventEnd = []byte("}}\n")
)
