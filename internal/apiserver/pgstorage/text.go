package pgstorage

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// PostgreSQL's text and jsonb cannot hold U+0000, and refuse text that is not valid UTF-8. The
// API allows both: a report may carry a NUL in any string (the CRD path stores it), and a URL or
// a field selector may carry any bytes. So what reaches PostgreSQL is escaped here, in one place:
//
//   - In stored objects every NUL becomes escapeRune followed by 'N', and every escapeRune
//     itself becomes two of them; reads reverse it. escapeRune is a Unicode noncharacter, which
//     Unicode reserves for a program's internal use, so real data almost never carries it and
//     objects without either character pass through untouched (a byte search each way).
//   - Keys and selector values get the same escaping, so a field selector for a value with a NUL
//     matches the object that has it, plus each invalid UTF-8 byte replaced by U+FFFD, as
//     encoding/json does when it decodes a request: a value that cannot be stored matches only what was
//     stored for it, and a key that cannot exist (names and namespaces are DNS labels) matches
//     nothing: 404, an empty list, a watch without events, never a database error.
//
// SQL readers of the reporting views see a NUL as U+FDD0 'N' (docs/sql.md).
const escapeRune = '\uFDD0'

var (
	escapeBytes   = []byte(string(escapeRune))
	nulJSONEscape = []byte(`\u0000`)
	// escapedNUL and escapedEscape are what a NUL and escapeRune become.
	escapedNUL    = []byte(string(escapeRune) + "N")
	escapedEscape = []byte(string(escapeRune) + string(escapeRune))
)

// escapeJSON makes JSON encoded by encoding/json storable as jsonb. It returns data itself when
// there is nothing to escape.
func escapeJSON(data []byte) []byte {
	if !bytes.Contains(data, nulJSONEscape) && !bytes.Contains(data, escapeBytes) {
		return data
	}
	out := make([]byte, 0, len(data)+16)
	for i := 0; i < len(data); {
		switch {
		case data[i] == '\\':
			// An escape sequence: a NUL, or two bytes copied as they are (so the backslash of
			// "\\u0000", a backslash followed by the text u0000, is never mistaken for one).
			if bytes.HasPrefix(data[i:], nulJSONEscape) {
				out = append(out, escapedNUL...)
				i += len(nulJSONEscape)
				continue
			}
			end := min(i+2, len(data))
			out = append(out, data[i:end]...)
			i = end
		case bytes.HasPrefix(data[i:], escapeBytes):
			out = append(out, escapedEscape...)
			i += len(escapeBytes)
		default:
			out = append(out, data[i])
			i++
		}
	}
	return out
}

// unescapeJSON reverses escapeJSON on JSON read from PostgreSQL.
func unescapeJSON(data []byte) []byte {
	if !bytes.Contains(data, escapeBytes) {
		return data
	}
	out := make([]byte, 0, len(data))
	for i := 0; i < len(data); {
		if !bytes.HasPrefix(data[i:], escapeBytes) {
			out = append(out, data[i])
			i++
			continue
		}
		next := data[i+len(escapeBytes):]
		switch {
		case len(next) > 0 && next[0] == 'N':
			out = append(out, nulJSONEscape...)
			i += len(escapedNUL)
		case bytes.HasPrefix(next, escapeBytes):
			out = append(out, escapeBytes...)
			i += len(escapedEscape)
		default: // not written by escapeJSON: keep it
			out = append(out, escapeBytes...)
			i += len(escapeBytes)
		}
	}
	return out
}

// storedText is s as stored objects carry it (see above), safe to send to PostgreSQL.
func storedText(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) && !strings.ContainsRune(s, escapeRune) {
		return s
	}
	var b strings.Builder
	for _, r := range s { // each invalid byte is a utf8.RuneError (U+FFFD), as in encoding/json
		switch r {
		case 0:
			b.Write(escapedNUL)
		case escapeRune:
			b.Write(escapedEscape)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
