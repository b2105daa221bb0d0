// Package kyverno builds Kyverno's controllers from their Go module and runs them, out of
// cluster, against the end-to-end cluster of test/e2e/cluster, with reports-server serving the
// report APIs in place of Kyverno's report CRDs.
package kyverno

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// Version is the Kyverno release under test.
const Version = "v1.19.1"

// module is Kyverno's Go module; its main packages are the controllers.
const module = "github.com/kyverno/kyverno"

// Binaries are Kyverno's controllers, and the module directory they were built from (its
// config/crds holds the CRDs the controllers need).
type Binaries struct {
	// ReportsController is cmd/reports-controller: background scans and the aggregation of
	// ephemeral reports into PolicyReports.
	ReportsController string
	// AdmissionController is cmd/kyverno: the webhooks, which write admission reports.
	AdmissionController string
	// Chainsaw is Kyverno's end-to-end test runner (ChainsawVersion), which runs the module's
	// own report tests (ChainsawReportTests); empty unless Build was asked for it.
	Chainsaw string
	// ModuleDir is the module's directory in the module cache (read-only).
	ModuleDir string
}

// Names of the binaries in cluster.Binaries.Extra, which carries them into the network namespace.
const (
	extraReportsController   = "kyverno-reports-controller"
	extraAdmissionController = "kyverno-admission-controller"
	extraChainsaw            = "chainsaw"
	extraModuleDir           = "kyverno-module-dir"
)

// Put records b in extra (cluster.Binaries.Extra).
func (b *Binaries) Put(extra map[string]string) {
	extra[extraReportsController] = b.ReportsController
	extra[extraAdmissionController] = b.AdmissionController
	extra[extraChainsaw] = b.Chainsaw
	extra[extraModuleDir] = b.ModuleDir
}

// FromExtra is the inverse of Put.
func FromExtra(extra map[string]string) (*Binaries, error) {
	b := &Binaries{
		ReportsController:   extra[extraReportsController],
		AdmissionController: extra[extraAdmissionController],
		Chainsaw:            extra[extraChainsaw],
		ModuleDir:           extra[extraModuleDir],
	}
	if b.ReportsController == "" || b.AdmissionController == "" || b.ModuleDir == "" {
		return nil, fmt.Errorf("the namespace's binaries name no Kyverno build (%v)", extra)
	}
	return b, nil
}

// Build downloads Kyverno's module at Version and builds its controllers inside the module's own
// directory, so that Kyverno's go.mod alone decides its dependencies. It runs outside the
// network namespace (the module proxy is unreachable inside). The binaries are cached beside the
// cluster's (cluster.CacheDir), keyed by Kyverno's version, the Go version and the platform: a
// cold build takes 15 minutes or more on 2 cores, a cached one nothing. With withChainsaw,
// chainsaw is built the same way, from its own module (buildChainsaw).
func Build(ctx context.Context, withChainsaw bool, logf func(string, ...any)) (*Binaries, error) {
	moduleDir, err := download(ctx, module, Version)
	if err != nil {
		return nil, err
	}
	// As Kyverno's Makefile builds its images: static, stripped, the version stamped in.
	dir, err := buildCached(ctx, build{
		what: "Kyverno " + Version + " (reports-controller, kyverno)", cacheName: "kyverno-" + Version, moduleDir: moduleDir,
		args: []string{"-ldflags", "-s -w -X " + module + "/pkg/version.BuildVersion=" + Version, "./cmd/reports-controller", "./cmd/kyverno"},
		note: "a cold build takes 15 minutes or more on 2 cores",
	}, logf)
	if err != nil {
		return nil, err
	}
	var chainsaw string
	if withChainsaw {
		if chainsaw, err = buildChainsaw(ctx, logf); err != nil {
			return nil, err
		}
	}
	return &Binaries{
		ReportsController:   filepath.Join(dir, "reports-controller"),
		AdmissionController: filepath.Join(dir, "kyverno"),
		Chainsaw:            chainsaw,
		ModuleDir:           moduleDir,
	}, nil
}

// download fetches the module into the module cache and returns its directory.
func download(ctx context.Context, module, version string) (string, error) {
	out, err := goOutput(ctx, os.TempDir(), "mod", "download", "-json", module+"@"+version)
	if err != nil {
		return "", err
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return "", fmt.Errorf("decode go mod download output: %w", err)
	}
	if m.Error != "" || m.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %s", module, version, m.Error)
	}
	return m.Dir, nil
}

// build is a go build of main packages inside a module's own directory, so that the module's
// go.mod alone decides its dependencies.
type build struct {
	// what names the build in the log; note says what to expect of a cold build.
	what, note string
	// cacheName keys the cache entry, with the Go version and the platform added.
	cacheName string
	moduleDir string
	// args follow "go build -o <dir>/": flags, then packages.
	args []string
	// shims, when set, are files (path in the module: content) added to a writable copy of the
	// module, which is then built instead: what a release needs to build with this Go.
	shims map[string]string
}

// complete marks a cache directory whose binaries were all built and moved in.
const complete = ".complete"

// buildCached returns the cache directory of b, built unless complete; a lock beside it makes
// concurrent runs build once. The cache lives beside the cluster's (cluster.CacheDir).
func buildCached(ctx context.Context, b build, logf func(string, ...any)) (string, error) {
	goVersion, err := goOutput(ctx, os.TempDir(), "env", "GOVERSION")
	if err != nil {
		return "", err
	}
	root, err := cluster.CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, fmt.Sprintf("%s-%s-%s-%s", b.cacheName, goVersion, runtime.GOOS, runtime.GOARCH))
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("create cache %s: %w", root, err)
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("open build lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(filepath.Join(dir, complete)); err == nil {
		// In use: the cluster harness prunes cache entries untouched for a week.
		now := time.Now()
		_ = os.Chtimes(dir, now, now)
		logf("using cached %s binaries in %s", b.what, dir)
		return dir, nil
	}

	tmp, err := os.MkdirTemp(root, b.cacheName+"-build-")
	if err != nil {
		return "", fmt.Errorf("create build directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	logf("building %s into %s: %s", b.what, dir, b.note)
	start := time.Now()
	src := b.moduleDir
	if len(b.shims) > 0 {
		if src, err = shimmedCopy(ctx, b, tmp); err != nil {
			return "", err
		}
	}
	out := filepath.Join(tmp, "bin")
	args := append([]string{"build", "-o", out + string(filepath.Separator)}, b.args...)
	cmd := goCmd(ctx, src, args...)
	cmd.Env = append(cmd.Env, "CGO_ENABLED=0", "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s in %s: %w\n%s", strings.Join(args, " "), b.moduleDir, err, out)
	}
	_ = os.RemoveAll(dir) // an incomplete earlier attempt
	if err := os.Rename(out, dir); err != nil {
		return "", fmt.Errorf("move the build of %s into the cache: %w", b.what, err)
	}
	if err := os.WriteFile(filepath.Join(dir, complete), []byte(time.Now().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("mark %s complete: %w", dir, err)
	}
	logf("built %s in %s", b.what, time.Since(start).Round(time.Second))
	return dir, nil
}

// shimmedCopy copies b's module (read-only in the module cache) into tmp/src, writable, adds
// b.shims and returns the copy's directory.
func shimmedCopy(ctx context.Context, b build, tmp string) (string, error) {
	src := filepath.Join(tmp, "src")
	if out, err := exec.CommandContext(ctx, "cp", "-r", b.moduleDir, src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copy %s: %w\n%s", b.moduleDir, err, out)
	}
	if out, err := exec.CommandContext(ctx, "chmod", "-R", "u+w", src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("make %s writable: %w\n%s", src, err, out)
	}
	for name, content := range b.shims {
		if err := os.WriteFile(filepath.Join(src, filepath.FromSlash(name)), []byte(content), 0o644); err != nil {
			return "", fmt.Errorf("add %s to the copy of %s: %w", name, b.what, err)
		}
	}
	return src, nil
}

func goCmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	// A go.work above must not change what is built.
	cmd.Env = append(os.Environ(), "GOWORK=off")
	return cmd
}

func goOutput(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := goCmd(ctx, dir, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}
