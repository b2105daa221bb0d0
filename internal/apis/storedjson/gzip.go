package storedjson

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"hash/crc32"
	"io"
	"sync"
)

// A list of objects the server keeps in memory is the same bytes list after list, yet a gzip
// response compresses them again every time: for a label list of 30 reports (300 KB) about
// half of the server's CPU. DEFLATE allows splicing: a block stream that starts with no
// back-references and ends byte-aligned after a sync flush can be copied into another stream at
// any byte boundary where that stream was flushed. So an object's block is made once
// (DeflateBlock), kept beside the object, and a gzip response (GzipWriter) copies it in instead of
// compressing the object again; a spliced object loses only the matches it could have had with
// the bytes before it.

// gzipLevel is kube-apiserver's level for responses (responsewriters.defaultGzipContentEncodingLevel).
const gzipLevel = flate.BestSpeed

var deflaters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, gzipLevel) // a valid level cannot fail
	return w
}}

// DeflateBlock returns data as raw DEFLATE blocks that start afresh and end with a sync flush
// (no final block): what GzipWriter splices.
func DeflateBlock(data []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(data)/4 + 64)
	w := deflaters.Get().(*flate.Writer)
	defer deflaters.Put(w)
	w.Reset(&buf)
	// Writes to a bytes.Buffer do not fail.
	_, _ = w.Write(data)
	_ = w.Flush()
	return buf.Bytes()
}

// GzipWriter writes one gzip member (RFC 1952) of everything written to it, to w. Writes whose
// bytes blocks knows (blocks returns their DeflateBlock, or nil) are spliced in as those blocks
// instead of compressed; the others are compressed as kube-apiserver's response writer does.
// Close writes the final block and the trailer.
type GzipWriter struct {
	w      io.Writer
	blocks func([]byte) []byte
	fw     *flate.Writer
	crc    uint32
	size   uint32
	// pending says fw holds compressed bytes not flushed yet.
	pending bool
	err     error
}

// gzipHeader is a gzip member header: deflate, no flags, no time, fastest compression, OS unknown.
var gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255}

// NewGzipWriter starts a gzip member on w.
func NewGzipWriter(w io.Writer, blocks func([]byte) []byte) *GzipWriter {
	fw := deflaters.Get().(*flate.Writer)
	fw.Reset(w)
	g := &GzipWriter{w: w, blocks: blocks, fw: fw}
	_, g.err = w.Write(gzipHeader)
	return g
}

// splicedMin is the smallest write looked up in blocks: the punctuation between items is not.
const splicedMin = 512

func (g *GzipWriter) Write(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	g.crc = crc32.Update(g.crc, crc32.IEEETable, p)
	g.size += uint32(len(p)) // ISIZE is the size modulo 2^32
	var block []byte
	if len(p) >= splicedMin && g.blocks != nil {
		block = g.blocks(p)
	}
	if block == nil {
		g.pending = true
		if _, g.err = g.fw.Write(p); g.err != nil {
			return 0, g.err
		}
		return len(p), nil
	}
	// What the compressor holds goes first, byte-aligned; the block then follows, and the
	// compressor starts afresh after it, so nothing it writes refers back across the block.
	if g.pending {
		if g.err = g.fw.Flush(); g.err != nil {
			return 0, g.err
		}
		g.pending = false
	}
	if _, g.err = g.w.Write(block); g.err != nil {
		return 0, g.err
	}
	g.fw.Reset(g.w)
	return len(p), nil
}

// Close ends the member: the final block, the CRC-32 and the size of what was written.
func (g *GzipWriter) Close() error {
	defer func() {
		if g.fw != nil {
			g.fw.Reset(nil)
			deflaters.Put(g.fw)
			g.fw = nil
		}
	}()
	if g.err != nil {
		return g.err
	}
	if g.err = g.fw.Close(); g.err != nil {
		return g.err
	}
	var trailer [8]byte
	binary.LittleEndian.PutUint32(trailer[:4], g.crc)
	binary.LittleEndian.PutUint32(trailer[4:], g.size)
	_, g.err = g.w.Write(trailer[:])
	return g.err
}
