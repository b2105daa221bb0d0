package pglocal

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func startForTest(t *testing.T, dataDir string) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{DataDir: dataDir})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("Stop in cleanup: %v", err)
		}
	})
	return s
}

func TestStartCreateConnectStopReuse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dataDir := filepath.Join(t.TempDir(), "pg")

	s := startForTest(t, dataDir)
	if err := s.CreateDatabase(ctx, "app-db"); err != nil { // needs quoting
		t.Fatalf("CreateDatabase: %v", err)
	}
	if err := s.CreateDatabase(ctx, "app-db"); err != nil {
		t.Fatalf("CreateDatabase is not idempotent: %v", err)
	}
	conn, err := pgx.Connect(ctx, s.URL("app-db"))
	if err != nil {
		t.Fatalf("connect to %s: %v", s.URL("app-db"), err)
	}
	for setting, want := range map[string]string{"fsync": "on", "listen_addresses": "127.0.0.1", "max_connections": "200", "unix_socket_directories": s.DataDir()} {
		var got string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", setting).Scan(&got); err != nil {
			t.Fatalf("read %s: %v", setting, err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE survivor (v text); INSERT INTO survivor VALUES ('kept')"); err != nil {
		t.Fatalf("write: %v", err)
	}
	conn.Close(ctx)
	if _, err := os.Stat(filepath.Join(dataDir, LogFile)); err != nil {
		t.Errorf("no postgres log: %v", err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Stop returned before postgres exited")
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); !os.IsNotExist(err) {
		t.Errorf("postmaster.pid still there after Stop (err=%v)", err)
	}

	// Second start on the same directory: no initdb, the data is still there.
	pgVersion, _ := os.Stat(filepath.Join(dataDir, "PG_VERSION"))
	s2 := startForTest(t, dataDir)
	again, _ := os.Stat(filepath.Join(dataDir, "PG_VERSION"))
	if pgVersion == nil || again == nil || !pgVersion.ModTime().Equal(again.ModTime()) {
		t.Errorf("cluster was re-initialised")
	}
	if err := s2.CreateDatabase(ctx, "app-db"); err != nil {
		t.Fatalf("CreateDatabase on reused cluster: %v", err)
	}
	conn, err = pgx.Connect(ctx, s2.URL("app-db"))
	if err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SELECT v FROM survivor").Scan(&v); err != nil || v != "kept" {
		t.Fatalf("data not kept across restart: %q, %v", v, err)
	}
}

func TestRefusesRunningPostmaster(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "pg")
	s := startForTest(t, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	second, err := Start(ctx, Options{DataDir: dataDir})
	if err == nil {
		_ = second.Stop(ctx)
		t.Fatal("second Start on a data dir with a running postmaster succeeded")
	}
	if !strings.Contains(err.Error(), "in use by a running PostgreSQL server") {
		t.Fatalf("unclear error: %v", err)
	}
	// The first server is unharmed.
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatalf("first server gone: %v", err)
	}
	conn.Close(ctx)
}

func TestNoBinariesNamesThePackage(t *testing.T) {
	empty := t.TempDir()
	_, err := Start(context.Background(), Options{DataDir: filepath.Join(t.TempDir(), "pg"), BinDirs: []string{empty}})
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("want ErrNoBinaries, got %v", err)
	}
	for _, want := range []string{`Debian package "postgresql"`, "apt-get install postgresql", empty} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestDebianBinDirsHighestFirst(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"9.6", "15", "13", "README"} {
		if err := os.MkdirAll(filepath.Join(root, v, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got := debianBinDirs(root)
	want := []string{filepath.Join(root, "15", "bin"), filepath.Join(root, "13", "bin"), filepath.Join(root, "9.6", "bin")}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestRejectsNonEmptyNonCluster(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "something"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Options{DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "holds no PostgreSQL cluster") {
		t.Fatalf("want a clear refusal, got %v", err)
	}
}

// TestParentDeathStopsServer runs Start in a child copy of this test binary, kills that child
// with SIGKILL, and checks that postgres goes away and the data directory can be started again.
func TestParentDeathStopsServer(t *testing.T) {
	if dir := os.Getenv("PGLOCAL_TEST_HELPER_DIR"); dir != "" {
		s, err := Start(context.Background(), Options{DataDir: dir})
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(1)
		}
		fmt.Println("PID", s.proc.Pid)
		time.Sleep(time.Hour) // until killed
	}
	if runtime.GOOS != "linux" {
		t.Skip("parent-death signal is Linux only")
	}
	dataDir := filepath.Join(t.TempDir(), "pg")
	cmd := exec.Command(os.Args[0], "-test.run=^TestParentDeathStopsServer$")
	cmd.Env = append(os.Environ(), "PGLOCAL_TEST_HELPER_DIR="+dataDir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "PID %d", &pid); err == nil {
			break
		}
		if strings.HasPrefix(sc.Text(), "ERROR") {
			t.Fatal(sc.Text())
		}
	}
	if pid == 0 {
		_ = cmd.Process.Kill()
		t.Fatal("helper did not report a postgres pid")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for isPostgresProcess(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("postgres (pid %d) outlived its killed parent", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if log := tail(filepath.Join(dataDir, LogFile), 50); !strings.Contains(log, "fast shutdown request") {
		t.Errorf("postgres did not get a fast shutdown request; log:\n%s", log)
	}
	startForTest(t, dataDir)
}

func TestRootWithoutServerUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only meaningful as root")
	}
	_, err := Start(context.Background(), Options{DataDir: filepath.Join(t.TempDir(), "pg"), User: "no-such-pg-user"})
	if err == nil || !strings.Contains(err.Error(), `unprivileged user "no-such-pg-user", which does not exist`) {
		t.Fatalf("want a clear message about the missing user, got %v", err)
	}
}

// TestImmediateShutdownAndFreeze: an immediate shutdown (as a crash) keeps committed data, and
// Start brings the cluster back on the same port after crash recovery; Signal(SIGSTOP) freezes
// every postgres process, so a connection attempt hangs, and SIGCONT thaws them.
func TestImmediateShutdownAndFreeze(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Signal lists child processes from /proc")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dataDir := filepath.Join(t.TempDir(), "pg")
	s := startForTest(t, dataDir)
	if s.PID() <= 0 || !isPostgresProcess(s.PID()) {
		t.Fatalf("PID %d is not a postgres process", s.PID())
	}
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE survivor (v text); INSERT INTO survivor VALUES ('kept')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := s.Shutdown(ctx, Immediate); err != nil {
		t.Fatalf("immediate shutdown: %v", err)
	}
	if isPostgresProcess(s.PID()) {
		t.Fatalf("postmaster %d still running after an immediate shutdown", s.PID())
	}

	s2, err := Start(ctx, Options{DataDir: dataDir, Port: s.Port()})
	if err != nil {
		t.Fatalf("start after an immediate shutdown: %v", err)
	}
	t.Cleanup(func() {
		_ = s2.Signal(syscall.SIGCONT)
		_ = s2.Stop(context.Background())
	})
	if log := tail(filepath.Join(dataDir, LogFile), 50); !strings.Contains(log, "was not properly shut down") {
		t.Errorf("no crash recovery after an immediate shutdown; log:\n%s", log)
	}
	conn, err = pgx.Connect(ctx, s2.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SELECT v FROM survivor").Scan(&v); err != nil || v != "kept" {
		t.Fatalf("committed data after crash recovery: %q, %v", v, err)
	}

	if err := s2.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("freeze: %v", err)
	}
	frozen, cancelFrozen := context.WithTimeout(ctx, time.Second)
	if _, err := conn.Exec(frozen, "SELECT 1"); err == nil {
		t.Errorf("a frozen server answered a query")
	}
	cancelFrozen()
	if err := s2.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("thaw: %v", err)
	}
	conn2, err := pgx.Connect(ctx, s2.URL("postgres"))
	if err != nil {
		t.Fatalf("connect after thawing: %v", err)
	}
	defer conn2.Close(ctx)
	if err := conn2.QueryRow(ctx, "SELECT v FROM survivor").Scan(&v); err != nil {
		t.Fatalf("query after thawing: %v", err)
	}
}
