package integration

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

// buildServer builds cmd/reports-server into dir.
func buildServer(t testing.TB, dir string) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "reports-server")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/reports-server")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build reports-server: %v\n%s", err, out)
	}
	return bin
}

// process is a running `reports-server serve`. Its standard error goes to a file: a server
// measured for minutes logs more than is worth keeping in the test's memory.
type process struct {
	cmd     *exec.Cmd
	logPath string // standard error
	mu      sync.Mutex
	stdout  []string
	ready   chan struct{}
	done    chan struct{} // closed when the process has exited; waitErr is set then
	waitErr error
}

// startCommand runs bin with args and the test's environment, without the variables in unset
// and with those in extra, and waits until it prints "ready" (or exits, or 5 minutes pass).
func startCommand(t testing.TB, unset, extra []string, bin string, args ...string) *process {
	t.Helper()
	p := &process{
		cmd:     exec.Command(bin, args...),
		logPath: filepath.Join(t.TempDir(), "stderr.log"),
		ready:   make(chan struct{}), done: make(chan struct{}),
	}
	p.cmd.Env = append(environWithout(unset...), extra...)
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = logFile
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.stdout = append(p.stdout, sc.Text())
			p.mu.Unlock()
			if sc.Text() == "ready" {
				close(p.ready)
			}
		}
		p.waitErr = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case <-p.ready:
		return p
	case <-p.done:
		p.failOrSkip(t, "exited before ready: %v", p.waitErr)
	case <-time.After(5 * time.Minute):
		p.failOrSkip(t, "not ready after 5 minutes")
	}
	return nil
}

// stderr is what the process wrote to standard error, at most its last max bytes (0: all).
func (p *process) stderr(max int) string {
	data, _ := os.ReadFile(p.logPath)
	if max > 0 && len(data) > max {
		data = data[len(data)-max:]
	}
	return string(data)
}

func (p *process) failOrSkip(t testing.TB, format string, args ...any) {
	t.Helper()
	stderr := p.stderr(0)
	if strings.Contains(stderr, "no PostgreSQL server binaries found") {
		t.Skipf("PostgreSQL server binaries are not installed: %s", stderr)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Fatalf("reports-server "+format+"\nstdout: %v\nstderr:\n%s", append(args, p.stdout, stderr)...)
}

// stop sends sig and expects a clean exit.
func (p *process) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		if p.waitErr != nil {
			p.failOrSkip(t, "exited with %v after %v", p.waitErr, sig)
		}
	case <-time.After(90 * time.Second):
		p.failOrSkip(t, "did not stop within 90s of %v", sig)
	}
}

// managedOnly: the standalone command tests run the managed PostgreSQL, which is under test.
var managedOnly = []string{"DATABASE_URL"}

// TestCommand builds cmd/reports-server once and runs it as users and scripts do.
func TestCommand(t *testing.T) {
	t.Parallel()
	bin := buildServer(t, t.TempDir())
	t.Run("standalone", func(t *testing.T) {
		t.Parallel()
		testCommandStandalone(t, bin)
	})
	t.Run("migrate", func(t *testing.T) {
		t.Parallel()
		testCommandMigrate(t, bin)
	})
}

// testCommandStandalone runs the binary the way the README does: `serve --standalone` with no
// database URL, so it manages its own PostgreSQL in the data directory. It checks the stdout
// contract ("kubeconfig: <path>", "ready"), that SIGTERM and SIGINT stop the server and its
// PostgreSQL cleanly, and that a restart keeps the data, the certificate and the token, so the
// kubeconfig written first still works.
func testCommandStandalone(t *testing.T, bin string) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	kubeconfig := filepath.Join(dir, "elsewhere", "config")
	args := []string{"serve", "--standalone", "--secure-port", "0", "--data-dir", dataDir, "--write-kubeconfig", kubeconfig}

	p := startCommand(t, managedOnly, nil, bin, args...)
	if len(p.stdout) != 2 || p.stdout[0] != "kubeconfig: "+kubeconfig {
		t.Errorf("stdout %q, want [\"kubeconfig: %s\" \"ready\"]", p.stdout, kubeconfig)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kind := reports.All()[0]
	ctx := context.Background()
	if _, err := resourceFor(client, kind, "default").Create(ctx, sample(kind, "default", "kept", nil, "Pod", "pass"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	p.stop(t, syscall.SIGTERM)
	if _, err := os.Stat(filepath.Join(dataDir, "postgres", "postmaster.pid")); !os.IsNotExist(err) {
		t.Errorf("managed PostgreSQL still running after SIGTERM (postmaster.pid: %v)", err)
	}

	// The second start reuses everything; the old kubeconfig (and its client) still works
	// because the port is fixed now and the token and certificate are kept.
	p = startCommand(t, managedOnly, nil, bin, append(args[:2:2], "--secure-port", portOf(t, cfg.Host), "--data-dir", dataDir, "--write-kubeconfig", kubeconfig)...)
	got, err := resourceFor(client, kind, "default").Get(ctx, "kept", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get after restart with the first kubeconfig: %v", err)
	}
	if got.GetName() != "kept" {
		t.Errorf("got %q", got.GetName())
	}
	p.stop(t, syscall.SIGINT)
}

// environWithout returns this process's environment minus the named variables.
func environWithout(names ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(names, name) {
			env = append(env, kv)
		}
	}
	return env
}

func portOf(t *testing.T, host string) string {
	t.Helper()
	i := strings.LastIndex(host, ":")
	if i < 0 {
		t.Fatalf("no port in %q", host)
	}
	return host[i+1:]
}

// testCommandMigrate runs `reports-server migrate status|up|down` against an empty database.
func testCommandMigrate(t *testing.T, bin string) {
	url := dbtest.EmptyURL(t)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"migrate"}, append(args, "--database-url", url)...)...)
		cmd.Env = environWithout("DATABASE_URL")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("migrate %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run("status"); !strings.Contains(out, "pending") || strings.Contains(out, "applied") {
		t.Errorf("status of an empty database:\n%s", out)
	}
	run("up")
	if out := run("status"); strings.Contains(out, "pending") || !strings.Contains(out, "applied") {
		t.Errorf("status after up:\n%s", out)
	}
	run("down")
	if out := run("status"); !strings.Contains(out, "pending") {
		t.Errorf("status after down:\n%s", out)
	}
	cmd := exec.Command(bin, "migrate", "up")
	cmd.Env = environWithout("DATABASE_URL")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--database-url") {
		t.Errorf("migrate without a URL: err %v, output %s", err, out)
	}
}
