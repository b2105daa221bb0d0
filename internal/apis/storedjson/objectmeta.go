package storedjson

import (
	"strconv"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kjson "sigs.k8s.io/json"
)

// DecodeObjectMeta decodes the JSON object data (an object's "metadata", as storage keeps it)
// into into, and reports whether it could. It is the hot part of every metadata-only read
// (PartialObjectMetadata lists and watches, what Kyverno's and Policy Reporter's informers ask
// for): the API server's handler needs each item's decoded ObjectMeta to convert it, and the
// generic JSON decoder spent 7–8 µs per report on it (reflection over every field, a scan of
// each managedFields entry's fieldsV1, a JSON decode per timestamp), half of the server's CPU on
// that path.
//
// It decodes only the plain shape storage writes: the keys of ObjectMeta and of its owner
// references and managedFields entries, each at most once, strings without escapes, integers
// without fraction or exponent, no nulls. For anything else it returns false, leaving into in
// an unspecified state: the caller resets it and uses the generic decoder, whose result
// (value or error) then stands. When it returns true, into is exactly what
// sigs.k8s.io/json.UnmarshalCaseSensitivePreserveInts would give (FuzzDecodeObjectMeta
// compares the two), so responses do not change.
func DecodeObjectMeta(data []byte, into *metav1.ObjectMeta) bool {
	d := metaDecoder{data: data}
	if !d.objectMeta(into) {
		return false
	}
	d.space()
	return d.i == len(d.data)
}

// UnmarshalObjectMeta decodes the JSON object data (an object's stored "metadata") into into:
// with DecodeObjectMeta when data has the plain shape storage writes, else with the generic
// decoder, whose result (value or error) then stands.
func UnmarshalObjectMeta(data []byte, into *metav1.ObjectMeta) error {
	if DecodeObjectMeta(data, into) {
		return nil
	}
	*into = metav1.ObjectMeta{}
	return kjson.UnmarshalCaseSensitivePreserveInts(data, into)
}

// metaDecoder reads JSON from data at i. Each method returns false when the input is outside
// the shape DecodeObjectMeta accepts (or is not JSON).
type metaDecoder struct {
	data  []byte
	i     int
	depth int // of the values skipValid is in
}

// maxSkipDepth bounds the nesting skipValid accepts (the generic decoder fails past 10,000;
// managedFields' fieldsV1 of a report nests a few levels).
const maxSkipDepth = 1000

func (d *metaDecoder) space() { d.i = skipSpace(d.data, d.i) }

// next consumes c (after optional space).
func (d *metaDecoder) next(c byte) bool {
	d.space()
	if d.i < len(d.data) && d.data[d.i] == c {
		d.i++
		return true
	}
	return false
}

// peek returns the next non-space byte, 0 at the end.
func (d *metaDecoder) peek() byte {
	d.space()
	if d.i < len(d.data) {
		return d.data[d.i]
	}
	return 0
}

// rawString returns the bytes of a string without escapes, as they are in data.
func (d *metaDecoder) rawString() ([]byte, bool) {
	if !d.next('"') {
		return nil, false
	}
	start := d.i
	ascii := true
	for ; d.i < len(d.data); d.i++ {
		switch c := d.data[d.i]; {
		case c == '"':
			s := d.data[start:d.i]
			d.i++
			// The generic decoder replaces invalid UTF-8 with U+FFFD: leave that to it.
			return s, ascii || utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

func (d *metaDecoder) string() (string, bool) {
	s, ok := d.rawString()
	return string(s), ok
}

// object calls field for each key of an object, with the decoder at the key's value; field
// decodes the value. A key seen twice is refused (the generic decoder would merge or overwrite).
func (d *metaDecoder) object(field func(key []byte) bool) bool {
	if !d.next('{') {
		return false
	}
	if d.next('}') {
		return true
	}
	for {
		key, ok := d.rawString()
		if !ok || !d.next(':') || !field(key) {
			return false
		}
		if d.next('}') {
			return true
		}
		if !d.next(',') {
			return false
		}
	}
}

// array calls elem for each element of an array, with the decoder at the element.
func (d *metaDecoder) array(elem func() bool) bool {
	if !d.next('[') {
		return false
	}
	if d.next(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if d.next(']') {
			return true
		}
		if !d.next(',') {
			return false
		}
	}
}

// once tracks the keys of one object, refusing a repeated one.
type once uint32

func (o *once) first(bit uint) bool {
	if *o&(1<<bit) != 0 {
		return false
	}
	*o |= 1 << bit
	return true
}

func (d *metaDecoder) int64() (int64, bool) {
	d.space()
	start := d.i
	if d.i < len(d.data) && d.data[d.i] == '-' {
		d.i++
	}
	digits := d.i
	for d.i < len(d.data) && d.data[d.i] >= '0' && d.data[d.i] <= '9' {
		d.i++
	}
	// JSON has no leading zeros and no lone '-' (strconv accepts both); a fraction or an
	// exponent is refused too.
	if d.i == digits || (d.data[digits] == '0' && d.i-digits > 1) || (d.i < len(d.data) && isNumberByte(d.data[d.i])) {
		return 0, false
	}
	n, err := strconv.ParseInt(string(d.data[start:d.i]), 10, 64)
	return n, err == nil
}

// isNumberByte: a byte that would continue a JSON number beyond an integer's digits.
func isNumberByte(c byte) bool { return c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-' }

func (d *metaDecoder) bool() (bool, bool) {
	d.space()
	rest := d.data[d.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		d.i += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		d.i += 5
		return false, true
	}
	return false, false
}

// time decodes a timestamp as metav1.Time.UnmarshalJSON does.
func (d *metaDecoder) time(into *metav1.Time) bool {
	s, ok := d.string()
	if !ok {
		return false
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return false
	}
	into.Time = t.Local()
	return true
}

func (d *metaDecoder) stringMap() (map[string]string, bool) {
	m := map[string]string{}
	ok := d.object(func(key []byte) bool {
		if _, dup := m[string(key)]; dup {
			return false
		}
		v, ok := d.string()
		m[string(key)] = v
		return ok
	})
	return m, ok
}

func (d *metaDecoder) objectMeta(m *metav1.ObjectMeta) bool {
	var seen once
	return d.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "name":
			if ok = seen.first(0); ok {
				m.Name, ok = d.string()
			}
		case "generateName":
			if ok = seen.first(1); ok {
				m.GenerateName, ok = d.string()
			}
		case "namespace":
			if ok = seen.first(2); ok {
				m.Namespace, ok = d.string()
			}
		case "selfLink":
			if ok = seen.first(3); ok {
				m.SelfLink, ok = d.string()
			}
		case "uid":
			if ok = seen.first(4); ok {
				var s string
				s, ok = d.string()
				m.UID = types.UID(s)
			}
		case "resourceVersion":
			if ok = seen.first(5); ok {
				m.ResourceVersion, ok = d.string()
			}
		case "generation":
			if ok = seen.first(6); ok {
				m.Generation, ok = d.int64()
			}
		case "creationTimestamp":
			ok = seen.first(7) && d.time(&m.CreationTimestamp)
		case "deletionTimestamp":
			if ok = seen.first(8); ok {
				m.DeletionTimestamp = &metav1.Time{}
				ok = d.time(m.DeletionTimestamp)
			}
		case "deletionGracePeriodSeconds":
			if ok = seen.first(9); ok {
				var n int64
				n, ok = d.int64()
				m.DeletionGracePeriodSeconds = &n
			}
		case "labels":
			if ok = seen.first(10); ok {
				m.Labels, ok = d.stringMap()
			}
		case "annotations":
			if ok = seen.first(11); ok {
				m.Annotations, ok = d.stringMap()
			}
		case "ownerReferences":
			if ok = seen.first(12); ok {
				m.OwnerReferences = []metav1.OwnerReference{}
				ok = d.array(func() bool {
					m.OwnerReferences = append(m.OwnerReferences, metav1.OwnerReference{})
					return d.ownerReference(&m.OwnerReferences[len(m.OwnerReferences)-1])
				})
			}
		case "finalizers":
			if ok = seen.first(13); ok {
				m.Finalizers = []string{}
				ok = d.array(func() bool {
					s, ok := d.string()
					m.Finalizers = append(m.Finalizers, s)
					return ok
				})
			}
		case "managedFields":
			if ok = seen.first(14); ok {
				m.ManagedFields = []metav1.ManagedFieldsEntry{}
				ok = d.array(func() bool {
					m.ManagedFields = append(m.ManagedFields, metav1.ManagedFieldsEntry{})
					return d.managedFields(&m.ManagedFields[len(m.ManagedFields)-1])
				})
			}
		}
		return ok
	})
}

func (d *metaDecoder) ownerReference(r *metav1.OwnerReference) bool {
	var seen once
	return d.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "apiVersion":
			if ok = seen.first(0); ok {
				r.APIVersion, ok = d.string()
			}
		case "kind":
			if ok = seen.first(1); ok {
				r.Kind, ok = d.string()
			}
		case "name":
			if ok = seen.first(2); ok {
				r.Name, ok = d.string()
			}
		case "uid":
			if ok = seen.first(3); ok {
				var s string
				s, ok = d.string()
				r.UID = types.UID(s)
			}
		case "controller":
			if ok = seen.first(4); ok {
				var b bool
				b, ok = d.bool()
				r.Controller = &b
			}
		case "blockOwnerDeletion":
			if ok = seen.first(5); ok {
				var b bool
				b, ok = d.bool()
				r.BlockOwnerDeletion = &b
			}
		}
		return ok
	})
}

func (d *metaDecoder) managedFields(e *metav1.ManagedFieldsEntry) bool {
	var seen once
	return d.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "manager":
			if ok = seen.first(0); ok {
				e.Manager, ok = d.string()
			}
		case "operation":
			if ok = seen.first(1); ok {
				var s string
				s, ok = d.string()
				e.Operation = metav1.ManagedFieldsOperationType(s)
			}
		case "apiVersion":
			if ok = seen.first(2); ok {
				e.APIVersion, ok = d.string()
			}
		case "time":
			if ok = seen.first(3); ok {
				e.Time = &metav1.Time{}
				ok = d.time(e.Time)
			}
		case "fieldsType":
			if ok = seen.first(4); ok {
				e.FieldsType, ok = d.string()
			}
		case "fieldsV1":
			if ok = seen.first(5) && d.peek() == '{'; ok {
				// The generic decoder hands the value's bytes, as they are, to
				// FieldsV1.UnmarshalJSON: so do we.
				start := d.i
				if ok = d.skipValid(); ok {
					e.FieldsV1 = &metav1.FieldsV1{}
					ok = e.FieldsV1.UnmarshalJSON(d.data[start:d.i]) == nil
				}
			}
		case "subresource":
			if ok = seen.first(6); ok {
				e.Subresource, ok = d.string()
			}
		}
		return ok
	})
}

// skipValid skips one JSON value, checking that it is valid JSON: the generic decoder checks the
// whole input before it decodes any of it. Its strings may have escapes (fieldsV1 keys of list
// items do: k:{"uid":…}), as they are not decoded.
func (d *metaDecoder) skipValid() bool {
	if d.depth++; d.depth > maxSkipDepth {
		return false
	}
	defer func() { d.depth-- }()
	switch d.peek() {
	case '{':
		d.i++
		if d.next('}') {
			return true
		}
		for {
			if !d.skipString() || !d.next(':') || !d.skipValid() {
				return false
			}
			if d.next('}') {
				return true
			}
			if !d.next(',') {
				return false
			}
		}
	case '[':
		return d.array(d.skipValid)
	case '"':
		return d.skipString()
	case 't', 'f':
		_, ok := d.bool()
		return ok
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		_, ok := d.int64()
		return ok
	}
	return false
}

// skipString skips a string, checking its escapes. Like the generic decoder's check, it takes
// any byte from 0x20 up, valid UTF-8 or not: the bytes are kept, not decoded.
func (d *metaDecoder) skipString() bool {
	if !d.next('"') {
		return false
	}
	for d.i < len(d.data) {
		c := d.data[d.i]
		d.i++
		switch {
		case c == '"':
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if d.i >= len(d.data) {
				return false
			}
			e := d.data[d.i]
			d.i++
			switch e {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if d.i+4 > len(d.data) {
					return false
				}
				for _, h := range d.data[d.i : d.i+4] {
					if !isHex(h) {
						return false
					}
				}
				d.i += 4
			default:
				return false
			}
		}
	}
	return false
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
