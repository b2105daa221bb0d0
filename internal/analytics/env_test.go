package analytics_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apiserver/pkg/storage"

	"github.com/reports-server/reports-server/internal/analytics"
	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/apiserver"
	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// repoRoot is the repository root, relative to this package's directory (where tests run).
const repoRoot = "../.."

// samplesDir holds reports from real producers, beside the repository (../shared/testdata).
var samplesDir = filepath.Join(repoRoot, "..", "shared", "testdata")

// env is a fresh database with one pgstorage.Store per cluster and kind: objects are written
// through the storage write path the API server uses (group-committed writer, change log,
// revisions, NOTIFY).
type env struct {
	t     testing.TB
	ctx   context.Context
	pool  *pgxpool.Pool
	url   string
	codec runtime.Codec
	kinds map[schema.GroupVersionKind]reports.Kind

	mu      sync.Mutex
	stores  map[string]*pgstorage.Store
	writers map[string]*pgstorage.Writer
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	pool, url := dbtest.Pool(t)
	scheme, err := apiserver.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[schema.GroupVersionKind]reports.Kind{}
	seen := map[schema.GroupVersion]bool{}
	var versions []schema.GroupVersion
	for _, k := range reports.All() {
		kinds[k.GroupVersionKind()] = k
		if !seen[k.GroupVersion] {
			seen[k.GroupVersion] = true
			versions = append(versions, k.GroupVersion)
		}
	}
	codec := serializer.NewCodecFactory(scheme).LegacyCodec(versions...)
	return &env{
		t: t, ctx: ctx, pool: pool, url: url, codec: codec, kinds: kinds,
		stores: map[string]*pgstorage.Store{}, writers: map[string]*pgstorage.Writer{},
	}
}

// service returns an analytics service on the env's database, without notifications.
func (e *env) service(cfg analytics.Config) *analytics.Service {
	return analytics.New(e.pool, nil, cfg)
}

// project runs the projector and one refresh of the summaries, failing the test if another
// process holds either lock.
func (e *env) projectAndRefresh() {
	e.t.Helper()
	s := e.service(analytics.Config{})
	e.untilRan("project", s.ProjectOnce)
	e.untilRan("refresh", s.RefreshOnce)
}

// untilRan runs a one-shot until it gets the lock. A service stopped just before may still hold
// it for a moment: a leader whose query was cancelled loses its connection, and the lock goes
// only when that backend has exited, shortly after the client closed the socket.
func (e *env) untilRan(what string, once func(context.Context) (bool, error)) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ran, err := once(e.ctx)
		if err != nil {
			e.t.Fatalf("%s: %v", what, err)
		}
		if ran {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: another session still holds the lock after 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) kind(obj map[string]any) reports.Kind {
	e.t.Helper()
	u := unstructured.Unstructured{Object: obj}
	k, ok := e.kinds[u.GroupVersionKind()]
	if !ok {
		e.t.Fatalf("not a served report kind: %s", u.GroupVersionKind())
	}
	return k
}

func (e *env) store(cluster string, k reports.Kind) *pgstorage.Store {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	id := cluster + "/" + k.GroupVersion.Group + "/" + k.Resource
	if s, ok := e.stores[id]; ok {
		return s
	}
	w, ok := e.writers[cluster]
	if !ok {
		w = pgstorage.NewWriter(e.pool, cluster)
		e.writers[cluster] = w
	}
	s, err := pgstorage.New(pgstorage.Config{
		Pool: e.pool, Cluster: cluster, Codec: e.codec,
		ResourcePrefix: "/" + k.GroupVersion.Group + "/" + k.Resource,
		NewFunc:        k.New, NewListFunc: k.NewList, Writer: w,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.stores[id] = s
	return s
}

// key is the storage key the generic registry computes for obj.
func (e *env) key(obj map[string]any) string {
	k := e.kind(obj)
	u := unstructured.Unstructured{Object: obj}
	if k.Namespaced {
		return "/" + k.GroupVersion.Group + "/" + k.Resource + "/" + u.GetNamespace() + "/" + u.GetName()
	}
	return "/" + k.GroupVersion.Group + "/" + k.Resource + "/" + u.GetName()
}

// typed converts obj to the Go type of its kind, as decoding a request does.
func (e *env) typed(obj map[string]any) runtime.Object {
	e.t.Helper()
	out := e.kind(obj).New()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, out); err != nil {
		e.t.Fatalf("convert %v: %v", obj["kind"], err)
	}
	return out
}

// create stores obj in cluster, with the uid and creation time the registry would set.
func (e *env) create(cluster string, obj map[string]any) {
	e.t.Helper()
	k := e.kind(obj)
	u := unstructured.Unstructured{Object: obj}
	if k.Namespaced && u.GetNamespace() == "" {
		u.SetNamespace("default")
	}
	if u.GetUID() == "" {
		u.SetUID(types.UID(fmt.Sprintf("uid-%s-%s-%s-%s", cluster, k.Resource, u.GetNamespace(), u.GetName())))
	}
	u.SetCreationTimestamp(metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
	if err := e.store(cluster, k).Create(e.ctx, e.key(obj), e.typed(obj), nil, 0); err != nil {
		e.t.Fatalf("create %s in %s: %v", e.key(obj), cluster, err)
	}
}

// createAll creates objs concurrently (so the writer batches them, as under load).
func (e *env) createAll(cluster string, objs []map[string]any) {
	e.t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, obj := range objs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			e.create(cluster, obj)
		})
	}
	wg.Wait()
}

// update replaces the stored object with obj (a full PUT).
func (e *env) update(cluster string, obj map[string]any) {
	e.t.Helper()
	k := e.kind(obj)
	newObj := e.typed(obj)
	dest := k.New()
	err := e.store(cluster, k).GuaranteedUpdate(e.ctx, e.key(obj), dest, false, nil,
		func(input runtime.Object, _ storage.ResponseMeta) (runtime.Object, *uint64, error) {
			in, err := runtime.DefaultUnstructuredConverter.ToUnstructured(input)
			if err != nil {
				return nil, nil, err
			}
			out, err := runtime.DefaultUnstructuredConverter.ToUnstructured(newObj)
			if err != nil {
				return nil, nil, err
			}
			// Keep what the server owns.
			out["metadata"] = in["metadata"]
			res := k.New()
			return res, nil, runtime.DefaultUnstructuredConverter.FromUnstructured(out, res)
		}, nil)
	if err != nil {
		e.t.Fatalf("update %s in %s: %v", e.key(obj), cluster, err)
	}
}

func (e *env) delete(cluster string, obj map[string]any) {
	e.t.Helper()
	k := e.kind(obj)
	if err := e.store(cluster, k).Delete(e.ctx, e.key(obj), k.New(), nil, storage.ValidateAllObjectFunc, nil, storage.DeleteOptions{}); err != nil {
		e.t.Fatalf("delete %s in %s: %v", e.key(obj), cluster, err)
	}
}

// samples reads the producer samples (YAML and JSON, several documents per file), or skips the
// test when they are not there.
func samples(t testing.TB) []map[string]any {
	t.Helper()
	files := sampleFiles()
	if len(files) == 0 {
		t.Skipf("no sample reports in %s (the shared testdata beside the repository): skipped", samplesDir)
	}
	var out []map[string]any
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var obj map[string]any
			err := dec.Decode(&obj)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if obj != nil {
				out = append(out, obj)
			}
		}
	}
	return out
}

// sampleFiles lists the sample files, sorted.
func sampleFiles() []string {
	files, _ := filepath.Glob(filepath.Join(samplesDir, "*.yaml"))
	jsonFiles, _ := filepath.Glob(filepath.Join(samplesDir, "*.json"))
	files = append(files, jsonFiles...)
	sort.Strings(files)
	return files
}

// asReader runs fn in a transaction as reports_reader (SET LOCAL ROLE), read-only, rolled back.
func asReader(ctx context.Context, t testing.TB, pool *pgxpool.Pool, fn func(tx pgx.Tx)) {
	t.Helper()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE reports_reader"); err != nil {
		t.Fatalf("SET ROLE reports_reader (the test user must be a superuser or a member of reports_reader): %v", err)
	}
	fn(tx)
}

// queryRows runs q and returns its column names and normalized rows.
func queryRows(ctx context.Context, t testing.TB, tx pgx.Tx, q string, args ...any) ([]string, [][]string) {
	t.Helper()
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		t.Fatalf("%v\nin query:\n%s", err, q)
	}
	defer rows.Close()
	var cols []string
	for _, f := range rows.FieldDescriptions() {
		cols = append(cols, f.Name)
	}
	var out [][]string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = norm(v)
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%v\nin query:\n%s", err, q)
	}
	return cols, out
}

func joinRows(rows [][]string) string {
	var b strings.Builder
	for _, r := range rows {
		b.WriteString("  " + strings.Join(r, " | ") + "\n")
	}
	return b.String()
}
