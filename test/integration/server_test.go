// Package integration runs the real reports-server in-process, in standalone mode on a free port,
// against a fresh PostgreSQL database per server (internal/db/dbtest), and talks to it over HTTPS
// with client-go and kubectl exactly as users do. Nothing is mocked.
package integration

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/reports-server/reports-server/internal/db/dbtest"
	"github.com/reports-server/reports-server/internal/server"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// testServer is a running standalone server.
type testServer struct {
	// Config authenticates with the server's generated token and trusts its certificate.
	Config *rest.Config
	// Kubeconfig is the file the server wrote for kubectl.
	Kubeconfig string
	// DatabaseURL is the server's own database.
	DatabaseURL string
	// Stop stops the server as SIGTERM does and waits until it has; the test's end calls it too.
	Stop func()
}

// startServer runs `reports-server serve --standalone --secure-port 0` in-process with a temporary
// data directory and its own database, and stops it when t ends. Servers are independent, so
// tests that each start one can run in parallel.
func startServer(t *testing.T) *testServer {
	t.Helper()
	return startServerOn(t, dbtest.URL(t))
}

// startServerOn is startServer on a database of the caller's.
func startServerOn(t *testing.T, databaseURL string) *testServer {
	t.Helper()
	return startServerWith(t, databaseURL, nil)
}

// startServerWith is startServerOn with options and hooks the caller adjusts in configure (may be
// nil) before the options are completed; the Out and Ready hooks are the harness's own.
func startServerWith(t testing.TB, databaseURL string, configure func(*server.Options, *server.Hooks)) *testServer {
	t.Helper()
	o := server.NewOptions()
	o.Standalone = true
	o.DataDir = t.TempDir()
	o.DatabaseURL = databaseURL
	o.Recommended.SecureServing.BindPort = 0
	var hooks server.Hooks
	if configure != nil {
		configure(o, &hooks)
	}
	if err := o.Complete(nil); err != nil {
		t.Fatalf("complete options: %v", err)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("validate options: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *rest.Config, 1)
	done := make(chan error, 1)
	go func() {
		hooks.Out, hooks.Ready = io.Discard, func(c *rest.Config) { ready <- c }
		done <- o.Run(ctx, hooks)
	}()
	// Registered after dbtest.URL's cleanup, so it runs first: the server stops before its
	// database is dropped.
	var stopOnce sync.Once
	stop := func() {
		stopOnce.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("server exited with: %v", err)
				}
			case <-time.After(90 * time.Second):
				t.Errorf("server did not stop within 90s")
			}
		})
	}
	t.Cleanup(stop)

	select {
	case cfg := <-ready:
		// Tests issue many requests quickly; client-go's default 5 QPS would only slow them down.
		cfg.QPS, cfg.Burst = -1, 0
		return &testServer{Config: cfg, Kubeconfig: o.WriteKubeconfig, DatabaseURL: o.DatabaseURL, Stop: stop}
	case err := <-done:
		t.Fatalf("server exited before it was ready: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatalf("server not ready after 2 minutes")
	}
	return nil
}

// dynamicClient is a client-go dynamic client of the server, as its Config authenticates.
func (s *testServer) dynamicClient(t testing.TB) *dynamic.DynamicClient {
	t.Helper()
	c, err := dynamic.NewForConfig(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// metadataClient is a client-go metadata client of the server (protobuf, as informers use it).
func (s *testServer) metadataClient(t testing.TB) metadata.Interface {
	t.Helper()
	c, err := metadata.NewForConfig(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
