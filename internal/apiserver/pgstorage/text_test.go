package pgstorage

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// roundTrip encodes v as encoding/json does, escapes it for jsonb, checks that the escaped form
// has no NUL escape left, and returns what reading it back decodes to.
func roundTrip(t *testing.T, v any) any {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	stored := escapeJSON(data)
	if hasNULEscape(stored) {
		t.Fatalf("escaped JSON still has a NUL escape: %s", stored)
	}
	var out any
	if err := json.Unmarshal(unescapeJSON(stored), &out); err != nil {
		t.Fatalf("decode %s: %v", unescapeJSON(stored), err)
	}
	return out
}

// hasNULEscape reports whether JSON text has a \u0000 escape (not a backslash followed by text).
func hasNULEscape(data []byte) bool {
	for i := 0; i < len(data); i++ {
		if data[i] == '\\' {
			if strings.HasPrefix(string(data[i:]), `\u0000`) {
				return true
			}
			i++
		}
	}
	return false
}

func TestEscapeJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", "a\x00b", "\x00", "\x00\x00", "end\x00",
		"\uFDD0", "\uFDD0N", "\uFDD0\uFDD0", "x\uFDD0\x00y", "N\uFDD0",
		`\u0000`, `\\u0000`, "\\\x00", "\\\\\x00\\", `"\u0000"`, "ü\x00日本",
	} {
		v := map[string]any{"k" + s: []any{s, map[string]any{s: s}}}
		got := roundTrip(t, v)
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(v)
		if string(g) != string(w) {
			t.Errorf("%q: read back %s, want %s", s, g, w)
		}
	}
	// Objects without NUL or the escape character are stored as they are.
	plain := []byte(`{"a":"b\\u0001","c":"日本"}`)
	if got := escapeJSON(plain); &got[0] != &plain[0] {
		t.Errorf("escapeJSON copied an object that needs no escaping")
	}
}

func TestStoredText(t *testing.T) {
	for in, want := range map[string]string{
		"plain":        "plain",
		"a\x00b":       "a\uFDD0Nb",
		"\uFDD0":       "\uFDD0\uFDD0",
		"\xff\xfe":     "\uFFFD\uFFFD",
		"a\xffb\x00":   "a\uFFFDb\uFDD0N",
		"/g/r/ns/name": "/g/r/ns/name",
	} {
		if got := storedText(in); got != want {
			t.Errorf("storedText(%q) = %q, want %q", in, got, want)
		}
	}
	// A selector value is stored text exactly as the same string inside a stored object is.
	s := "x\x00\uFDD0y"
	data, _ := json.Marshal(s)
	if got, want := string(escapeJSON(data)), `"`+storedText(s)+`"`; got != want {
		t.Errorf("object string %s, selector value %s", got, want)
	}
}

// FuzzEscapeJSON checks that any string survives storage: escaped, it has no NUL escape, and read
// back it is the string encoding/json decodes from the original.
func FuzzEscapeJSON(f *testing.F) {
	for _, s := range []string{"", "a\x00b", "\uFDD0N", `\u0000`, "\\\x00", "\xff\x00\uFDD0\uFDD0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		data, err := json.Marshal(map[string]string{s: s})
		if err != nil {
			t.Fatal(err)
		}
		var want map[string]string
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatal(err)
		}
		stored := escapeJSON(data)
		if hasNULEscape(stored) {
			t.Fatalf("NUL escape left in %q", stored)
		}
		if !utf8.Valid(stored) {
			t.Fatalf("escaped JSON is not UTF-8: %q", stored)
		}
		var got map[string]string
		if err := json.Unmarshal(unescapeJSON(stored), &got); err != nil {
			t.Fatalf("decode: %v", err)
		}
		// What PostgreSQL holds (the escaped JSON, parsed) is storedText of each decoded string,
		// which is what selector values are compared with.
		var held map[string]string
		if err := json.Unmarshal(stored, &held); err != nil {
			t.Fatalf("parse stored: %v", err)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("read back %q, want %q", got[k], v)
			}
			if held[storedText(k)] != storedText(v) {
				t.Fatalf("stored %q, storedText %q", held, storedText(v))
			}
		}
	})
}
