package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/pglocal"
)

// TestDatabaseOutage stops the server's PostgreSQL under it: requests get 503 with Retry-After
// and a message naming the database (never a crash or a hang), /readyz fails, and once
// PostgreSQL is back the server serves again with every acknowledged write intact.
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	pg, err := pglocal.Start(ctx, pglocal.Options{DataDir: dir + "/pg"})
	if err != nil {
		t.Fatalf("start private PostgreSQL: %v", err)
	}
	port := pg.Port()
	t.Cleanup(func() { _ = pg.Stop(context.Background()) })
	if err := pg.CreateDatabase(ctx, "reports"); err != nil {
		t.Fatal(err)
	}
	url := pg.URL("reports")
	if err := db.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	srv := startServerOn(t, url)
	c := newRawClient(t, srv.Config)

	polr := kindNamed(t, "PolicyReport")
	const ns = "outage"
	collection := "/apis/wgpolicyk8s.io/v1alpha2/namespaces/" + ns + "/policyreports"
	create := func(name string) response {
		b, err := json.Marshal(sample(polr, ns, name, nil, "Pod", "pass").Object)
		if err != nil {
			t.Fatal(err)
		}
		return c.do(http.MethodPost, collection, "application/json", b)
	}
	if r := create("before"); r.code != http.StatusCreated {
		t.Fatalf("create before the outage: %d %s", r.code, r.body)
	}

	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, req := range []struct{ name, method, path string }{
		{"create", http.MethodPost, ""},
		{"get", http.MethodGet, collection + "/before"},
		{"list", http.MethodGet, collection},
	} {
		var r response
		if req.method == http.MethodPost {
			r = create("during")
		} else {
			r = c.do(req.method, req.path, "", nil)
		}
		expectStatus(t, req.name+" during outage", r, http.StatusServiceUnavailable, "ServiceUnavailable", "")
		if r.retryAfter == "" {
			t.Errorf("%s during outage: no Retry-After header", req.name)
		}
	}
	// /readyz answers text, not a Status.
	if resp, err := c.http.Get(c.host + "/readyz"); err != nil {
		t.Errorf("/readyz during outage: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("/readyz during outage: %d, want a failure", resp.StatusCode)
		}
	}

	pg, err = pglocal.Start(ctx, pglocal.Options{DataDir: dir + "/pg", Port: port})
	if err != nil {
		t.Fatalf("restart PostgreSQL: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := create("after")
		if r.code == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("create after the outage: %d %s", r.code, r.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, name := range []string{"before", "after"} {
		if r := c.do(http.MethodGet, fmt.Sprintf("%s/%s", collection, name), "", nil); r.code != http.StatusOK {
			t.Errorf("get %s after the outage: %d %s", name, r.code, r.body)
		}
	}
}
