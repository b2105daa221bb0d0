package storedjson_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/reports-server/reports-server/internal/apis/storedjson"
)

// TestGzipWriterSplices: a gzip stream of writes of which some are spliced in as their
// DeflateBlock decompresses (with the CRC and size checked) to exactly what was written, in
// every mix of spliced and compressed writes, small and large.
func TestGzipWriterSplices(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	item := func(i int) []byte {
		var b bytes.Buffer
		fmt.Fprintf(&b, `{"metadata":{"name":"r%d","resourceVersion":"%d"},"results":[`, i, 1000+i)
		for j := range 5 + rng.IntN(40) {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"policy":"p%d","message":"%x"}`, rng.IntN(7), rng.Uint64())
		}
		b.WriteString("]}")
		return b.Bytes()
	}
	for _, tc := range []struct {
		name   string
		items  int
		splice func(i int) bool
	}{
		{"all spliced", 50, func(int) bool { return true }},
		{"none spliced", 50, func(int) bool { return false }},
		{"alternating", 51, func(i int) bool { return i%2 == 0 }},
		{"random", 300, func(int) bool { return rng.IntN(3) > 0 }},
		{"empty", 0, func(int) bool { return true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blocks := map[*byte][]byte{}
			var want, out bytes.Buffer
			var writes [][]byte
			writes = append(writes, []byte(`{"kind":"PolicyReportList","items":[`))
			spliced := 0
			for i := range tc.items {
				if i > 0 {
					writes = append(writes, []byte(","))
				}
				it := item(i)
				if tc.splice(i) && len(it) >= 512 {
					blocks[&it[0]] = storedjson.DeflateBlock(it)
					spliced++
				}
				writes = append(writes, it)
			}
			writes = append(writes, []byte("]}\n"))
			handed := 0 // blocks the writer asked for and got, each spliced in
			g := storedjson.NewGzipWriter(&out, func(p []byte) []byte {
				block := blocks[&p[0]]
				if block != nil {
					handed++
				}
				return block
			})
			for _, w := range writes {
				want.Write(w)
				if n, err := g.Write(w); err != nil || n != len(w) {
					t.Fatalf("write: %d, %v", n, err)
				}
			}
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
			if handed != spliced {
				t.Errorf("spliced %d writes, want %d", handed, spliced)
			}
			r, err := gzip.NewReader(&out)
			if err != nil {
				t.Fatal(err)
			}
			r.Multistream(false)
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("decompress: %v", err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("decompressed %d bytes differ from the %d written", len(got), want.Len())
			}
			if rest, _ := io.ReadAll(&out); len(rest) != 0 {
				t.Errorf("%d bytes after the gzip member", len(rest))
			}
		})
	}
}
