package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/reports-server/reports-server/internal/pglocal"
	"github.com/reports-server/reports-server/internal/server"
)

// TestReadReplica runs the server on a primary and a real streaming replica of it
// (pg_basebackup), with --database-read-url. Replay on the replica is paused to hold it behind,
// which tells which of the two served a list: a list that may be served from an older state
// (resourceVersion=0) is served by the replica; a list of the most recent state, a list not older
// than a newer resourceVersion and a watch's initial state never are (the primary serves them);
// continuation pages are; findings follow the primary's projection while the replica's is
// behind; and while the replica hangs or once it is stopped every read goes to the primary,
// without an error.
func TestReadReplica(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	primary := startPrivatePostgres(ctx, t, filepath.Join(dir, "primary"))
	const database = "reports"
	migratedDatabase(ctx, t, primary, database)
	replica := startStandby(ctx, t, primary, filepath.Join(dir, "replica"))
	replicaStopped := false
	t.Cleanup(func() {
		if !replicaStopped {
			stopPG(replica)
		}
	})

	srv := startServerWith(t, primary.URL(database), func(o *server.Options, _ *server.Hooks) {
		o.DatabaseReadURL = replica.URL(database)
	})
	c := newRawClient(t, srv.Config)
	k := kindNamed(t, "PolicyReport")
	const ns = "replica"
	collection := collectionPath(k, ns)
	create := func(name string) int64 {
		t.Helper()
		r := c.do(http.MethodPost, collection, "application/json", encodeObject(t, sample(k, ns, name, nil, "Pod", "pass")))
		if r.code != http.StatusCreated {
			t.Fatalf("create %s: %d %s", name, r.code, r.body)
		}
		var u unstructured.Unstructured
		if err := u.UnmarshalJSON(r.body); err != nil {
			t.Fatal(err)
		}
		rv, _ := strconv.ParseInt(u.GetResourceVersion(), 10, 64)
		return rv
	}
	list := func(what, query string) (got []string, rv int64, cont string) {
		t.Helper()
		r := c.do(http.MethodGet, collection+"?"+query, "", nil)
		var l unstructured.UnstructuredList
		if err := l.UnmarshalJSON(r.body); err != nil {
			t.Fatalf("%s: %d %v: %s", what, r.code, err, r.body)
		}
		rv, _ = strconv.ParseInt(l.GetResourceVersion(), 10, 64)
		return names(&l), rv, l.GetContinue()
	}

	for _, name := range []string{"a", "b", "c"} {
		create(name)
	}
	replicaConn := connect(ctx, t, replica.URL(database))
	waitReplayed(ctx, t, primary.URL(database), replicaConn)

	// Hold the replica behind: what it serves now is the state of three reports.
	if _, err := replicaConn.Exec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
		t.Fatal(err)
	}
	behind := currentRevision(ctx, t, replicaConn)
	newest := create("d")

	if got, rv, _ := list("list at resourceVersion=0", "resourceVersion=0"); len(got) != 3 || rv != behind {
		t.Errorf("list at resourceVersion=0 = %v at %d, want the replica's a, b, c at %d", got, rv, behind)
	}
	if got, rv, _ := list("list of the most recent state", ""); len(got) != 4 || rv < newest {
		t.Errorf("list of the most recent state = %v at %d, want a..d at >= %d (the replica is behind)", got, rv, newest)
	}
	if got, _, _ := list("list not older than the newest write", "resourceVersion="+strconv.FormatInt(newest, 10)); len(got) != 4 {
		t.Errorf("list not older than %d = %v, want a..d", newest, got)
	}
	// Pages: the first from the replica at its revision, the next at that exact revision, also
	// from the replica, which has it.
	first, rv, cont := list("first page at resourceVersion=0", "resourceVersion=0&limit=2")
	if len(first) != 2 || rv != behind || cont == "" {
		t.Fatalf("first page = %v at %d (continue %q), want 2 items of the replica's state at %d", first, rv, cont, behind)
	}
	if rest, rv, _ := list("second page", "limit=2&continue="+cont); len(rest) != 1 || rv != behind {
		t.Errorf("second page = %v at %d, want the third of the replica's state at %d", rest, rv, behind)
	}
	// A watch's initial state is the most recent state.
	if got := initialEventNames(t, c, collection); len(got) != 4 {
		t.Errorf("watch-list initial events = %v, want a..d", got)
	}

	// Findings follow the primary's projection, which has the newest write; the replica's does not.
	findings := "/apis/analytics.reports-server.io/v1alpha1/namespaces/" + ns + "/findings"
	countFindings := func() int {
		r := c.do(http.MethodGet, findings, "", nil)
		var l unstructured.UnstructuredList
		if r.code != http.StatusOK || l.UnmarshalJSON(r.body) != nil {
			return -1
		}
		return len(l.Items)
	}
	if !waitFor(time.Minute, func() bool { return countFindings() == 4 }) {
		t.Errorf("findings with the replica behind: %d, want the 4 results of a..d", countFindings())
	}

	// Replay again: the replica catches up and serves the newest state.
	if _, err := replicaConn.Exec(ctx, "SELECT pg_wal_replay_resume()"); err != nil {
		t.Fatal(err)
	}
	waitReplayed(ctx, t, primary.URL(database), replicaConn)
	if got, rv, _ := list("list at resourceVersion=0 after catching up", "resourceVersion=0"); len(got) != 4 || rv < newest {
		t.Errorf("after catching up: %v at %d, want a..d at >= %d", got, rv, newest)
	}

	// The replica hung (SIGSTOP): a read waits for it a bounded time, then the primary answers;
	// the reads after it go to the primary at once.
	if err := replica.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	create("e")
	for range 2 {
		if got, _, _ := list("list with the replica hung", "resourceVersion=0"); len(got) != 5 {
			t.Errorf("list with the replica hung = %v, want a..e from the primary", got)
		}
	}
	if err := replica.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	// The metrics say where reads went.
	if m := c.do(http.MethodGet, "/metrics", "", nil); !strings.Contains(string(m.body), `reports_server_db_replica_reads_total{outcome="served"}`) ||
		!strings.Contains(string(m.body), `reports_server_db_replica_reads_total{outcome="primary"}`) {
		t.Errorf("/metrics has no replica read counts")
	}

	// The replica away: every read goes to the primary, none fails.
	replicaConn.Close(ctx)
	stopPG(replica)
	replicaStopped = true
	create("f")
	for _, q := range []string{"resourceVersion=0", "", "resourceVersion=0&limit=2"} {
		r := c.do(http.MethodGet, collection+"?"+q, "", nil)
		if r.code != http.StatusOK {
			t.Errorf("list %q with the replica stopped: %d %s", q, r.code, r.body)
		}
	}
	if n := countFindings(); n < 0 {
		t.Error("findings with the replica stopped: not answered")
	}
	if got, _, _ := list("list with the replica stopped", "resourceVersion=0"); len(got) != 6 {
		t.Errorf("list with the replica stopped = %v, want a..f from the primary", got)
	}
}

// startStandby makes a streaming replica of primary in dataDir with pg_basebackup and starts it.
func startStandby(ctx context.Context, t *testing.T, primary *pglocal.Server, dataDir string) *pglocal.Server {
	t.Helper()
	bin := findPGTool(t, "pg_basebackup")
	out, err := exec.CommandContext(ctx, bin, "-D", dataDir, "-R", "-X", "stream", "-c", "fast",
		"-h", "127.0.0.1", "-p", strconv.Itoa(primary.Port()), "-U", pglocal.Superuser).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	// The replica runs as the account that runs the primary, which owns its data directory.
	st, err := os.Stat(primary.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := int(st.Sys().(*syscall.Stat_t).Uid), int(st.Sys().(*syscall.Stat_t).Gid)
	if err := filepath.Walk(dataDir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	replica, err := pglocal.Start(ctx, pglocal.Options{DataDir: dataDir})
	if err != nil {
		t.Fatalf("start the replica: %v", err)
	}
	return replica
}

// findPGTool is a PostgreSQL client program from PATH or beside the server binaries.
func findPGTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(matches) > 0 {
		return matches[len(matches)-1]
	}
	t.Fatalf("%s not found: install the PostgreSQL client (Debian: postgresql-client)", name)
	return ""
}

func connect(ctx context.Context, t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func currentRevision(ctx context.Context, t *testing.T, conn *pgx.Conn) int64 {
	t.Helper()
	var rev int64
	if err := conn.QueryRow(ctx, "SELECT current FROM revisions WHERE cluster = $1", server.DefaultClusterName).Scan(&rev); err != nil {
		t.Fatal(err)
	}
	return rev
}

// waitReplayed waits until the replica's revision equals the primary's.
func waitReplayed(ctx context.Context, t *testing.T, primaryURL string, replicaConn *pgx.Conn) {
	t.Helper()
	p := connect(ctx, t, primaryURL)
	want := currentRevision(ctx, t, p)
	if !waitFor(time.Minute, func() bool { return currentRevision(ctx, t, replicaConn) >= want }) {
		t.Fatalf("the replica did not replay revision %d within a minute", want)
	}
}

// initialEventNames opens a watch-list (sendInitialEvents) of collection and returns the names of
// its initial events, up to the bookmark that ends them.
func initialEventNames(t *testing.T, c *rawClient, collection string) []string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.host+collection+"?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=10", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var names []string
	dec := json.NewDecoder(resp.Body)
	for {
		var ev struct {
			Type   string                    `json:"type"`
			Object unstructured.Unstructured `json:"object"`
		}
		if err := dec.Decode(&ev); err != nil {
			t.Fatalf("watch-list ended before its initial events did: %v", err)
		}
		if ev.Type == "BOOKMARK" {
			return names
		}
		names = append(names, ev.Object.GetName())
	}
}
