package integration

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

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
	cpu := func() (server, pg, client time.Duration) {
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
