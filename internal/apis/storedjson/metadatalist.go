package storedjson

import (
	"fmt"
	"io"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// MetadataList is a list read for a metadata-only response (a PartialObjectMetadataList of
// meta.k8s.io/v1, what the informers of Kyverno's reports controllers and of Policy Reporter ask
// for): a runtime.CacheableObject whose plain JSON encoding wraps each item's stored metadata
// JSON (Items.KeepMetadata) as it is, without decoding it. Any other encoding, and GetObject,
// get the typed PartialObjectMetadataList, built from the stored metadata or, when storage
// decoded the items instead, from the items.
//
// The API server's generic list handler cannot be handed such a list: it converts every list to
// a PartialObjectMetadataList itself (a copy of each item's metadata) and encodes that with
// encoding/json, which cost as much server CPU as everything else of a metadata-only page. So
// the API server answers these lists with a handler of its own (internal/apiserver,
// metadatalist.go), which encodes a MetadataList as the generic handler encodes its list.
type MetadataList struct {
	list      Carrier
	encodings *Encodings

	mu    sync.Mutex
	typed *metav1.PartialObjectMetadataList
}

var _ runtime.CacheableObject = (*MetadataList)(nil)

// The kinds of a metadata-only list and of its items, as the generic handler sets them.
var (
	metadataListKind = metav1.TypeMeta{Kind: "PartialObjectMetadataList", APIVersion: metav1.SchemeGroupVersion.String()}
	metadataItemKind = metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: metav1.SchemeGroupVersion.String()}
)

// NewMetadataList returns the metadata-only list of list. encodings must be of meta.k8s.io/v1
// (NewEncodings(metav1.SchemeGroupVersion)): the version a PartialObjectMetadataList is encoded
// in. It fails when stored metadata does not match the items one for one.
func NewMetadataList(list Carrier, encodings *Encodings) (*MetadataList, error) {
	if encodings.gv != metav1.SchemeGroupVersion {
		return nil, fmt.Errorf("metadata list encodings are of %s, want %s", encodings.gv, metav1.SchemeGroupVersion)
	}
	if stored := list.StoredItems(); stored.metadata {
		if items := meta.LenList(list); items != stored.Len() {
			return nil, fmt.Errorf("list of %d items keeps the stored metadata of %d", items, stored.Len())
		}
	}
	return &MetadataList{list: list, encodings: encodings}, nil
}

// CacheEncode implements runtime.CacheableObject.
func (l *MetadataList) CacheEncode(id runtime.Identifier, encode func(runtime.Object, io.Writer) error, w io.Writer) error {
	if l.list.StoredItems().metadata && l.encodings.of(id).kind == plainJSON {
		return l.stream(w)
	}
	list, err := l.typedList()
	if err != nil {
		return err
	}
	return encode(list, w)
}

// JSONSize is the length of the list's plain JSON encoding (what WriteJSON writes), or -1 when
// the list does not keep its items' stored metadata.
func (l *MetadataList) JSONSize() int {
	if !l.list.StoredItems().metadata {
		return -1
	}
	return writtenSize(l.stream)
}

// WriteJSON writes the list's plain JSON encoding, as CacheEncode writes it for the JSON
// serializer. Only for a list whose JSONSize is not -1.
func (l *MetadataList) WriteJSON(w io.Writer) error { return l.stream(w) }

// streamBuffer is how many bytes stream gathers before it writes them: one write per item would
// cost more than the item's bytes.
const streamBuffer = 32 << 10

// stream writes the list as the JSON serializer writes a PartialObjectMetadataList, with the
// stored metadata of each item.
func (l *MetadataList) stream(w io.Writer) error {
	head, err := startList(w, l.list, metadataListKind.Kind, metadataListKind.APIVersion)
	if err != nil {
		return err
	}
	buf := append(make([]byte, 0, streamBuffer+4<<10), head...)
	items := l.list.StoredItems().data
	if len(items) == 0 {
		// The generic handler's conversion leaves an empty list's items nil, which encodes as
		// null (kube-apiserver answers so too).
		buf = append(buf, "null}\n"...)
		_, err = w.Write(buf)
		return err
	}
	buf = append(buf, '[')
	for i, data := range items {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, metadataItemStart...)
		buf = append(buf, data...)
		buf = append(buf, '}')
		if len(buf) >= streamBuffer {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	buf = append(buf, listEnd...)
	_, err = w.Write(buf)
	return err
}

// metadataItemStart opens an item of a metadata-only list, up to its metadata.
var metadataItemStart = []byte(`{"kind":"` + metadataItemKind.Kind + `","apiVersion":"` + metadataItemKind.APIVersion + `","metadata":`)

// typedList builds the typed PartialObjectMetadataList (once) and returns it.
func (l *MetadataList) typedList() (*metav1.PartialObjectMetadataList, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.typed != nil {
		return l.typed, nil
	}
	acc, err := meta.ListAccessor(l.list)
	if err != nil {
		return nil, err
	}
	out := &metav1.PartialObjectMetadataList{TypeMeta: metadataListKind}
	out.ResourceVersion, out.Continue, out.RemainingItemCount = acc.GetResourceVersion(), acc.GetContinue(), acc.GetRemainingItemCount()
	if n := meta.LenList(l.list); n > 0 {
		// Nil when empty, as the generic handler's conversion leaves it (see stream).
		out.Items = make([]metav1.PartialObjectMetadata, 0, n)
	}
	if stored := l.list.StoredItems(); stored.metadata {
		for i, data := range stored.data {
			item := metav1.PartialObjectMetadata{TypeMeta: metadataItemKind}
			if err := UnmarshalObjectMeta(data, &item.ObjectMeta); err != nil {
				return nil, fmt.Errorf("decode stored metadata of item %d: %w", i, err)
			}
			out.Items = append(out.Items, item)
		}
	} else {
		err := meta.EachListItem(l.list, func(obj runtime.Object) error {
			m, err := meta.Accessor(obj)
			if err != nil {
				return err
			}
			item := meta.AsPartialObjectMetadata(m)
			item.TypeMeta = metadataItemKind
			out.Items = append(out.Items, *item)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	l.typed = out
	return out, nil
}

// GetObject implements runtime.CacheableObject: the typed PartialObjectMetadataList.
func (l *MetadataList) GetObject() runtime.Object {
	list, err := l.typedList()
	if err != nil {
		// The stored metadata was read as JSON a moment ago; an error here is a bug.
		panic(err)
	}
	return list
}

// GetObjectKind implements runtime.Object: the kind of a PartialObjectMetadataList.
func (l *MetadataList) GetObjectKind() schema.ObjectKind {
	kind := metadataListKind
	return &kind
}

// DeepCopyObject implements runtime.Object.
func (l *MetadataList) DeepCopyObject() runtime.Object { return l.GetObject().DeepCopyObject() }
