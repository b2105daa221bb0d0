package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Binaries are the executables the harness runs.
type Binaries struct {
	Etcd, KubeAPIServer, KubeControllerManager, Kubectl string
	// ReportsServer is built from the checkout on every run (cheap with the Go build cache), so
	// the tests always run the code under test.
	ReportsServer string
	// Extra are binaries other test modules build outside the namespace and run inside it with
	// StartProcess (test/ecosystem: Kyverno's controllers), by a name of their choosing. Build
	// leaves it empty.
	Extra map[string]string `json:",omitempty"`
	// Helm is the helm command, helm.sh/helm/v4/cmd/helm at the version test/deploy's go.mod
	// pins (a tool directive there: Helm stays out of this module), built by `go tool`, which
	// keeps the linked binary in the Go build cache.
	Helm string
}

// tool is an executable built from a package of the e2e module's build list and cached.
type tool struct {
	name, pkg string
	dst       *string
}

// CacheEnv overrides where built cluster binaries are cached.
const CacheEnv = "REPORTS_E2E_CACHE"

// CacheDir is $REPORTS_E2E_CACHE, else reports-server-e2e in the user's cache directory
// ($XDG_CACHE_HOME or ~/.cache on Linux). Other test modules cache their builds there too.
func CacheDir() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return filepath.Abs(d)
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for the cluster binaries (set %s): %w", CacheEnv, err)
	}
	return filepath.Join(d, "reports-server-e2e"), nil
}

// BuildOptions say where the sources are and where per-run binaries go.
type BuildOptions struct {
	// ModuleDir is test/e2e: its go.mod pins kube-apiserver, kube-controller-manager, etcd and
	// kubectl.
	ModuleDir string
	// RepoRoot is the reports-server checkout.
	RepoRoot string
	// OutDir receives reports-server and render-chart.
	OutDir string
	Logf   func(format string, args ...any)
}

// Build returns the cluster binaries, building the cached ones if the cache has no build for the
// current go.mod, go.sum, Go version and sources of the small mains, and reports-server always.
//
// A cold build of kube-apiserver takes minutes; the cache makes every later run skip it (the Go
// build cache would skip compiling, but not linking, which alone takes about a minute for the
// three Kubernetes binaries).
func Build(ctx context.Context, o BuildOptions) (*Binaries, error) {
	goBin, err := goCommand()
	if err != nil {
		return nil, err
	}
	b := &Binaries{}
	kubeVersion, err := goOutput(ctx, goBin, o.ModuleDir, "list", "-m", "-f", "{{.Version}}", "k8s.io/kubernetes")
	if err != nil {
		return nil, err
	}
	ldflags, err := versionLDFlags(kubeVersion)
	if err != nil {
		return nil, err
	}
	tools := []tool{
		{"etcd", "github.com/reports-server/reports-server/test/e2e/cmd/etcd", &b.Etcd},
		{"kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver", &b.KubeAPIServer},
		{"kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager", &b.KubeControllerManager},
		{"kubectl", "github.com/reports-server/reports-server/hack/tools/kubectl", &b.Kubectl},
	}
	goVersion, err := goOutput(ctx, goBin, o.ModuleDir, "env", "GOVERSION")
	if err != nil {
		return nil, err
	}
	key, err := cacheKey(o, goVersion, ldflags, tools)
	if err != nil {
		return nil, err
	}
	root, err := CacheDir()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, key)
	if err := buildCached(ctx, goBin, o, root, dir, ldflags, tools); err != nil {
		return nil, err
	}
	for _, t := range tools {
		*t.dst = filepath.Join(dir, t.name)
	}

	start := time.Now()
	b.ReportsServer = filepath.Join(o.OutDir, "reports-server")
	if out, err := goCmd(ctx, goBin, o.RepoRoot, "build", "-o", b.ReportsServer, "./cmd/reports-server").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build ./cmd/reports-server in %s: %w\n%s", o.RepoRoot, err, out)
	}
	o.Logf("built reports-server in %s", time.Since(start).Round(time.Millisecond))
	if b.Helm, err = helmTool(ctx, goBin, filepath.Join(o.RepoRoot, "test", "deploy"), o.Logf); err != nil {
		return nil, err
	}
	return b, nil
}

// helmTool builds the helm tool of the module in dir and returns the path of the cached
// executable. `go tool helm` builds and caches it; `go tool -n helm` then prints the cached
// path instead of running it (on the run that builds, it would name a temporary directory).
func helmTool(ctx context.Context, goBin, dir string, logf func(string, ...any)) (string, error) {
	start := time.Now()
	version, err := goOutput(ctx, goBin, dir, "tool", "helm", "version", "--template", "{{.Version}}")
	if err != nil {
		return "", fmt.Errorf("build helm: %w", err)
	}
	cmdline, err := goOutput(ctx, goBin, dir, "tool", "-n", "helm")
	if err != nil {
		return "", err
	}
	fields := strings.Fields(cmdline)
	if len(fields) == 0 {
		return "", errors.New("go tool -n helm printed nothing")
	}
	path := fields[0]
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("go tool -n helm names %s: %w", path, err)
	}
	logf("helm %s ready after %s", version, time.Since(start).Round(time.Millisecond))
	return path, nil
}

// versionLDFlags stamps the Kubernetes binaries with their module version, as the release build
// does; without it they call themselves v0.0.0-master.
func versionLDFlags(version string) (string, error) {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 {
		return "", fmt.Errorf("unexpected k8s.io/kubernetes version %q", version)
	}
	const pkg = "k8s.io/component-base/version"
	return fmt.Sprintf("-X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s -X %s.gitTreeState=clean",
		pkg, version, pkg, parts[0], pkg, parts[1], pkg), nil
}

// cacheKey hashes everything the cached binaries are built from: the module's go.mod and go.sum
// (versions and replacements), the Go version, the target platform, the link flags, the package
// list and the sources of the small mains (which live in this repository, not in the module cache).
func cacheKey(o BuildOptions, goVersion, ldflags string, tools []tool) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s/%s\x00%s\x00", goVersion, runtime.GOOS, runtime.GOARCH, ldflags)
	for _, t := range tools {
		fmt.Fprintf(h, "%s=%s\x00", t.name, t.pkg)
	}
	for _, f := range []string{
		filepath.Join(o.ModuleDir, "go.mod"),
		filepath.Join(o.ModuleDir, "go.sum"),
		filepath.Join(o.ModuleDir, "cmd", "etcd", "main.go"),
		filepath.Join(o.RepoRoot, "hack", "tools", "kubectl", "main.go"),
	} {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("hash build inputs: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.Base(f), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// complete marks a cache directory whose binaries were all built and moved in.
const complete = ".complete"

// buildCached fills dir unless it is complete. An exclusive lock on a file beside it makes
// concurrent test runs build once and the others wait.
func buildCached(ctx context.Context, goBin string, o BuildOptions, root, dir, ldflags string, tools []tool) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("create cache %s: %w", root, err)
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("open build lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	if _, err := os.Stat(filepath.Join(dir, complete)); err == nil {
		now := time.Now()
		_ = os.Chtimes(dir, now, now) // in use: keep it from pruning
		o.Logf("using cached cluster binaries in %s", dir)
		return nil
	}
	pruneCache(root, dir, o.Logf)

	tmp, err := os.MkdirTemp(root, "build-")
	if err != nil {
		return fmt.Errorf("create build directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	pkgs := make([]string, 0, len(tools))
	for _, t := range tools {
		pkgs = append(pkgs, t.pkg)
	}
	o.Logf("building cluster binaries into %s (a cold build of kube-apiserver takes about 12 minutes on 2 cores)", dir)
	start := time.Now()
	args := append([]string{"build", "-ldflags", ldflags, "-o", tmp + string(filepath.Separator)}, pkgs...)
	if out, err := goCmd(ctx, goBin, o.ModuleDir, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("go %s in %s: %w\n%s", strings.Join(args, " "), o.ModuleDir, err, out)
	}
	_ = os.RemoveAll(dir) // an incomplete earlier attempt
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	for _, t := range tools {
		// go build -o dir/ names each binary after the last element of its import path.
		src := filepath.Join(tmp, filepath.Base(t.pkg))
		if err := os.Rename(src, filepath.Join(dir, t.name)); err != nil {
			return fmt.Errorf("move %s into the cache: %w", t.name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, complete), []byte(time.Now().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return fmt.Errorf("mark %s complete: %w", dir, err)
	}
	o.Logf("built cluster binaries in %s", time.Since(start).Round(time.Second))
	return nil
}

// pruneCache removes builds for other inputs that have not been used for a week, so bumping
// versions does not pile up gigabytes of binaries.
func pruneCache(root, keep string, logf func(string, ...any)) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		path := filepath.Join(root, e.Name())
		if path == keep || path == keep+".lock" {
			continue
		}
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < 7*24*time.Hour {
			continue
		}
		if err := os.RemoveAll(path); err == nil {
			logf("pruned unused cache entry %s", path)
		}
	}
}

// goCommand is the go command that runs the tests, else the one on $PATH.
func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("no go command on $PATH or in GOROOT: the harness builds the cluster binaries with it")
	}
	return p, nil
}

func goCmd(ctx context.Context, goBin, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	// A go.work above the checkout must not change what is built.
	cmd.Env = append(os.Environ(), "GOWORK=off")
	return cmd
}

func goOutput(ctx context.Context, goBin, dir string, args ...string) (string, error) {
	cmd := goCmd(ctx, goBin, dir, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}
