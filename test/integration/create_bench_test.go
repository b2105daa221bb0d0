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
// create, in ms: the server's CPU (server-ms), PostgreSQL's during the creates (pg-ms: every
// postgres process on the machine, so run it where no other PostgreSQL is busy) and the
// projection's after them (projection-pg-ms), and the client's (client-ms: this process, the
// writers' encoding, TLS and decoding).
//
//	go test ./test/integration -run XXX -bench BenchmarkCreateCPU -benchtime 3x
func BenchmarkCreateCPU(b *testing.B) {
	counts, err := memEnvInts("CREATE_BENCH_REPORTS", []int{1500})
	if err != nil {
		b.Fatal(err)
	}
	n := counts[0]
	url := dbtest.URL(b)
	p := memStart(b, memBuildServer(b), url)
	defer p.stop(b)
	ctx := context.Background()
	gv := wgpolicyv1alpha2.SchemeGroupVersion
	res := p.dynamic.Resource(gv.WithResource("policyreports")).Namespace("default")
	cpu := func() (server, pg, client time.Duration) { return cpuSplit(b, p) }
	var created int
	var elapsed, serverCPU, pgCPU, projectionCPU, clientCPU time.Duration
	for b.Loop() {
		s0, pg0, c0 := cpu()
		start := time.Now()
		first := created
		createConcurrently(b, 16, n, func(i int) error {
			_, err := res.Create(ctx, benchreport.New(gv.String(), "default", fmt.Sprintf("r%d", first+i)), metav1.CreateOptions{})
			return err
		})
		elapsed += time.Since(start)
		s1, pg1, c1 := cpu()
		created += n
		if err := benchreport.WaitProjected(ctx, url, created*benchreport.Results, 5*time.Minute); err != nil {
			b.Fatal(err)
		}
		_, pg2, _ := cpu()
		serverCPU, pgCPU, projectionCPU, clientCPU = serverCPU+s1-s0, pgCPU+pg1-pg0, projectionCPU+pg2-pg1, clientCPU+c1-c0
	}
	perCreate := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(created) }
	b.ReportMetric(float64(created)/elapsed.Seconds(), "creates/s")
	b.ReportMetric(perCreate(serverCPU), "server-ms")
	b.ReportMetric(perCreate(pgCPU), "pg-ms")
	b.ReportMetric(perCreate(projectionCPU), "projection-pg-ms")
	b.ReportMetric(perCreate(clientCPU), "client-ms")
}

// cpuSplit is the CPU time used so far by the server process p, by every postgres process on the
// machine, and by this process (the client).
func cpuSplit(b *testing.B, p *memProcess) (server, pg, client time.Duration) {
	server, err := procstat.CPUTime(p.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	client, err = procstat.CPUTime(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	return server, procstat.CPUTimeOf("postgres"), client
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
	counts, err := memEnvInts("CREATE_BENCH_REPORTS", []int{1500})
	if err != nil {
		b.Fatal(err)
	}
	n := counts[0]
	url := dbtest.URL(b)
	p := memStart(b, memBuildServer(b), url)
	defer p.stop(b)
	ctx := context.Background()
	gv := wgpolicyv1alpha2.SchemeGroupVersion
	res := p.dynamic.Resource(gv.WithResource("policyreports")).Namespace("default")
	createConcurrently(b, 16, n, func(i int) error {
		_, err := res.Create(ctx, benchreport.New(gv.String(), "default", fmt.Sprintf("r%d", i)), metav1.CreateOptions{})
		return err
	})
	if err := benchreport.WaitProjected(ctx, url, n*benchreport.Results, 5*time.Minute); err != nil {
		b.Fatal(err)
	}
	var rewritten, round int
	var elapsed, serverCPU, pgCPU, projectionCPU, clientCPU time.Duration
	for b.Loop() {
		round++
		s0, pg0, c0 := cpuSplit(b, p)
		start := time.Now()
		createConcurrently(b, 16, n, func(i int) error {
			for {
				u, err := res.Get(ctx, fmt.Sprintf("r%d", i), metav1.GetOptions{})
				if err != nil {
					return err
				}
				labels := u.GetLabels()
				if labels == nil {
					labels = map[string]string{}
				}
				labels["bench/round"] = strconv.Itoa(round)
				u.SetLabels(labels)
				if _, err := res.Update(ctx, u, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
					return err
				}
			}
		})
		elapsed += time.Since(start)
		s1, pg1, c1 := cpuSplit(b, p)
		rewritten += n
		if err := benchreport.WaitCaughtUp(ctx, url, 5*time.Minute); err != nil {
			b.Fatal(err)
		}
		_, pg2, _ := cpuSplit(b, p)
		serverCPU, pgCPU, projectionCPU, clientCPU = serverCPU+s1-s0, pgCPU+pg1-pg0, projectionCPU+pg2-pg1, clientCPU+c1-c0
	}
	perRewrite := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(rewritten) }
	b.ReportMetric(float64(rewritten)/elapsed.Seconds(), "rewrites/s")
	b.ReportMetric(perRewrite(serverCPU), "server-ms")
	b.ReportMetric(perRewrite(pgCPU), "pg-ms")
	b.ReportMetric(perRewrite(projectionCPU), "projection-pg-ms")
	b.ReportMetric(perRewrite(clientCPU), "client-ms")
}
