package apiserver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// TestCoreGroupOnlyStandalone checks that the core group (/api, namespaces) is served only when
// asked for (standalone mode): behind kube-apiserver the server must never claim it.
func TestCoreGroupOnlyStandalone(t *testing.T) {
	pool, err := db.Open(context.Background(), dbtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	for _, core := range []bool{false, true} {
		cfg, err := NewConfig()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Extra.Pool, cfg.Extra.Cluster, cfg.Extra.CoreNamespaces = pool, "c", core
		// Not served over the network: the handlers are called directly.
		cfg.Generic.ExternalAddress = "127.0.0.1:6443"
		cfg.Generic.LoopbackClientConfig = &rest.Config{Host: "https://127.0.0.1:6443"}
		completed, err := cfg.Complete()
		if err != nil {
			t.Fatal(err)
		}
		srv, err := completed.New()
		if err != nil {
			t.Fatalf("core=%v: %v", core, err)
		}
		want := map[bool]int{false: http.StatusNotFound, true: http.StatusOK}[core]
		for _, path := range []string{"/api", "/api/v1"} {
			rec := httptest.NewRecorder()
			srv.GenericAPIServer.Handler.Director.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			if rec.Code != want {
				t.Errorf("CoreNamespaces=%v: GET %s = %d, want %d\n%s", core, path, rec.Code, want, rec.Body)
			}
		}
	}
}
