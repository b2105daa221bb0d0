package db_test

import (
	"testing"

	"github.com/reports-server/reports-server/internal/db"
)

// TestChangePayload: a Change survives the wire, cluster names with colons included, and
// payloads that are not changes (the LISTEN probe, garbage) are not taken for one.
func TestChangePayload(t *testing.T) {
	for _, c := range []db.Change{
		{Cluster: "default", Revision: 1},
		{Cluster: "prod:eu-1", Revision: 9223372036854775807},
		{Cluster: "", Revision: 0},
	} {
		got, ok := db.ParseChange(c.Payload())
		if !ok || got != c {
			t.Errorf("ParseChange(%q) = %+v, %v; want %+v", c.Payload(), got, ok, c)
		}
	}
	for _, p := range []string{"", "probe:0123abcd", "default", "default:x", "default:"} {
		if c, ok := db.ParseChange(p); ok {
			t.Errorf("ParseChange(%q) = %+v, want no change", p, c)
		}
	}
}
