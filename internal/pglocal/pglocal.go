// Package pglocal runs a private PostgreSQL server for one process: `reports-server serve
// --standalone` without a database URL, and the test harness when no PostgreSQL is reachable.
//
// The server is a child process started from the installed server binaries (initdb, postgres).
// It owns its data directory: the first Start runs initdb there, later Starts reuse the cluster.
// It listens only on 127.0.0.1 (and on a unix socket inside the data directory), trusts every
// local connection as the superuser "postgres", and keeps fsync on, so a write that was
// acknowledged survives a crash. It is meant for development, tests and single-node demos, not as
// a production database.
//
// Lifetime: Stop shuts it down (fast shutdown) and waits; Shutdown can also stop it as a crash
// would (immediate), and Signal can freeze it (SIGSTOP of every postgres process) for tests of
// database faults. If this process dies without calling
// Stop, the kernel sends postgres SIGINT (Linux parent-death signal), so it does not outlive us.
//
// A data directory that already has a live postmaster is refused, not shared: a server this
// process did not start has unknown settings and an owner who will stop it under our feet.
//
// PostgreSQL refuses to run as root. When this process is root, initdb and postgres run as an
// unprivileged account (Options.User, default "postgres") through the process credentials, the
// data directory is owned by that account, and parent directories that account cannot traverse
// get search permission for others (o+x, logged).
package pglocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Superuser is the role initdb creates; every connection uses it (trust authentication).
const Superuser = "postgres"

// LogFile is the name of postgres's own log inside the data directory.
const LogFile = "postgres.log"

// ErrNoBinaries is returned (wrapped, with what to install) when initdb and postgres are not found.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries found")

// Options configures Start.
type Options struct {
	// DataDir is owned by this server: initdb'd on first use, reused later. Required.
	DataDir string
	// Port on 127.0.0.1; 0 picks a free one.
	Port int
	// Logger receives a few lines about the server (binaries, data dir, log path). postgres's own
	// output goes to DataDir/postgres.log. Default slog.Default().
	Logger *slog.Logger
	// User is the account that runs initdb and postgres when this process is root (PostgreSQL
	// refuses to run as root). Default "postgres". Ignored when not root.
	User string
	// BinDirs, when non-nil, replaces binary discovery (PATH, pg_config --bindir,
	// /usr/lib/postgresql/*/bin): only these directories are searched.
	BinDirs []string
	// StartTimeout bounds waiting for the server to accept connections. Default 60s.
	StartTimeout time.Duration
}

// Server is a running private PostgreSQL.
type Server struct {
	dataDir string
	port    int
	bin     binaries
	log     *slog.Logger

	proc    *os.Process
	exited  chan struct{} // closed when postgres has exited
	exitErr error         // valid after exited is closed

	stopped chan struct{} // closed when Stop has finished
	stopErr error
	stopReq chan struct{} // first Stop caller closes it
}

// settings are passed on the postgres command line at every start, so they live in code, not in
// a postgresql.conf that an older version of this package wrote.
var settings = []string{
	"listen_addresses=127.0.0.1",
	"fsync=on",
	"synchronous_commit=on",
	"full_page_writes=on",
	"max_connections=200",
	"shared_buffers=128MB",
	"logging_collector=off",
	"log_destination=stderr",
}

// maxSocketPath is the usable length of a unix socket path (sun_path is 108 bytes with the NUL).
const maxSocketPath = 107

// Start initialises DataDir if needed, starts postgres and waits until it accepts connections.
func Start(ctx context.Context, opts Options) (*Server, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if opts.DataDir == "" {
		return nil, errors.New("pglocal: Options.DataDir is required")
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("pglocal: data dir: %w", err)
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}

	who, err := runAsUser(opts.User)
	if err != nil {
		return nil, err
	}
	clusterMajor, err := clusterVersion(dataDir)
	if err != nil {
		return nil, err
	}
	bin, err := findBinaries(ctx, opts.BinDirs, clusterMajor)
	if err != nil {
		return nil, err
	}
	if err := prepareParents(dataDir, who, logger); err != nil {
		return nil, err
	}
	if clusterMajor == 0 {
		if err := initCluster(ctx, dataDir, bin, who, logger); err != nil {
			return nil, err
		}
	} else if err := ensureOwner(dataDir, who, logger); err != nil {
		return nil, err
	}
	if err := checkNoPostmaster(ctx, dataDir); err != nil {
		return nil, err
	}

	s := &Server{dataDir: dataDir, bin: bin, log: logger, stopReq: make(chan struct{}), stopped: make(chan struct{})}
	// With a picked port another process may bind it first; postgres then exits at once and we
	// try another one.
	attempts := 1
	if opts.Port == 0 {
		attempts = 3
	}
	for attempt := 1; ; attempt++ {
		port := opts.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				return nil, err
			}
		}
		err = s.start(ctx, port, who, timeout)
		if err == nil {
			logger.Info("local PostgreSQL started", "version", bin.version, "dataDir", dataDir,
				"port", port, "log", filepath.Join(dataDir, LogFile), "user", who.name)
			return s, nil
		}
		if attempt >= attempts || !errors.Is(err, errExitedEarly) || !portTaken(err) {
			return nil, err
		}
		logger.Warn("local PostgreSQL did not start, retrying on another port", "port", port, "err", err)
	}
}

var errExitedEarly = errors.New("postgres exited during startup")

// portTaken reports whether a startup failure (which carries the log tail) was a lost port race.
func portTaken(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "could not bind") || strings.Contains(msg, "could not create any TCP/IP sockets") ||
		strings.Contains(msg, "Address already in use")
}

func (s *Server) start(ctx context.Context, port int, who account, timeout time.Duration) error {
	logPath := filepath.Join(s.dataDir, LogFile)
	rotateLog(logPath)
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("pglocal: open %s: %w", logPath, err)
	}
	defer logf.Close() // the child keeps its own descriptor
	if who.switchUser {
		_ = logf.Chown(int(who.uid), int(who.gid))
	}
	fmt.Fprintf(logf, "---- pglocal: starting postgres on 127.0.0.1:%d at %s\n", port, time.Now().Format(time.RFC3339))

	args := []string{"-D", s.dataDir, "-c", "port=" + strconv.Itoa(port)}
	socketDir := s.dataDir
	if len(socketDir)+len("/.s.PGSQL.")+len(strconv.Itoa(port)) > maxSocketPath {
		socketDir = "" // too long for a unix socket path: TCP only
	}
	args = append(args, "-c", "unix_socket_directories="+socketDir)
	for _, kv := range settings {
		args = append(args, "-c", kv)
	}
	cmd := exec.Command(filepath.Join(s.bin.dir, "postgres"), args...)
	cmd.Dir = s.dataDir
	cmd.Env = childEnv(who)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr(who)

	s.exited = make(chan struct{})
	started := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the thread that forked the child exits, not the
		// process: keep that thread alive (and to ourselves) for as long as postgres runs.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.exitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("pglocal: start postgres: %w", err)
	}
	s.proc = cmd.Process
	s.port = port

	if err := s.waitReady(ctx, timeout); err != nil {
		s.kill()
		return err
	}
	return nil
}

// waitReady polls with real connections until postgres answers.
func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastErr error
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("pglocal: %w (%v); last lines of %s:\n%s", errExitedEarly, s.exitErr, s.logPath(), s.logTail())
		default:
		}
		attemptCtx, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(attemptCtx, s.URL("postgres"))
		if err == nil {
			err = conn.Ping(attemptCtx)
			conn.Close(context.Background())
		}
		cancelAttempt()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("pglocal: postgres did not accept connections within %s (last error: %v); last lines of %s:\n%s",
				timeout, lastErr, s.logPath(), s.logTail())
		case <-s.exited:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// URL is a connection URL for database on this server.
func (s *Server) URL(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(Superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port is the TCP port the server listens on at 127.0.0.1.
func (s *Server) Port() int { return s.port }

// DataDir is the absolute path of the cluster.
func (s *Server) DataDir() string { return s.dataDir }

// Done is closed when postgres has exited, whether through Stop or not.
func (s *Server) Done() <-chan struct{} { return s.exited }

// CreateDatabase creates database name unless it exists.
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return fmt.Errorf("pglocal: connect: %w", err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("pglocal: look up database %q: %w", name, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: created meanwhile
		return nil
	}
	if err != nil {
		return fmt.Errorf("pglocal: create database %q: %w", name, err)
	}
	return nil
}

// PID is the postmaster's process id.
func (s *Server) PID() int { return s.proc.Pid }

// ShutdownMode is how Shutdown ends postgres, as `pg_ctl stop -m`.
type ShutdownMode int

const (
	// Fast ends every session, writes a checkpoint and exits (SIGINT).
	Fast ShutdownMode = iota
	// Immediate exits at once without a checkpoint, as after a crash: the next start runs crash
	// recovery from the WAL (SIGQUIT).
	Immediate
)

// Stop is Shutdown in Fast mode.
func (s *Server) Stop(ctx context.Context) error { return s.Shutdown(ctx, Fast) }

// Shutdown shuts postgres down in mode and waits for it to exit. When ctx ends first it escalates
// to an immediate shutdown and then SIGKILL. Calling Stop or Shutdown again returns the first
// result. Start on the same DataDir (and Port) brings the cluster back.
func (s *Server) Shutdown(ctx context.Context, mode ShutdownMode) error {
	select {
	case <-s.stopReq:
		<-s.stopped
		return s.stopErr
	default:
		close(s.stopReq)
	}
	defer close(s.stopped)
	select {
	case <-s.exited:
		if s.exitErr != nil {
			s.stopErr = fmt.Errorf("pglocal: postgres had already exited: %v; see %s", s.exitErr, s.logPath())
		}
		return s.stopErr
	default:
	}
	sig := syscall.SIGINT
	if mode == Immediate {
		sig = syscall.SIGQUIT
	}
	_ = s.proc.Signal(sig)
	select {
	case <-s.exited:
		if s.exitErr != nil && mode != Immediate { // an immediate shutdown exits with status 1
			s.stopErr = fmt.Errorf("pglocal: postgres exited with %v; see %s", s.exitErr, s.logPath())
		}
	case <-ctx.Done():
		s.kill()
		s.stopErr = fmt.Errorf("pglocal: fast shutdown did not finish: %w; postgres was killed", ctx.Err())
	}
	if s.stopErr == nil {
		s.log.Info("local PostgreSQL stopped", "dataDir", s.dataDir, "immediate", mode == Immediate)
	}
	return s.stopErr
}

// Signal sends sig to the postmaster and then to every process it has started (backends,
// checkpointer, WAL writer, …). PostgreSQL makes each child the leader of its own process group,
// so a signal to the postmaster's group would reach the postmaster alone. The children are
// listed after the postmaster got sig, so with SIGSTOP none is started in between: Signal(SIGSTOP)
// freezes the whole server (connections stay open and unanswered) and Signal(SIGCONT) thaws it.
// Linux only (it reads /proc).
func (s *Server) Signal(sig syscall.Signal) error {
	select {
	case <-s.exited:
		return errors.New("pglocal: postgres is not running")
	default:
	}
	if err := s.proc.Signal(sig); err != nil {
		return fmt.Errorf("pglocal: signal postmaster: %w", err)
	}
	children, err := childProcesses(s.proc.Pid)
	if err != nil {
		return fmt.Errorf("pglocal: list postgres processes: %w", err)
	}
	var errs []error
	for _, pid := range children {
		if err := syscall.Kill(pid, sig); err != nil && err != syscall.ESRCH {
			errs = append(errs, fmt.Errorf("pid %d: %w", pid, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("pglocal: signal postgres processes: %w", errors.Join(errs...))
	}
	return nil
}

// kill ends postgres quickly: immediate shutdown, then SIGKILL. Safe after exit.
func (s *Server) kill() {
	_ = s.proc.Signal(syscall.SIGQUIT)
	select {
	case <-s.exited:
		return
	case <-time.After(5 * time.Second):
	}
	_ = s.proc.Kill()
	<-s.exited
}

func (s *Server) logPath() string { return filepath.Join(s.dataDir, LogFile) }

func (s *Server) logTail() string { return tail(s.logPath(), 25) }

// tail returns the last n lines of a file (at most 8 KiB), or a note why it cannot.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	const maxBytes = 8 << 10
	if st, err := f.Stat(); err == nil && st.Size() > maxBytes {
		_, _ = f.Seek(st.Size()-maxBytes, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// rotateLog keeps postgres.log from growing without bound across restarts.
func rotateLog(path string) {
	if st, err := os.Stat(path); err == nil && st.Size() > 10<<20 {
		_ = os.Rename(path, path+".1")
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pglocal: pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ---- binaries

type binaries struct {
	dir     string // holds initdb and postgres
	major   int
	version string // postgres -V output
}

func debianRoot() string { return "/usr/lib/postgresql" }

// candidateDirs lists where to look, in order: PATH, pg_config --bindir, then Debian's
// /usr/lib/postgresql/<major>/bin from the highest major down.
func candidateDirs(ctx context.Context) []string {
	dirs := filepath.SplitList(os.Getenv("PATH"))
	if pgConfig, err := exec.LookPath("pg_config"); err == nil {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		out, err := exec.CommandContext(cctx, pgConfig, "--bindir").Output()
		cancel()
		if err == nil {
			dirs = append(dirs, strings.TrimSpace(string(out)))
		}
	}
	return append(dirs, debianBinDirs(debianRoot())...)
}

// debianBinDirs returns root/<major>/bin for every numeric major, highest first.
func debianBinDirs(root string) []string {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	type v struct {
		n    float64
		name string
	}
	var vs []v
	for _, e := range entries {
		if n, err := strconv.ParseFloat(e.Name(), 64); err == nil {
			vs = append(vs, v{n, e.Name()})
		}
	}
	slices.SortFunc(vs, func(a, b v) int {
		switch {
		case a.n > b.n:
			return -1
		case a.n < b.n:
			return 1
		}
		return 0
	})
	out := make([]string, 0, len(vs))
	for _, x := range vs {
		out = append(out, filepath.Join(root, x.name, "bin"))
	}
	return out
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// findBinaries returns the first directory holding both initdb and postgres; with wantMajor > 0
// (an existing cluster) only binaries of that major version qualify.
func findBinaries(ctx context.Context, override []string, wantMajor int) (binaries, error) {
	dirs := override
	where := "looked in PATH, pg_config --bindir, " + debianRoot() + "/*/bin"
	if override != nil {
		where = "looked in " + strings.Join(override, ", ")
	} else {
		dirs = candidateDirs(ctx)
	}
	seen := map[string]bool{}
	var others []string
	for _, dir := range dirs {
		if dir == "" || !isExecutable(filepath.Join(dir, "initdb")) || !isExecutable(filepath.Join(dir, "postgres")) {
			continue
		}
		real, err := filepath.EvalSymlinks(filepath.Join(dir, "postgres"))
		if err != nil || seen[real] {
			continue
		}
		seen[real] = true
		b, err := probeVersion(ctx, dir)
		if err != nil {
			others = append(others, fmt.Sprintf("%s (%v)", dir, err))
			continue
		}
		if wantMajor > 0 && b.major != wantMajor {
			others = append(others, fmt.Sprintf("%s (PostgreSQL %d)", dir, b.major))
			continue
		}
		return b, nil
	}
	if wantMajor > 0 && len(others) > 0 {
		return binaries{}, fmt.Errorf("%w for PostgreSQL %d, which initialised the data directory (found only: %s): install the Debian package \"postgresql-%d\" or use a new data directory",
			ErrNoBinaries, wantMajor, strings.Join(others, "; "), wantMajor)
	}
	return binaries{}, fmt.Errorf("%w (%s): install the Debian package \"postgresql\" (apt-get install postgresql) or pass --database-url",
		ErrNoBinaries, where)
}

func probeVersion(ctx context.Context, dir string) (binaries, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, filepath.Join(dir, "postgres"), "-V").Output()
	if err != nil {
		return binaries{}, fmt.Errorf("postgres -V: %w", err)
	}
	version := strings.TrimSpace(string(out))
	// "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"
	fields := strings.Fields(version)
	if len(fields) < 3 {
		return binaries{}, fmt.Errorf("unexpected postgres -V output %q", version)
	}
	major, err := strconv.Atoi(strings.SplitN(fields[2], ".", 2)[0])
	if err != nil {
		return binaries{}, fmt.Errorf("unexpected postgres -V output %q", version)
	}
	return binaries{dir: dir, major: major, version: version}, nil
}

// ---- the account postgres runs as

type account struct {
	name       string
	uid, gid   uint32
	switchUser bool // run children with these credentials (this process is root)
}

func runAsUser(name string) (account, error) {
	if os.Geteuid() != 0 {
		me := strconv.Itoa(os.Geteuid())
		if u, err := user.Current(); err == nil {
			me = u.Username
		}
		return account{name: me, uid: uint32(os.Geteuid()), gid: uint32(os.Getegid())}, nil
	}
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return account{}, fmt.Errorf("pglocal: running as root, and PostgreSQL refuses to run as root, so initdb and postgres must run as the unprivileged user %q, which does not exist (%v): create it (the Debian package \"postgresql\" does, or: useradd --system --home-dir /var/lib/postgresql %s), run as a non-root user, or pass --database-url", name, err, name)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return account{}, fmt.Errorf("pglocal: user %q has a non-numeric uid/gid %s/%s", name, u.Uid, u.Gid)
	}
	if uid == 0 {
		return account{}, fmt.Errorf("pglocal: user %q is root; PostgreSQL needs an unprivileged user", name)
	}
	return account{name: name, uid: uint32(uid), gid: uint32(gid), switchUser: true}, nil
}

func childEnv(who account) []string {
	env := make([]string, 0, len(os.Environ())+2)
	for _, kv := range os.Environ() {
		// PGDATA/PGPORT would only confuse; HOME of root is not readable by the server account.
		if strings.HasPrefix(kv, "PGDATA=") || strings.HasPrefix(kv, "PGPORT=") || (who.switchUser && strings.HasPrefix(kv, "HOME=")) {
			continue
		}
		env = append(env, kv)
	}
	if who.switchUser {
		if u, err := user.LookupId(strconv.Itoa(int(who.uid))); err == nil {
			env = append(env, "HOME="+u.HomeDir)
		}
	}
	return env
}

// canTraverse reports whether who may search directory st (owner, group or other x bit).
func canTraverse(st fs.FileInfo, who account) bool {
	perm := st.Mode().Perm()
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		switch {
		case sys.Uid == who.uid:
			return perm&0o100 != 0
		case sys.Gid == who.gid:
			return perm&0o010 != 0
		}
	}
	return perm&0o001 != 0
}

// prepareParents creates the data directory's parents and, when running as root, makes sure the
// server account can traverse them: existing directories that block it get o+x (search only,
// no listing), which is logged.
func prepareParents(dataDir string, who account, logger *slog.Logger) error {
	parent := filepath.Dir(dataDir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("pglocal: create %s: %w", parent, err)
	}
	if !who.switchUser {
		return nil
	}
	for dir := parent; ; dir = filepath.Dir(dir) {
		st, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("pglocal: %w", err)
		}
		if !canTraverse(st, who) {
			if err := os.Chmod(dir, st.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("pglocal: user %q cannot reach the data directory through %s and it cannot be opened up: %w", who.name, dir, err)
			}
			logger.Warn("granted search permission (o+x) so the PostgreSQL user can reach its data directory", "dir", dir, "user", who.name)
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

// ensureOwner gives an existing cluster to the server account when running as root.
func ensureOwner(dataDir string, who account, logger *slog.Logger) error {
	if !who.switchUser {
		return nil
	}
	st, err := os.Stat(dataDir)
	if err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid == who.uid {
		return nil
	}
	logger.Warn("changing the owner of the data directory to the PostgreSQL user", "dataDir", dataDir, "user", who.name)
	return chownTree(dataDir, who)
}

func chownTree(root string, who account) error {
	return filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(who.uid), int(who.gid))
	})
}

// ---- the cluster

// clusterVersion returns the major version in DataDir/PG_VERSION, 0 when DataDir is missing or
// empty, and an error when it holds something else.
func clusterVersion(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "PG_VERSION"))
	if err == nil {
		major, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return 0, fmt.Errorf("pglocal: %s/PG_VERSION is not a version: %q", dataDir, b)
		}
		return major, nil
	}
	entries, err := os.ReadDir(dataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("pglocal: read data dir: %w", err)
	}
	if len(entries) > 0 {
		return 0, fmt.Errorf("pglocal: data directory %s is not empty and holds no PostgreSQL cluster (no PG_VERSION): remove it or choose another directory", dataDir)
	}
	return 0, nil
}

// initCluster runs initdb. When DataDir does not exist yet it initialises a sibling directory and
// renames it into place, so an interrupted initdb never leaves a half-made cluster behind; an
// existing empty DataDir (say, a mounted volume) is initialised in place.
func initCluster(ctx context.Context, dataDir string, bin binaries, who account, logger *slog.Logger) error {
	target := dataDir
	_, statErr := os.Stat(dataDir)
	inPlace := statErr == nil
	if !inPlace {
		target = filepath.Join(filepath.Dir(dataDir), "."+filepath.Base(dataDir)+".initdb")
		if err := os.RemoveAll(target); err != nil {
			return fmt.Errorf("pglocal: remove leftover %s: %w", target, err)
		}
	}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return fmt.Errorf("pglocal: create %s: %w", target, err)
	}
	if who.switchUser {
		if err := os.Chown(target, int(who.uid), int(who.gid)); err != nil {
			return fmt.Errorf("pglocal: give %s to user %q: %w", target, who.name, err)
		}
	}
	logger.Info("initialising PostgreSQL data directory", "dataDir", dataDir, "version", bin.version, "user", who.name)
	var out bytes.Buffer
	cmd := exec.Command(filepath.Join(bin.dir, "initdb"),
		"-D", target, "--auth=trust", "--username="+Superuser, "--encoding=UTF8", "--locale=C")
	cmd.Dir = target
	cmd.Env = childEnv(who)
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = sysProcAttr(who)
	if err := runLocked(ctx, cmd); err != nil {
		if !inPlace {
			_ = os.RemoveAll(target)
		}
		return fmt.Errorf("pglocal: initdb failed: %w\n%s", err, strings.TrimSpace(out.String()))
	}
	if !inPlace {
		if err := os.Rename(target, dataDir); err != nil {
			_ = os.RemoveAll(target)
			return fmt.Errorf("pglocal: move initialised cluster into place: %w", err)
		}
	}
	// Keep initdb's report with the server's log.
	logPath := filepath.Join(dataDir, LogFile)
	if f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
		fmt.Fprintf(f, "---- pglocal: initdb at %s\n%s\n", time.Now().Format(time.RFC3339), out.String())
		if who.switchUser {
			_ = f.Chown(int(who.uid), int(who.gid))
		}
		f.Close()
	}
	return nil
}

// runLocked runs a short-lived child (initdb) from a locked OS thread, for the same parent-death
// reason as postgres, and kills it when ctx ends.
func runLocked(ctx context.Context, cmd *exec.Cmd) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			done <- err
			return
		}
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		select {
		case err := <-waited:
			done <- err
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGINT) // initdb cleans up on SIGINT
			select {
			case <-waited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-waited
			}
			done <- ctx.Err()
		}
	}()
	return <-done
}

// checkNoPostmaster refuses a data directory whose postmaster.pid names a live postgres. A
// postmaster that is shutting down (say, after its parent died: parent-death signal) gets a
// while to go away first. A pid file naming a dead or unrelated process is stale and removed.
func checkNoPostmaster(ctx context.Context, dataDir string) error {
	pidPath := filepath.Join(dataDir, "postmaster.pid")
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(pidPath)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("pglocal: read %s: %w", pidPath, err)
		}
		lines := strings.Split(string(b), "\n")
		pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
		if err != nil || pid <= 0 || !isPostgresProcess(pid) {
			_ = os.Remove(pidPath)
			return nil
		}
		// Line 8 is the postmaster's status: starting, stopping, ready or standby.
		stopping := len(lines) > 7 && strings.TrimSpace(lines[7]) == "stopping"
		if !stopping || time.Now().After(deadline) {
			port := "?"
			if len(lines) > 3 {
				port = strings.TrimSpace(lines[3])
			}
			return fmt.Errorf("pglocal: data directory %s is in use by a running PostgreSQL server (pid %d, port %s) that this process did not start; pglocal does not share a data directory: stop that server (kill -INT %d) or use another data directory",
				dataDir, pid, port, pid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
