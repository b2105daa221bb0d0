package cluster

// The cluster's network namespace.
//
// Test traffic may go to loopback and to addresses inside network namespaces the test run made
// itself, nowhere else: not to the machine's own interface addresses, not to any private range.
// Yet kube-apiserver must reach reports-server at a non-loopback address, because it dials the
// addresses of the Service's EndpointSlices (--enable-aggregator-routing, there is no kube-proxy)
// and EndpointSlice validation refuses loopback ones.
//
// So the whole cluster runs in a network namespace of its own. The e2e test binary starts in the
// machine's namespace, builds everything that needs the package registries (cluster binaries,
// reports-server, render-chart), then runs itself again in a new network namespace
// (CLONE_NEWNET) and waits for it. That second process brings up the namespace's own lo, gives it
// a second address, NodeIP, and runs the tests: etcd, kube-apiserver, kube-controller-manager,
// the reports-server replicas and the test's clients all live there, and NodeIP exists nowhere
// else. PostgreSQL is reached through its Unix socket, which crosses network namespaces, or is a
// private throw-away server started inside the namespace (internal/db/dbtest).
//
// This file is the only place test code assigns an address (hack/check-test-network.sh).

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// NodeIP is reports-server's address inside the namespace: a second address of the namespace's
// own lo (EndpointSlice validation checks the address, not the interface; the kernels of these
// machines have no dummy interfaces). It exists only inside the namespace.
const NodeIP = "10.255.0.1"

// namespaceEnv carries a Namespace, as JSON, into the test binary run inside the namespace.
const namespaceEnv = "REPORTS_E2E_NETNS"

// Namespace describes, to the test binary running inside it, the namespace it runs in and what
// the process outside prepared.
type Namespace struct {
	// OriginalNetNS is the link /proc/self/ns/net of the process that created the namespace
	// ("net:[inode]"), i.e. the machine's namespace.
	OriginalNetNS string
	// OutsidePID is that process: its /proc entry names the machine's namespace.
	OutsidePID int
	// HostAddrs are the machine's interface addresses before the namespace was made, as
	// hostAddresses lists them.
	HostAddrs []string
	// Binaries were built outside, where the package registries can be reached.
	Binaries *Binaries
}

// CurrentNamespace returns the Namespace this process runs in, or nil when it is the test binary
// outside, which must call RunInNamespace.
func CurrentNamespace() (*Namespace, error) {
	v := os.Getenv(namespaceEnv)
	if v == "" {
		return nil, nil
	}
	ns := &Namespace{}
	if err := json.Unmarshal([]byte(v), ns); err != nil {
		return nil, fmt.Errorf("decode %s: %w", namespaceEnv, err)
	}
	if ns.Binaries == nil {
		return nil, fmt.Errorf("%s names no binaries", namespaceEnv)
	}
	return ns, nil
}

// Prepare builds what the tests need while the package registries can be reached. The returned
// cleanup runs after the tests.
type Prepare func(ctx context.Context) (bins *Binaries, cleanup func(), err error)

// RunInNamespace is TestMain outside the namespace: it prepares, runs this test binary again with
// the same arguments in a new network namespace, and returns its exit status. It fails, naming
// what is missing, when the namespace cannot be created; it never runs the tests on the
// machine's own network.
func RunInNamespace(prepare Prepare) int {
	flag.Parse()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "e2e: "+format+"\n", args...) }
	original, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		logf("cannot read this process's network namespace: %v", err)
		return 1
	}
	before, err := hostAddresses(nil)
	if err != nil {
		logf("%v", err)
		return 1
	}

	// go test gives the binary -test.timeout, but outside m.Run nothing enforces it: the build
	// gets most of it, the tests what remains.
	timeout := testTimeout()
	ctx, cancel := context.WithTimeout(context.Background(), timeout-time.Minute)
	start := time.Now()
	bins, cleanup, err := prepare(ctx)
	cancel()
	if err != nil {
		logf("prepare: %v", err)
		return 1
	}
	defer cleanup()

	ns := Namespace{OriginalNetNS: original, OutsidePID: os.Getpid(), HostAddrs: before, Binaries: bins}
	encoded, err := json.Marshal(ns)
	if err != nil {
		logf("encode namespace: %v", err)
		return 1
	}
	env := append(namespaceDatabaseEnv(logf), namespaceEnv+"="+string(encoded))
	cmd := exec.Command(os.Args[0], childArgs(os.Args[1:], timeout-time.Since(start))...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf("cannot run the tests in a network namespace of their own: %v.\n"+
			"The end-to-end cluster must not use this machine's addresses, so the harness creates a network "+
			"namespace (CLONE_NEWNET) for it, which needs root or CAP_SYS_ADMIN with CAP_NET_ADMIN (in a container: "+
			"--privileged or those capabilities). Run make e2e as root.", err)
		return 1
	}
	// Ctrl-C and go test's own kill reach the child too, so it stops its cluster.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		for s := range signals {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	signal.Stop(signals)
	code := 0
	if err != nil {
		code = 1
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() > 0 {
			code = exit.ExitCode()
		}
	}
	after, err := hostAddresses(nil)
	if err != nil {
		logf("%v", err)
		return 1
	}
	if !slices.Equal(before, after) {
		logf("FAIL: the machine's interface addresses changed during the run:\nbefore: %s\nafter:  %s",
			strings.Join(before, " "), strings.Join(after, " "))
		return 1
	}
	return code
}

// SetUp configures the namespace from inside: lo up, NodeIP on it. It refuses to run in the
// machine's own namespace.
func (ns *Namespace) SetUp() error {
	current, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("read this process's network namespace: %w", err)
	}
	if current == ns.OriginalNetNS {
		return fmt.Errorf("still in the machine's network namespace %s: refusing to add %s", current, NodeIP)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("the ip command is missing (Debian package iproute2): the harness configures its network namespace with it")
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", NodeIP + "/32", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s in the test's network namespace: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// HostAddresses lists the machine's interface addresses now, read from inside the namespace
// (through the namespace of the process outside, with nsenter). Reading them sends nothing.
func (ns *Namespace) HostAddresses() ([]string, error) {
	return hostAddresses([]string{"nsenter", "--net=/proc/" + strconv.Itoa(ns.OutsidePID) + "/ns/net", "--"})
}

// hostAddresses lists "interface address/prefix" for every address of the namespace the command
// runs in, sorted.
func hostAddresses(prefix []string) ([]string, error) {
	args := append(slices.Clone(prefix), "ip", "-o", "addr", "show")
	out, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		return nil, fmt.Errorf("list interface addresses (%s): %w", strings.Join(args, " "), err)
	}
	var addrs []string
	for _, line := range strings.Split(string(out), "\n") {
		// "2: eth0    inet 192.0.2.7/24 brd … scope global eth0\       valid_lft …"
		f := strings.Fields(line)
		if len(f) >= 4 {
			addrs = append(addrs, f[1]+" "+f[3])
		}
	}
	slices.Sort(addrs)
	return addrs, nil
}

// NetNS returns the network namespace of process pid ("net:[inode]").
func NetNS(pid int) (string, error) {
	return os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
}

// socketDir is where Debian's PostgreSQL has its Unix socket.
const socketDir = "/var/run/postgresql"

// namespaceDatabaseEnv is the environment of the test binary inside the namespace. The
// database must be reachable from there without a host address: a DATABASE_URL over TCP is
// dropped (inside the namespace, 127.0.0.1 is the namespace's own), and the local server is
// probed through its Unix socket; failing both, dbtest starts a private server inside.
func namespaceDatabaseEnv(logf func(string, ...any)) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if k == "DATABASE_URL" && v != "" {
			if cfg, err := pgconn.ParseConfig(v); err != nil || !strings.HasPrefix(cfg.Host, "/") {
				logf("DATABASE_URL is not a Unix-socket URL (host=/path), which the cluster's network namespace cannot " +
					"reach: ignored for the end-to-end tests")
				continue
			}
		}
		env = append(env, kv)
	}
	if os.Getenv("REPORTS_TEST_LOCAL_PG") == "" {
		if _, err := os.Stat(socketDir + "/.s.PGSQL.5432"); err == nil {
			env = append(env, "REPORTS_TEST_LOCAL_PG=postgres://postgres@/postgres?host="+socketDir+"&sslmode=disable")
		} else {
			env = append(env, "REPORTS_TEST_LOCAL_PG=off")
		}
	}
	return env
}

// testTimeout is go test's -timeout as the binary got it, or an hour.
func testTimeout() time.Duration {
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 0 {
			return d
		}
	}
	return time.Hour
}

// childArgs are the arguments of the test binary inside the namespace: the same, with
// -test.timeout lowered to what is left.
func childArgs(args []string, left time.Duration) []string {
	out := make([]string, 0, len(args)+1)
	for _, a := range args {
		if strings.HasPrefix(a, "-test.timeout=") {
			continue
		}
		out = append(out, a)
	}
	if left < time.Minute {
		left = time.Minute
	}
	return append(out, "-test.timeout="+left.Round(time.Second).String())
}
