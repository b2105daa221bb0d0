package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/reports-server/reports-server/internal/benchreport"
	"github.com/reports-server/reports-server/internal/crdmigrate"
	"github.com/reports-server/reports-server/internal/db/dbtest"
	"github.com/reports-server/reports-server/internal/generated/openapi"
	"github.com/reports-server/reports-server/internal/procstat"
	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// benchGroup serves PolicyReport from a CRD next to reports-server's wgpolicyk8s.io, so both
// paths run in one cluster at once and the comparison shares the machine's state.
const benchGroup = "bench.reports-server.io"

// benchWriters is the number of concurrent clients: a report producer (Kyverno's reports
// controller, a Trivy adapter) writes with several workers at once.
const benchWriters = 16

// BenchmarkWrites measures PolicyReport creates per second through kube-apiserver, with
// benchWriters concurrent clients and ~10 KB reports of 20 results, two ways in one cluster:
//
//   - CRD: a CustomResourceDefinition whose schema is the PolicyReport OpenAPI schema (generated
//     from this repository's types, so kube-apiserver validates and prunes as with the upstream
//     CRD), stored in etcd;
//   - Aggregated: reports-server behind its APIService, stored in PostgreSQL;
//   - Direct: the same, straight to one reports-server replica (what the proxy hop costs).
//
// Caveats that favour etcd: the harness runs etcd with --unsafe-no-fsync (PostgreSQL flushes
// every commit) and everything shares one machine. Run:
//
//	cd test/e2e && go test -run '^$' -bench Writes -benchtime 3000x -timeout 60m
func BenchmarkWrites(b *testing.B) {
	c := startBenchCluster(b)
	ctx := context.Background()
	dyn, err := dynamic.NewForConfig(c.AdminConfig)
	if err != nil {
		b.Fatal(err)
	}
	crd := createBenchCRD(ctx, b, dyn)
	core, err := kubernetes.NewForConfig(c.AdminConfig)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatal(err)
	}

	postmaster, err := benchreport.Postmaster(ctx, c.DatabaseURL)
	if err != nil {
		b.Fatal(err)
	}
	// Straight to one replica, as the admin: what the proxy hop costs.
	direct, err := dynamic.NewForConfig(c.ReplicaConfig(c.ReportsServers[0], nil))
	if err != nil {
		b.Fatal(err)
	}
	aggregated := schema.GroupVersionResource{Group: "wgpolicyk8s.io", Version: "v1alpha2", Resource: "policyreports"}
	for _, path := range []struct {
		name   string
		client dynamic.Interface
		gvr    schema.GroupVersionResource
	}{{"CRD", dyn, crd}, {"Aggregated", dyn, aggregated}, {"Direct", direct, aggregated}} {
		b.Run(path.name, func(b *testing.B) {
			before := cpuTimes(c, postmaster)
			benchCreates(b, path.client.Resource(path.gvr).Namespace("bench"), path.gvr.GroupVersion().String())
			after := cpuTimes(c, postmaster)
			// CPU per write of each component: independent of how busy the machine is, and what
			// a cluster pays where the components run on machines of their own.
			for name, t := range after {
				b.ReportMetric(float64((t-before[name]).Microseconds())/1000/float64(b.N), name+"-cpu-ms/write")
			}
		})
	}
}

var benchRun atomic.Int64

// benchCreates creates b.N reports with benchWriters clients and reports writes/s.
func benchCreates(b *testing.B, client dynamic.ResourceInterface, apiVersion string) {
	ctx := context.Background()
	run := benchRun.Add(1)
	// One warm-up write: connections, discovery and caches are not what is measured.
	if _, err := client.Create(ctx, benchreport.New(apiVersion, "bench", fmt.Sprintf("warm-%d", run)), metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range benchWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) || failed.Load() != nil {
					return
				}
				if _, err := client.Create(ctx, benchreport.New(apiVersion, "bench", fmt.Sprintf("r%d-%d", run, i)), metav1.CreateOptions{}); err != nil {
					failed.Store(&err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "writes/s")
}

// cpuTimes is the CPU time used so far by kube-apiserver, etcd, the reports-server replicas
// together and reports-server's PostgreSQL server (the processes of postmaster), from /proc (0
// for a process that cannot be read).
func cpuTimes(c *cluster.Cluster, postmaster int) map[string]time.Duration {
	cpu := func(p *cluster.Process) time.Duration {
		t, _ := p.CPUTime()
		return t
	}
	pg, _ := procstat.TreeCPUTime(postmaster)
	out := map[string]time.Duration{
		"kube-apiserver": cpu(c.APIServer),
		"etcd":           cpu(c.Etcd),
		"postgres":       pg,
	}
	for _, r := range c.ReportsServers {
		out["reports-server"] += cpu(r.Process)
	}
	return out
}

// startBenchCluster is startCluster for a benchmark: the cluster lives until b ends.
func startBenchCluster(b *testing.B) *cluster.Cluster {
	b.Helper()
	moduleDir, err := os.Getwd()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	ctx := context.Background()
	databaseURL := dbtest.URL(b)
	c, err := cluster.Start(ctx, cluster.Options{Dir: dir, Binaries: network.Binaries, RepoRoot: filepath.Join(moduleDir, "..", ".."), DatabaseURL: databaseURL, Logf: b.Logf})
	if err != nil {
		b.Fatalf("start cluster: %v", err)
	}
	b.Cleanup(c.Stop)
	return c
}

// createBenchCRD installs PolicyReport in benchGroup with the structural schema of this
// repository's PolicyReport type and waits until kube-apiserver serves it.
func createBenchCRD(ctx context.Context, b *testing.B, dyn dynamic.Interface) schema.GroupVersionResource {
	b.Helper()
	s, err := crdSchema("io.wgpolicyk8s.v1alpha2.PolicyReport")
	if err != nil {
		b.Fatal(err)
	}
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": "policyreports." + benchGroup},
		"spec": map[string]any{
			"group": benchGroup,
			"scope": "Namespaced",
			"names": map[string]any{"plural": "policyreports", "singular": "policyreport", "kind": "PolicyReport", "listKind": "PolicyReportList"},
			"versions": []any{map[string]any{
				"name": "v1alpha2", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": s},
			}},
		},
	}}
	if _, err := dyn.Resource(crdmigrate.CRDResource).Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatalf("create CRD: %v", err)
	}
	gvr := schema.GroupVersionResource{Group: benchGroup, Version: "v1alpha2", Resource: "policyreports"}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := dyn.Resource(gvr).Namespace("default").List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			return gvr
		}
		if time.Now().After(deadline) {
			b.Fatalf("the CRD is not served after a minute: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// crdSchema inlines the OpenAPI definition name (and everything it refers to) into one
// structural schema, as a CRD needs it: metadata is left to kube-apiserver, defaults dropped.
func crdSchema(name string) (map[string]any, error) {
	const prefix = "#/definitions/"
	defs := openapi.GetOpenAPIDefinitions(func(path string) spec.Ref { return spec.MustCreateRef(prefix + path) })
	var inline func(s spec.Schema, depth int) (spec.Schema, error)
	inline = func(s spec.Schema, depth int) (spec.Schema, error) {
		if depth > 20 {
			return s, fmt.Errorf("schema of %s nests too deep (recursive?)", name)
		}
		if len(s.AllOf) == 1 && len(s.Properties) == 0 && s.Ref.String() == "" {
			s = s.AllOf[0]
		}
		if ref := s.Ref.String(); ref != "" {
			def, ok := defs[strings.TrimPrefix(ref, prefix)]
			if !ok {
				return s, fmt.Errorf("%s refers to unknown definition %s", name, ref)
			}
			s = def.Schema
		}
		s.Default = nil
		s.Description = ""
		props := map[string]spec.Schema{}
		for k, p := range s.Properties {
			in, err := inline(p, depth+1)
			if err != nil {
				return s, err
			}
			props[k] = in
		}
		if len(props) > 0 {
			s.Properties = props
		}
		if s.Items != nil && s.Items.Schema != nil {
			in, err := inline(*s.Items.Schema, depth+1)
			if err != nil {
				return s, err
			}
			s.Items = &spec.SchemaOrArray{Schema: &in}
		}
		if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
			in, err := inline(*s.AdditionalProperties.Schema, depth+1)
			if err != nil {
				return s, err
			}
			s.AdditionalProperties = &spec.SchemaOrBool{Allows: true, Schema: &in}
		}
		return s, nil
	}
	def, ok := defs[name]
	if !ok {
		return nil, fmt.Errorf("no OpenAPI definition %s", name)
	}
	top := def.Schema
	delete(top.Properties, "metadata")
	s, err := inline(top, 0)
	if err != nil {
		return nil, err
	}
	s.Properties["metadata"] = spec.Schema{SchemaProps: spec.SchemaProps{Type: spec.StringOrArray{"object"}}}
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	return out, json.Unmarshal(raw, &out)
}
