package integration

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	wgpolicyv1alpha2 "github.com/reports-server/reports-server/internal/apis/wgpolicyk8s/v1alpha2"
	"github.com/reports-server/reports-server/internal/benchreport"
	"github.com/reports-server/reports-server/internal/db/dbtest"
	"github.com/reports-server/reports-server/internal/procstat"
)

// BenchmarkCreateCPU: where the CPU of a create goes, server, PostgreSQL and client apart, with
// the server as its own OS process (`reports-server serve --standalone`, built from
// ./cmd/reports-server or MEMORY_BENCH_SERVER_BIN) on a database of the test's PostgreSQL. Each
// iteration creates CREATE_BENCH_REPORTS (default 1,500, the direct half of make bench-compare)
// PolicyReports (benchreport.New: 20 results, ~10 KB) with 16 client-go writers, as
// bench-compare does, and waits until the analytics projection has them too. Reported per
// create, in ms: the server's CPU (server-ms), PostgreSQL's during the creates (pg-ms: the
// processes of the server that holds the benchmark's database) and the
// projection's after them (projection-pg-ms), and the client's (client-ms: this process, the
// writers' encoding, TLS and decoding).
//
//	go test ./test/integration -run XXX -bench BenchmarkCreateCPU -benchtime 3x
func BenchmarkCreateCPU(b *testing.B) {
	w := newWriteCPUBench(b)
	defer w.p.stop(b)
	for b.Loop() {
		first := w.ops
		w.measure(w.create(first), func() error {
			return benchreport.WaitProjected(w.ctx, w.url, (first+w.n)*benchreport.Results, 5*time.Minute)
		})
	}
	w.report("creates/s")
}

// BenchmarkUpdateCPU: where the CPU of a report's rewrite goes, as BenchmarkCreateCPU splits a
// create's. Report producers rewrite each report on every scan (Kyverno: a GET, then an update
// of the whole report), so in a running cluster this is the commonest write. Each iteration
// rewrites every one of CREATE_BENCH_REPORTS reports (default 1,500, created beforehand, not
// measured) with 16 client-go writers, each a GET and then an update of a label, retried on a
// conflict, as make bench-compare's "get + update" does, and waits until the analytics
// projection has them. Reported per rewrite (GET and update), in ms: server-ms, pg-ms,
// projection-pg-ms and client-ms as in BenchmarkCreateCPU.
//
//	go test ./test/integration -run XXX -bench BenchmarkUpdateCPU -benchtime 3x
func BenchmarkUpdateCPU(b *testing.B) {
	w := newWriteCPUBench(b)
	defer w.p.stop(b)
	createConcurrently(b, 16, w.n, w.create(0))
	if err := benchreport.WaitProjected(w.ctx, w.url, w.n*benchreport.Results, 5*time.Minute); err != nil {
		b.Fatal(err)
	}
	round := 0
	for b.Loop() {
		round++
		w.measure(w.rewrite(strconv.Itoa(round)), func() error { return benchreport.WaitCaughtUp(w.ctx, w.url, 5*time.Minute) })
	}
	w.report("rewrites/s")
}

// writeCPUBench is what BenchmarkCreateCPU and BenchmarkUpdateCPU share: the server as its own
// process, the policy reports of its default namespace, and the CPU their writes cost.
type writeCPUBench struct {
	b   *testing.B
	ctx context.Context
	n   int // writes per iteration (CREATE_BENCH_REPORTS)
	url string
	p   *memProcess
	res dynamic.ResourceInterface
	// postmaster is the PostgreSQL server of the database: its processes are pg-ms.
	postmaster int
	// ops is the writes measured so far; the rest are their totals.
	ops                                     int
	elapsed, server, pg, projection, client time.Duration
}

func newWriteCPUBench(b *testing.B) *writeCPUBench {
	counts, err := memEnvInts("CREATE_BENCH_REPORTS", []int{1500})
	if err != nil {
		b.Fatal(err)
	}
	url := dbtest.URL(b)
	p := memStart(b, memBuildServer(b), url)
	res := p.dynamic.Resource(wgpolicyv1alpha2.SchemeGroupVersion.WithResource("policyreports")).Namespace("default")
	ctx := context.Background()
	postmaster, err := benchreport.Postmaster(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	return &writeCPUBench{b: b, ctx: ctx, n: counts[0], url: url, p: p, res: res, postmaster: postmaster}
}

// create is the write of report r<first+i>.
func (w *writeCPUBench) create(first int) func(i int) error {
	return func(i int) error {
		r := benchreport.New(wgpolicyv1alpha2.SchemeGroupVersion.String(), "default", fmt.Sprintf("r%d", first+i))
		_, err := w.res.Create(w.ctx, r, metav1.CreateOptions{})
		return err
	}
}

// rewrite is the rewrite of report r<i>: a GET, then an update setting a label to value, again
// after a conflict.
func (w *writeCPUBench) rewrite(value string) func(i int) error {
	return func(i int) error {
		for {
			u, err := w.res.Get(w.ctx, fmt.Sprintf("r%d", i), metav1.GetOptions{})
			if err != nil {
				return err
			}
			labels := u.GetLabels()
			if labels == nil {
				labels = map[string]string{}
			}
			labels["bench/round"] = value
			u.SetLabels(labels)
			if _, err := w.res.Update(w.ctx, u, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
				return err
			}
		}
	}
}

// measure makes n writes with 16 writers, waits until the projection has them (caughtUp), and
// adds what they cost to the totals.
func (w *writeCPUBench) measure(write func(i int) error, caughtUp func() error) {
	s0, pg0, c0 := w.cpu()
	start := time.Now()
	createConcurrently(w.b, 16, w.n, write)
	w.elapsed += time.Since(start)
	s1, pg1, c1 := w.cpu()
	w.ops += w.n
	if err := caughtUp(); err != nil {
		w.b.Fatal(err)
	}
	_, pg2, _ := w.cpu()
	w.server, w.pg, w.projection, w.client = w.server+s1-s0, w.pg+pg1-pg0, w.projection+pg2-pg1, w.client+c1-c0
}

// cpu is the CPU time used so far by the server process, by the database's PostgreSQL server,
// and by this process (the client).
func (w *writeCPUBench) cpu() (server, pg, client time.Duration) {
	server, err := procstat.CPUTime(w.p.cmd.Process.Pid)
	if err != nil {
		w.b.Fatal(err)
	}
	client, err = procstat.CPUTime(os.Getpid())
	if err != nil {
		w.b.Fatal(err)
	}
	pg, err = procstat.TreeCPUTime(w.postmaster)
	if err != nil {
		w.b.Fatalf("the database's PostgreSQL server: %v", err)
	}
	return server, pg, client
}

// report reports the writes per second (as rate) and the CPU per write.
func (w *writeCPUBench) report(rate string) {
	per := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(w.ops) }
	w.b.ReportMetric(float64(w.ops)/w.elapsed.Seconds(), rate)
	w.b.ReportMetric(per(w.server), "server-ms")
	w.b.ReportMetric(per(w.pg), "pg-ms")
	w.b.ReportMetric(per(w.projection), "projection-pg-ms")
	w.b.ReportMetric(per(w.client), "client-ms")
}
