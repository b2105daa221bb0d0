package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/reports-server/reports-server/internal/pglocal"
	"github.com/reports-server/reports-server/internal/testpki"
)

// TestDatabaseTLSAndPassword runs the server binary against a PostgreSQL that accepts its role
// only over TLS, with a client certificate it verifies (clientcert=verify-full) and a
// SCRAM password, the way docs/operations.md ("TLS and passwords") says to connect:
// sslmode=verify-full with the CA, the client certificate and key, and the password from a
// mounted file (passfile), the environment (PGPASSWORD) or the URL. The server works,
// what it must refuse it refuses (a CA that did not sign the server, no client certificate, a
// wrong password), and the password appears in none of its output, also when it is wrong.
func TestDatabaseTLSAndPassword(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	pg := startPrivatePostgres(ctx, t, filepath.Join(dir, "pg"))

	const user, database = "reports_tls", "reports"
	password := "pw-" + randomSuffix(t) + randomSuffix(t)
	pki := newTestPKI(t, dir, user)
	enableTLS(ctx, t, pg, pki, user, password, database)

	passfile := writeFile(t, dir, "pgpass", fmt.Sprintf("127.0.0.1:%d:%s:%s:%s\n", pg.Port(), database, user, password), 0o600)
	url := func(extra string) string {
		return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s%s",
			pg.Port(), user, database, pki.ca, pki.clientCert, pki.clientKey, extra)
	}

	// What PostgreSQL must refuse, so the rest proves something.
	for what, u := range map[string]string{
		"another CA":            strings.Replace(url(" passfile="+passfile), pki.ca, pki.otherCA, 1),
		"no client certificate": fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=verify-full sslrootcert=%s passfile=%s", pg.Port(), user, database, pki.ca, passfile),
		"wrong password":        url(" password=wrong"),
		"no TLS":                fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable password=%s", pg.Port(), user, database, password),
	} {
		if conn, err := pgx.Connect(ctx, u); err == nil {
			conn.Close(ctx)
			t.Errorf("%s: PostgreSQL accepted the connection", what)
		}
	}

	bin := buildServer(t, dir)
	unset := []string{"DATABASE_URL", "PGPASSWORD", "PGPASSFILE"}
	args := func(t *testing.T, dbURL string) []string {
		return []string{"serve", "--standalone", "--secure-port", "0", "--data-dir", filepath.Join(t.TempDir(), "data"),
			"--database-url", dbURL, "-v", "4"}
	}
	for _, c := range []struct {
		name, url string
		env       []string
	}{
		{"PasswordFile", url(" passfile=" + passfile), nil},
		{"PasswordEnvironment", url(""), []string{"PGPASSWORD=" + password}},
		// A URL from a Secret ($DATABASE_URL) may hold the password: it is not logged either.
		{"PasswordInURL", url(" password=" + password), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := startCommand(t, unset, c.env, bin, args(t, c.url)...)
			createThroughServer(t, p)
			p.stop(t, syscall.SIGTERM)
			expectNoSecret(t, p, password)
		})
	}
	t.Run("WrongPassword", func(t *testing.T) {
		wrong := "wrong-" + randomSuffix(t)
		p := startFailing(t, bin, unset, []string{"PGPASSWORD=" + wrong}, args(t, url(""))...)
		if !strings.Contains(p.stderr(0), "password authentication failed") {
			t.Errorf("the refusal does not say why:\n%s", p.stderr(4096))
		}
		expectNoSecret(t, p, wrong)
	})
}

// createThroughServer creates and reads a report through the running standalone server.
func createThroughServer(t *testing.T, p *process) {
	t.Helper()
	var kubeconfig string
	p.mu.Lock()
	for _, line := range p.stdout {
		if k, ok := strings.CutPrefix(line, "kubeconfig: "); ok {
			kubeconfig = k
		}
	}
	p.mu.Unlock()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	k := kindNamed(t, "PolicyReport")
	name := "tls-" + randomSuffix(t)
	ctx := context.Background()
	if _, err := resourceFor(client, k, "tls").Create(ctx, sample(k, "tls", name, nil, "Pod", "pass"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create over TLS: %v", err)
	}
	if _, err := resourceFor(client, k, "tls").Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Fatalf("get over TLS: %v", err)
	}
}

// startFailing runs the server and waits for it to exit, as it must when it cannot connect.
func startFailing(t *testing.T, bin string, unset, extra []string, args ...string) *process {
	t.Helper()
	p := &process{logPath: filepath.Join(t.TempDir(), "stderr.log"), done: make(chan struct{})}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(environWithout(unset...), extra...)
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("the server started with a wrong password")
		}
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Error("the server neither started nor gave up within 3 minutes")
	}
	return p
}

// expectNoSecret fails when secret appears anywhere in what p wrote.
func expectNoSecret(t *testing.T, p *process, secret string) {
	t.Helper()
	out := p.stderr(0)
	p.mu.Lock()
	out += strings.Join(p.stdout, "\n")
	p.mu.Unlock()
	if strings.Contains(out, secret) {
		t.Errorf("the password appears in the server's output")
	}
	if len(out) == 0 {
		t.Error("no output captured: the check proves nothing")
	}
}

// testPKI is a CA, a server certificate for 127.0.0.1 and a client certificate for a role, and a
// second CA that signed nothing of this server's, as PEM files.
type testPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey, otherCA string
}

func newTestPKI(t *testing.T, dir, clientCN string) testPKI {
	t.Helper()
	ca, err := testpki.NewCA("reports-server test CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := testpki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{ca: filepath.Join(dir, "ca.crt"), otherCA: filepath.Join(dir, "other-ca.crt")}
	writeFile(t, dir, "ca.crt", string(ca.CertPEM), 0o644)
	writeFile(t, dir, "other-ca.crt", string(other.CertPEM), 0o644)
	issue := func(spec testpki.Spec, name string) (certPath, keyPath string) {
		kp, err := ca.Issue(spec)
		if err != nil {
			t.Fatal(err)
		}
		if certPath, keyPath, err = kp.Write(dir, name); err != nil {
			t.Fatal(err)
		}
		return certPath, keyPath
	}
	p.serverCert, p.serverKey = issue(testpki.Spec{CommonName: "127.0.0.1", Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, "server")
	p.clientCert, p.clientKey = issue(testpki.Spec{CommonName: clientCN, Client: true}, "client")
	return p
}

// enableTLS turns on TLS in pg with the server certificate, lets user in only over TLS with a
// verified client certificate and a SCRAM password (the superuser keeps the local socket and
// loopback, for the test's own set-up), and creates user and its database.
func enableTLS(ctx context.Context, t *testing.T, pg *pglocal.Server, pki testPKI, user, password, database string) {
	t.Helper()
	// postgres reads its key as the account that runs it, which owns the data directory.
	st, err := os.Stat(pg.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := int(st.Sys().(*syscall.Stat_t).Uid), int(st.Sys().(*syscall.Stat_t).Gid)
	for _, f := range []string{pki.serverCert, pki.serverKey, pki.ca} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dst := writeFile(t, pg.DataDir(), "tls-"+filepath.Base(f), string(b), 0o600)
		if err := os.Chown(dst, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	hba := strings.Join([]string{
		"local all all trust",
		"hostssl all " + user + " 127.0.0.1/32 scram-sha-256 clientcert=verify-full",
		"host all " + user + " 127.0.0.1/32 reject",
		"host all all 127.0.0.1/32 trust",
	}, "\n") + "\n"
	hbaPath := writeFile(t, pg.DataDir(), "pg_hba.conf", hba, 0o600)
	if err := os.Chown(hbaPath, uid, gid); err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, stmt := range []string{
		"ALTER SYSTEM SET ssl = on",
		"ALTER SYSTEM SET ssl_cert_file = 'tls-server.crt'",
		"ALTER SYSTEM SET ssl_key_file = 'tls-server.key'",
		"ALTER SYSTEM SET ssl_ca_file = 'tls-ca.crt'",
		// The group roles the migrations grant to, as deploy/sql/roles.sql makes them: the
		// server's role here owns its database but may not create roles.
		"CREATE ROLE reports_reader NOLOGIN",
		"CREATE ROLE reports_server NOLOGIN",
		"SET password_encryption = 'scram-sha-256'",
		"CREATE ROLE " + user + " LOGIN PASSWORD '" + password + "'",
		"CREATE DATABASE " + database + " OWNER " + user,
		"SELECT pg_reload_conf()",
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", strings.SplitN(stmt, " PASSWORD", 2)[0], err)
		}
	}
	// The reload is asynchronous: wait until TLS is served.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var on string
		if err := conn.QueryRow(ctx, "SHOW ssl").Scan(&on); err == nil && on == "on" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("PostgreSQL did not turn TLS on")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
