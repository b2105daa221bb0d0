package apiserver

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/features"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
)

// Large JSON lists are gzip-compressed for clients that accept gzip, as kube-apiserver compresses
// them (same threshold, level and headers), but by a faster DEFLATE encoder than the standard
// library's, which kube-apiserver's response writer uses: at the same level (BestSpeed),
// github.com/klauspost/compress compresses a page of 500 reports 2.5 times as fast and 30%
// smaller, and the client inflates it faster too (docs/benchmarks.md, "Compressed lists: a
// faster encoder"). For a page of 500 reports' metadata, the standard encoder was over 40% of the
// list handler's CPU.

// gzipThreshold is the size over which kube-apiserver compresses a response for a client that
// accepts gzip (responsewriters.defaultGzipThresholdBytes).
const gzipThreshold = 128 * 1024

// acceptsGzip tells whether kube-apiserver would compress req's response (when large enough):
// the client lists gzip in Accept-Encoding and compression is on (responsewriters'
// negotiateContentEncoding, which looks for the bare token).
func acceptsGzip(req *http.Request) bool {
	if !utilfeature.DefaultFeatureGate.Enabled(features.APIResponseCompression) {
		return false
	}
	for _, token := range strings.Split(req.Header.Get("Accept-Encoding"), ",") {
		if strings.TrimSpace(token) == "gzip" {
			return true
		}
	}
	return false
}

// jsonBody is a response body the list handler writes as plain JSON itself (storedjson.List,
// storedjson.MetadataList).
type jsonBody interface {
	// JSONSize is the length of what WriteJSON writes, or -1 when it cannot write it.
	JSONSize() int
	WriteJSON(io.Writer) error
}

// gzipWriters are writers at kube-apiserver's level for responses
// (responsewriters.defaultGzipContentEncodingLevel).
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed) // a valid level cannot fail
	return w
}}

// writeCompressed writes body gzip-compressed, with the headers kube-apiserver's response writer
// sets for a compressed JSON response. Once the status is sent, an error can only end the stream
// early, as the generic writer's does: it is returned for the log.
func writeCompressed(w http.ResponseWriter, body jsonBody) error {
	header := w.Header()
	header.Set("Content-Type", runtime.ContentTypeJSON)
	header.Set("Content-Encoding", "gzip")
	header.Add("Vary", "Accept-Encoding")
	w.WriteHeader(http.StatusOK)
	gz := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(gz)
	gz.Reset(w)
	err := body.WriteJSON(gz)
	if closeErr := gz.Close(); err == nil {
		err = closeErr
	}
	gz.Reset(nil)
	if err != nil {
		return fmt.Errorf("write a compressed list: %w", err)
	}
	return nil
}
