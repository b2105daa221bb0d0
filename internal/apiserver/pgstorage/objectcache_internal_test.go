package pgstorage

import (
	"bytes"
	"fmt"
	"testing"
)

// TestObjectCacheBound keeps more objects than fit: the kept bytes stay within the bound, what
// is found is always the object at the revision asked for, a newer revision replaces an older
// one and never the other way round, objects over the share of one are never kept, an object's
// metadata is kept beside it, and pages read mostly from the database evict nothing.
func TestObjectCacheBound(t *testing.T) {
	const size = 100
	c := NewObjectCache(size * objectCacheMaxShare)
	data := func(key string, rev int64) []byte {
		return bytes.Repeat([]byte(fmt.Sprintf("%s@%d;", key, rev)), size)[:size]
	}
	var rows []row
	for i := range 3 * objectCacheMaxShare {
		key := fmt.Sprintf("/k/%03d", i)
		rows = append(rows, row{key: key, rev: int64(i + 1), data: data(key, int64(i+1))})
	}
	c.add("c", readObject, rows, true)
	if st := c.Stats(); st.Bytes > size*objectCacheMaxShare || st.Bytes < size*objectCacheMaxShare/2 {
		t.Fatalf("keeps %d bytes, bound %d", st.Bytes, size*objectCacheMaxShare)
	}
	look := make([]row, len(rows))
	for i, r := range rows {
		look[i] = row{key: r.key, rev: r.rev}
	}
	missing := c.fill("c", readObject, look)
	if found := len(rows) - len(missing); found != int(c.Stats().Bytes/size) {
		t.Fatalf("found %d, keeps %d bytes", found, c.Stats().Bytes)
	}
	for i, r := range look {
		if r.data != nil && !bytes.Equal(r.data, rows[i].data) {
			t.Fatalf("%s: found %q", r.key, r.data)
		}
	}
	if m := c.fill("other", readObject, []row{{key: rows[0].key, rev: rows[0].rev}}); len(m) != 1 {
		t.Fatal("found another cluster's object")
	}

	// Revisions: newer replaces, older does not.
	k := "/k/x"
	c.add("c", readObject, []row{{key: k, rev: 10, data: data(k, 10)}}, true)
	c.add("c", readObject, []row{{key: k, rev: 5, data: data(k, 5)}}, true)
	if e := c.entries[objectCacheKey{"c", k}]; e.rev != 10 {
		t.Fatalf("kept revision %d, want 10", e.rev)
	}
	c.add("c", readObject, []row{{key: k, rev: 11, data: data(k, 11)}}, true)
	if m := c.fill("c", readObject, []row{{key: k, rev: 10}}); len(m) != 1 {
		t.Fatal("found revision 10 after 11 was kept")
	}
	got := []row{{key: k, rev: 11}}
	if m := c.fill("c", readObject, got); len(m) != 0 || !bytes.Equal(got[0].data, data(k, 11)) {
		t.Fatalf("revision 11: missing %v, found %q", m, got[0].data)
	}

	// Too large for its share.
	big := "/k/big"
	c.add("c", readObject, []row{{key: big, rev: 1, data: make([]byte, size+1)}}, true)
	if _, ok := c.entries[objectCacheKey{"c", big}]; ok {
		t.Fatal("kept an object over its share")
	}
	if st := c.Stats(); st.Bytes > size*objectCacheMaxShare {
		t.Fatalf("keeps %d bytes, bound %d", st.Bytes, size*objectCacheMaxShare)
	}

	// Metadata and the object of one revision are kept side by side, each found only by reads
	// of its own shape, and a newer revision of either drops both.
	c = NewObjectCache(size * objectCacheMaxShare)
	m := "/k/m"
	c.add("c", readMetadata, []row{{key: m, rev: 7, data: []byte("meta@7")}}, true)
	if got := []row{{key: m, rev: 7}}; len(c.fill("c", readObject, got)) != 1 {
		t.Fatal("a whole-object read found metadata")
	}
	c.add("c", readObject, []row{{key: m, rev: 7, data: []byte("object@7")}}, true)
	obj, meta := []row{{key: m, rev: 7}}, []row{{key: m, rev: 7}}
	if len(c.fill("c", readObject, obj)) != 0 || len(c.fill("c", readMetadata, meta)) != 0 ||
		string(obj[0].data) != "object@7" || string(meta[0].data) != "meta@7" {
		t.Fatalf("found %q and %q, want object@7 and meta@7", obj[0].data, meta[0].data)
	}
	if st := c.Stats(); st.Bytes != int64(len("meta@7")+len("object@7")) {
		t.Fatalf("keeps %d bytes for both parts", st.Bytes)
	}
	c.add("c", readMetadata, []row{{key: m, rev: 8, data: []byte("meta@8")}}, true)
	if len(c.fill("c", readObject, []row{{key: m, rev: 7}})) != 1 || len(c.fill("c", readObject, []row{{key: m, rev: 8}})) != 1 {
		t.Fatal("kept revision 7's object after revision 8's metadata")
	}
	if st := c.Stats(); st.Bytes != int64(len("meta@8")) {
		t.Fatalf("keeps %d bytes after revision 8 replaced 7", st.Bytes)
	}

	// Without evicting (pages read mostly from the database): a full cache keeps no new key,
	// but a newer revision of a kept key takes its place, and a kept entry gains a part only
	// where it fits.
	c = NewObjectCache(size * objectCacheMaxShare)
	var full []row
	for i := range objectCacheMaxShare {
		key := fmt.Sprintf("/f/%03d", i)
		full = append(full, row{key: key, rev: 1, data: data(key, 1)})
	}
	c.add("c", readObject, full, false)
	if st := c.Stats(); st.Bytes != size*objectCacheMaxShare {
		t.Fatalf("keeps %d bytes of a page that fits in %d", st.Bytes, size*objectCacheMaxShare)
	}
	c.add("c", readObject, []row{{key: "/f/new", rev: 2, data: data("/f/new", 2)}}, false)
	if _, ok := c.entries[objectCacheKey{"c", "/f/new"}]; ok {
		t.Fatal("a full cache kept a new key without evicting")
	}
	c.add("c", readObject, []row{{key: "/f/000", rev: 3, data: data("/f/000", 3)}}, false)
	if e := c.entries[objectCacheKey{"c", "/f/000"}]; e.rev != 3 {
		t.Fatalf("kept revision %d of a rewritten key, want 3", e.rev)
	}
	c.add("c", readMetadata, []row{{key: "/f/001", rev: 1, data: []byte("meta")}}, false)
	if e := c.entries[objectCacheKey{"c", "/f/001"}]; e.metadata != nil || e.object == nil {
		t.Fatalf("a full cache grew an entry, or dropped its object: %+v", e)
	}
	c.add("c", readObject, []row{{key: "/f/new", rev: 2, data: data("/f/new", 2)}}, true)
	if _, ok := c.entries[objectCacheKey{"c", "/f/new"}]; !ok {
		t.Fatal("evicting, a full cache did not keep a new key")
	}
	if st := c.Stats(); st.Bytes > size*objectCacheMaxShare {
		t.Fatalf("keeps %d bytes, bound %d", st.Bytes, size*objectCacheMaxShare)
	}

	var none *ObjectCache = NewObjectCache(0)
	if none != nil || none.Stats() != (ObjectCacheStats{}) {
		t.Fatal("a cache of 0 bytes is not nil")
	}
}
