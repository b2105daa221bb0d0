package apiserver

import (
	"bytes"
	stdgzip "compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"k8s.io/apimachinery/pkg/types"

	"github.com/reports-server/reports-server/internal/benchreport"
)

// BenchmarkGzipEncoders compares, on a page of 500 reports of benchreport's (and on the page of
// their metadata, as a metadata-only list sends it), the gzip encoder kube-apiserver's response
// writer uses (the standard library's) with the list handler's (writeCompressed), both at level 1:
// the server's time to compress a page, the bytes sent (bytes/page) and the client's time to
// inflate them (inflate-ns/page, with the standard library's reader, as client-go's transport).
//
//	go test ./internal/apiserver -run '^$' -bench GzipEncoders
func BenchmarkGzipEncoders(b *testing.B) {
	objects, metadata := benchPages(b, 500)
	encoders := []struct {
		name string
		new  func(io.Writer) (io.WriteCloser, error)
	}{
		{"standard", func(w io.Writer) (io.WriteCloser, error) { return stdgzip.NewWriterLevel(w, stdgzip.BestSpeed) }},
		{"list-handler", func(w io.Writer) (io.WriteCloser, error) { return gzip.NewWriterLevel(w, gzip.BestSpeed) }},
	}
	for _, page := range []struct {
		name  string
		items [][]byte
	}{{"objects", objects}, {"metadata", metadata}} {
		for _, enc := range encoders {
			b.Run(page.name+"/"+enc.name, func(b *testing.B) {
				var out bytes.Buffer
				for b.Loop() {
					out.Reset()
					w, err := enc.new(&out)
					if err != nil {
						b.Fatal(err)
					}
					// Item by item, as the lists write them.
					for _, item := range page.items {
						if _, err := w.Write(item); err != nil {
							b.Fatal(err)
						}
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(out.Len()), "bytes/page")
				b.ReportMetric(inflateTime(b, out.Bytes()), "inflate-ns/page")
			})
		}
	}
}

// benchPages returns n reports as the server stores them (benchreport's, with the metadata the
// server adds on create) and their metadata, each as JSON.
func benchPages(b *testing.B, n int) (objects, metadata [][]byte) {
	for i := range n {
		u := benchreport.New("wgpolicyk8s.io/v1alpha2", fmt.Sprintf("ns-%d", i%10), fmt.Sprintf("report-%d", i))
		u.SetUID(types.UID(fmt.Sprintf("6c1b1a2e-5d3f-4c6a-9e8b-%012d", i)))
		u.SetResourceVersion(fmt.Sprint(1000 + i))
		u.Object["metadata"].(map[string]any)["creationTimestamp"] = "2026-12-05T12:00:00Z"
		u.Object["metadata"].(map[string]any)["managedFields"] = []any{map[string]any{
			"manager": "kyverno", "operation": "Update", "apiVersion": "wgpolicyk8s.io/v1alpha2",
			"time": "2026-12-05T12:00:00Z", "fieldsType": "FieldsV1",
			"fieldsV1": map[string]any{"f:metadata": map[string]any{"f:labels": map[string]any{
				".": map[string]any{}, "f:app.kubernetes.io/managed-by": map[string]any{}, "f:audit.kyverno.io/resource.uid": map[string]any{},
			}}, "f:results": map[string]any{}, "f:scope": map[string]any{}, "f:summary": map[string]any{}},
		}}
		object, err := json.Marshal(u.Object)
		if err != nil {
			b.Fatal(err)
		}
		meta, err := json.Marshal(u.Object["metadata"])
		if err != nil {
			b.Fatal(err)
		}
		objects = append(objects, object)
		metadata = append(metadata, meta)
	}
	return objects, metadata
}

// inflateTime returns the median time the standard library's reader takes to inflate data, in ns.
func inflateTime(b *testing.B, data []byte) float64 {
	r, err := stdgzip.NewReader(bytes.NewReader(data))
	if err != nil {
		b.Fatal(err)
	}
	times := make([]int64, 0, 21)
	for range cap(times) {
		if err := r.Reset(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start).Nanoseconds())
	}
	slices.Sort(times)
	return float64(times[len(times)/2])
}
