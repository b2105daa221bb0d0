// Package jsonmeta finds the apiVersion and kind of a JSON request body as the API server's JSON
// serializer does (k8s.io/apimachinery/pkg/runtime/serializer/json.DefaultMetaFactory), in one
// pass of a byte loop.
//
// The serializer finds them before decoding a body, with encoding/json: a validation pass over the
// whole body, then a decoding pass that skips every value but two. For a 12 KB report that was
// about 5% of the server's CPU per create (docs/benchmarks.md). Factory validates the body and
// reads the two fields in one pass, and hands every body it is not certain about to the default
// factory, so the outcome (kind, version, error and its message) is always the default's: see
// scan for what it leaves to it.
package jsonmeta

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
)

// Factory is a json.MetaFactory with the default factory's results.
type Factory struct{}

var _ json.MetaFactory = Factory{}

// Interpret implements json.MetaFactory.
func (Factory) Interpret(data []byte) (*schema.GroupVersionKind, error) {
	apiVersion, kind, ok := scan(data)
	if !ok {
		return json.DefaultMetaFactory.Interpret(data)
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return nil, err
	}
	return &schema.GroupVersionKind{Group: gv.Group, Version: gv.Version, Kind: kind}, nil
}

// maxDepth bounds the nesting scan follows; deeper bodies go to the default factory (which
// allows 10,000 levels). Reports nest a handful.
const maxDepth = 100

// scan validates data as one JSON object and returns its top-level "apiVersion" and "kind"
// strings (empty when absent; the last of duplicates, as encoding/json keeps). ok is false for
// whatever encoding/json might read differently, which the default factory then answers: data
// that is not valid JSON or not an object, either field with a value that is not a string of
// printable ASCII without escapes, a top-level key with an escape or a non-ASCII byte, a key that
// matches either field only case-insensitively (encoding/json matches those too), nesting deeper
// than maxDepth.
func scan(data []byte) (apiVersion, kind string, ok bool) {
	s := scanner{data: data}
	s.space()
	if !s.byte('{') {
		return "", "", false
	}
	s.space()
	if !s.byte('}') {
		for {
			s.space()
			start := s.i
			if !s.string() {
				return "", "", false
			}
			key := data[start+1 : s.i-1]
			s.space()
			if !s.byte(':') {
				return "", "", false
			}
			s.space()
			switch field := fieldOf(key); field {
			case unsure:
				return "", "", false
			case apiVersionField, kindField:
				v, good := s.plainString()
				if !good {
					return "", "", false
				}
				if field == apiVersionField {
					apiVersion = v
				} else {
					kind = v
				}
			default:
				if !s.value(1) {
					return "", "", false
				}
			}
			s.space()
			if s.byte('}') {
				break
			}
			if !s.byte(',') {
				return "", "", false
			}
		}
	}
	s.space()
	return apiVersion, kind, s.i == len(data)
}

type field int

const (
	otherField field = iota
	apiVersionField
	kindField
	unsure
)

// fieldOf says which field a top-level key (its bytes between the quotes) names.
func fieldOf(key []byte) field {
	for _, c := range key {
		if c == '\\' || c >= 0x80 {
			return unsure
		}
	}
	switch {
	case string(key) == "apiVersion":
		return apiVersionField
	case string(key) == "kind":
		return kindField
	case equalFoldASCII(key, "apiversion"), equalFoldASCII(key, "kind"):
		return unsure
	}
	return otherField
}

// equalFoldASCII reports whether the ASCII key equals the lower-case lower under ASCII case
// folding.
func equalFoldASCII(key []byte, lower string) bool {
	if len(key) != len(lower) {
		return false
	}
	for i, c := range key {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

type scanner struct {
	data []byte
	i    int
}

func (s *scanner) space() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// byte consumes c if it is next.
func (s *scanner) byte(c byte) bool {
	if s.i < len(s.data) && s.data[s.i] == c {
		s.i++
		return true
	}
	return false
}

// value consumes one JSON value at nesting depth (the enclosing containers).
func (s *scanner) value(depth int) bool {
	if s.i >= len(s.data) {
		return false
	}
	switch c := s.data[s.i]; {
	case c == '"':
		return s.string()
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == '-' || ('0' <= c && c <= '9'):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return false
}

func (s *scanner) object(depth int) bool {
	if depth > maxDepth {
		return false
	}
	s.i++ // '{'
	s.space()
	if s.byte('}') {
		return true
	}
	for {
		s.space()
		if !s.string() {
			return false
		}
		s.space()
		if !s.byte(':') {
			return false
		}
		s.space()
		if !s.value(depth) {
			return false
		}
		s.space()
		if s.byte('}') {
			return true
		}
		if !s.byte(',') {
			return false
		}
	}
}

func (s *scanner) array(depth int) bool {
	if depth > maxDepth {
		return false
	}
	s.i++ // '['
	s.space()
	if s.byte(']') {
		return true
	}
	for {
		s.space()
		if !s.value(depth) {
			return false
		}
		s.space()
		if s.byte(']') {
			return true
		}
		if !s.byte(',') {
			return false
		}
	}
}

// string consumes a JSON string: no control characters, valid escapes. Other bytes, valid UTF-8
// or not, are what encoding/json accepts too.
func (s *scanner) string() bool {
	if !s.byte('"') {
		return false
	}
	data, i := s.data, s.i
	for i < len(data) {
		c := data[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		switch c {
		case '"':
			s.i = i + 1
			return true
		case '\\':
			if i+1 >= len(data) {
				return false
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) {
					return false
				}
				for _, h := range data[i+2 : i+6] {
					if !isHex(h) {
						return false
					}
				}
				i += 6
			default:
				return false
			}
		default: // a control character
			return false
		}
	}
	return false
}

// plainString consumes a string of printable ASCII without escapes and returns it; anything else
// is not ok (encoding/json would unescape it, or replace invalid UTF-8, or refuse a non-string).
func (s *scanner) plainString() (string, bool) {
	if !s.byte('"') {
		return "", false
	}
	start := s.i
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '"':
			s.i++
			return string(s.data[start : s.i-1]), true
		case c < 0x20, c == '\\', c >= 0x80:
			return "", false
		}
		s.i++
	}
	return "", false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number consumes a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	s.byte('-')
	switch {
	case s.byte('0'):
	case s.i < len(s.data) && '1' <= s.data[s.i] && s.data[s.i] <= '9':
		s.digits()
	default:
		return false
	}
	if s.byte('.') {
		if !s.digits() {
			return false
		}
	}
	if s.byte('e') || s.byte('E') {
		if !s.byte('+') {
			s.byte('-')
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits consumes one or more digits.
func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.data) && isDigit(s.data[s.i]) {
		s.i++
	}
	return s.i > start
}

func (s *scanner) literal(word string) bool {
	if len(s.data)-s.i < len(word) || string(s.data[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}
