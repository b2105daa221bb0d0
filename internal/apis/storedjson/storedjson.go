// Package storedjson serves reports as the JSON they are stored as, without decoding them into
// Go structs and encoding them again.
//
// A full list of reports spent most of the server's CPU decoding each stored object into its
// typed struct (finding its kind, then every field) and encoding the struct back into the same
// JSON. When a response is plain JSON of the served version, the stored JSON with its
// resourceVersion put back is that encoding already. So storage reads, for requests marked as
// such (pgstorage.WithStoredJSON), keep each object's JSON beside it, and the objects they hand
// to the API server's handlers are runtime.CacheableObjects (Object for single objects, List
// for lists): the handlers' encoders ask them to encode themselves (CacheEncode) and say which
// encoding they want. For plain JSON of the served version they write the stored bytes; for
// anything else (pretty or YAML output, a conversion) they decode the stored JSON into the full
// typed object and let the encoder do its usual work, so every response is what the typed path
// gives, once decoded (key order and spacing aside).
package storedjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
)

// WithResourceVersion returns the stored JSON of an object with metadata.resourceVersion set to
// rv: storage keeps objects without it (it is the row's revision). data must be a JSON object
// with a "metadata" object and no resourceVersion in it, as storage writes them.
func WithResourceVersion(data []byte, rv int64) ([]byte, error) {
	at, empty, err := metadataStart(data)
	if err != nil {
		return nil, err
	}
	return joinResourceVersion(data[:at], data[at:], rv, empty), nil
}

// MetadataWithResourceVersion returns the top-level "metadata" object of the stored JSON of an
// object, with resourceVersion set to rv (see WithResourceVersion), in one copy.
func MetadataWithResourceVersion(data []byte, rv int64) ([]byte, error) {
	at, end, empty, err := metadataSpan(data)
	if err != nil {
		return nil, err
	}
	return joinResourceVersion(data[at-1:at], data[at:end], rv, empty), nil
}

// joinResourceVersion returns before, the resourceVersion field set to rv, and after, in a new
// slice: before ends with the metadata's opening brace, after is the rest of the metadata (empty
// says it has no other field, so the field takes no comma) and whatever follows.
func joinResourceVersion(before, after []byte, rv int64, empty bool) []byte {
	field := `"resourceVersion":"` + strconv.FormatInt(rv, 10) + `"`
	if !empty {
		field += ","
	}
	out := make([]byte, 0, len(before)+len(field)+len(after))
	out = append(out, before...)
	out = append(out, field...)
	return append(out, after...)
}

// Metadata returns the top-level "metadata" object of the JSON object data, as it is in data.
func Metadata(data []byte) ([]byte, error) {
	at, end, _, err := metadataSpan(data)
	if err != nil {
		return nil, err
	}
	return data[at-1 : end], nil
}

// metadataSpan finds the top-level "metadata" object in data: the offset just past its opening
// brace, the offset just past its closing one, and whether it is empty (see metadataStart).
func metadataSpan(data []byte) (at, end int, empty bool, err error) {
	if at, empty, err = metadataStart(data); err != nil {
		return 0, 0, false, err
	}
	if end, err = skipValue(data, at-1); err != nil {
		return 0, 0, false, err
	}
	return at, end, empty, nil
}

// metadataStart finds the top-level "metadata" object in data and returns the offset just past
// its opening brace, and whether the object is empty. It scans the top level only: a "metadata"
// key nested anywhere else (in a result's properties, say) is skipped with its value.
func metadataStart(data []byte) (int, bool, error) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return 0, false, errors.New("stored object is not a JSON object")
	}
	i++
	for {
		i = skipSpace(data, i)
		if i >= len(data) || data[i] != '"' {
			return 0, false, errors.New("stored object has no metadata")
		}
		end, err := skipString(data, i)
		if err != nil {
			return 0, false, err
		}
		key := data[i+1 : end-1]
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return 0, false, errors.New("malformed stored object")
		}
		i = skipSpace(data, i+1)
		if string(key) == "metadata" {
			if i >= len(data) || data[i] != '{' {
				return 0, false, errors.New("stored metadata is not an object")
			}
			next := skipSpace(data, i+1)
			return i + 1, next < len(data) && data[next] == '}', nil
		}
		if i, err = skipValue(data, i); err != nil {
			return 0, false, err
		}
		i = skipSpace(data, i)
		if i >= len(data) || data[i] != ',' {
			return 0, false, errors.New("stored object has no metadata")
		}
		i++
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\n' || data[i] == '\t' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the offset past the string that starts at data[i] ('"').
func skipString(data []byte, i int) (int, error) {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errors.New("unterminated string in stored object")
}

// skipValue returns the offset past the JSON value that starts at data[i].
func skipValue(data []byte, i int) (int, error) {
	if i >= len(data) {
		return 0, errors.New("truncated stored object")
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end, err := skipString(data, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errors.New("truncated stored object")
	default: // number, true, false, null
		j := i
		for j < len(data) && data[j] != ',' && data[j] != '}' && data[j] != ']' && data[j] != ' ' && data[j] != '\n' {
			j++
		}
		return j, nil
	}
}

// encoding is what an encoder identifier asks of a CacheableObject.
type encoding struct {
	kind encodingKind
	// eventStart is a plainJSONEvent's event up to its object: {"type":"ADDED","object":
	eventStart []byte
}

// encodingKind is the kind of an encoding.
type encodingKind int

const (
	typedEncoding     encodingKind = iota // anything else: the typed object's encoding
	plainJSON                             // plain JSON of the served version: the stored JSON as it is
	watchFrame                            // a watch event around the object: the object itself is encoded by the event's embedded encoder, which asks again
	plainJSONEvent                        // a watch event of a plain JSON stream whose object is plain JSON of the served version: the event around the stored JSON
	metadataJSONEvent                     // a watch event of a plain JSON stream whose object is its metadata as plain JSON PartialObjectMetadata (meta.k8s.io/v1): the event around the stored metadata
)

// encodingOf tells what id asks for. id is the identifier of plain JSON of version gv when it is
// a versioning codec around the JSON serializer, neither pretty nor YAML: the encoder whose output
// the stored JSON already is. Identifiers are JSON documents (k8s.io/apimachinery/pkg/runtime/
// serializer/versioning and .../json, k8s.io/apiserver/pkg/endpoints/handlers' watch encoder);
// anything unrecognised gets the typed encoding, which only costs time.
//
// A watch event whose object and event are both encoded as plain JSON of gv (the watch encoder's
// embedded and outer encoders) is a plainJSONEvent: the handler would encode the object into a
// buffer and then the event around it with encoding/json, which scans the whole object again to
// compact it; the event written around the stored JSON is the same once decoded. A watch event
// of plain JSON whose object the embedded encoder turns into PartialObjectMetadata of
// meta.k8s.io/v1 in plain JSON (a metadata-only watch: informers of Kyverno and Policy
// Reporter) is a metadataJSONEvent: the handler would copy the metadata into a
// PartialObjectMetadata, encode it with encoding/json's reflection, and scan it again for the
// event; the event written around the stored metadata is the same once decoded. Other watch
// events (Tables, YAML, protobuf) are framed by the handler (watchFrame).
func encodingOf(id runtime.Identifier, gv schema.GroupVersion) encoding {
	var codec struct{ Name, EncodeGV, Encoder, EmbeddedEncoder, EventType string }
	if json.Unmarshal([]byte(id), &codec) != nil {
		return encoding{kind: typedEncoding}
	}
	switch {
	case codec.Name == "watch":
		return watchEncoding(codec.EmbeddedEncoder, codec.Encoder, codec.EventType, gv)
	case codec.Name != "versioning" || codec.EncodeGV != gv.String():
		return encoding{kind: typedEncoding}
	}
	var enc map[string]string
	if json.Unmarshal([]byte(codec.Encoder), &enc) != nil {
		return encoding{kind: typedEncoding}
	}
	if enc["name"] == "json" && enc["yaml"] == "false" && enc["pretty"] == "false" {
		return encoding{kind: plainJSON}
	}
	return encoding{kind: typedEncoding}
}

// watchEncoding is the encoding of a watch event of type eventType by a watch encoder whose
// embedded and outer encoders have the given identifiers.
func watchEncoding(embedded, outer, eventType string, gv schema.GroupVersion) encoding {
	switch watch.EventType(eventType) {
	case watch.Added, watch.Modified, watch.Deleted:
	default:
		return encoding{kind: watchFrame}
	}
	if encodingOf(runtime.Identifier(outer), gv).kind != plainJSON {
		return encoding{kind: watchFrame}
	}
	start, err := json.Marshal(eventType)
	if err != nil {
		return encoding{kind: watchFrame}
	}
	switch {
	case encodingOf(runtime.Identifier(embedded), gv).kind == plainJSON:
		return encoding{kind: plainJSONEvent, eventStart: fmt.Appendf(nil, `{"type":%s,"object":`, start)}
	case metadataV1JSON(embedded):
		return encoding{kind: metadataJSONEvent, eventStart: fmt.Appendf(nil,
			`{"type":%s,"object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":`, start)}
	}
	return encoding{kind: watchFrame}
}

// partialObjectMetadataV1 is the target of a metadata-only watch's embedded encoder, as its
// identifier names it.
var partialObjectMetadataV1 = metav1.SchemeGroupVersion.WithKind("PartialObjectMetadata")

// metadataV1JSON tells whether id is the identifier of a watch's embedded encoder that turns
// each object into PartialObjectMetadata of meta.k8s.io/v1 and encodes that as plain JSON
// (k8s.io/apiserver/pkg/endpoints/handlers' watchEmbeddedEncoder).
func metadataV1JSON(id string) bool {
	var embedded struct{ Name, Encoder, Target string }
	if json.Unmarshal([]byte(id), &embedded) != nil || embedded.Name != "watch-embedded" ||
		embedded.Target != partialObjectMetadataV1.String() {
		return false
	}
	return encodingOf(runtime.Identifier(embedded.Encoder), partialObjectMetadataV1.GroupVersion()).kind == plainJSON
}

// Encodings remembers what each encoder identifier asks for (encodingOf) for the objects of one
// served version: identifiers are few and fixed, while asking is two JSON decodings, and every
// response and every watch event for every watcher asks. Safe for concurrent use; share one per
// store.
type Encodings struct {
	gv  schema.GroupVersion
	mu  sync.RWMutex
	ids map[runtime.Identifier]encoding
}

// NewEncodings returns an empty cache for objects stored as version gv.
func NewEncodings(gv schema.GroupVersion) *Encodings {
	return &Encodings{gv: gv, ids: map[runtime.Identifier]encoding{}}
}

func (e *Encodings) of(id runtime.Identifier) encoding {
	e.mu.RLock()
	enc, ok := e.ids[id]
	e.mu.RUnlock()
	if ok {
		return enc
	}
	enc = encodingOf(id, e.gv)
	e.mu.Lock()
	e.ids[id] = enc
	e.mu.Unlock()
	return enc
}

// Decoder decodes an object's stored JSON (as WithResourceVersion returns it) into a typed
// object.
type Decoder func(data []byte, into runtime.Object) error

// writeAll writes the parts to w in order.
func writeAll(w io.Writer, parts ...[]byte) error {
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}
