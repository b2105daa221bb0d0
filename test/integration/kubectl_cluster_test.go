package integration

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// demoReport is a PolicyReport in namespace ns, as a newcomer would write it.
func demoReport(name, ns string) string {
	return `apiVersion: wgpolicyk8s.io/v1alpha2
kind: PolicyReport
metadata:
  name: ` + name + `
  namespace: ` + ns + `
scope: {apiVersion: v1, kind: Pod, name: web-0, namespace: ` + ns + `}
summary: {pass: 1, fail: 1}
results:
- {policy: require-labels, rule: check-team, result: pass, source: kyverno}
- {policy: disallow-latest-tag, rule: check-image, result: fail, source: kyverno}
`
}

// writeFile writes content to a new file in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantError runs kubectl, expecting it to fail with exactly the message want on stderr.
func (k *kubectl) wantError(t *testing.T, want string, args ...string) {
	t.Helper()
	out, err := k.run(t, args...)
	if err == nil {
		t.Errorf("kubectl %s succeeded, want %q:\n%s", strings.Join(args, " "), want, out)
		return
	}
	lines := strings.Split(err.Error(), "\n")
	if got := lines[len(lines)-1]; got != want {
		t.Errorf("kubectl %s: stderr %q, want %q", strings.Join(args, " "), got, want)
	}
}

// TestKubectlLikeACluster checks that the everyday kubectl commands of a newcomer work against
// the standalone server as against a cluster (issue 13), or fail with a message saying why.
// Messages are compared whole: they are what the user sees.
func TestKubectlLikeACluster(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := buildKubectl(t, dir)
	srv := startServer(t)
	k := &kubectl{bin: bin, kubeconfig: srv.Kubeconfig, home: dir}

	t.Run("NotFound names the object or the namespace", func(t *testing.T) {
		// kubectl asks for the namespace after a NotFound, and reports a missing namespace instead.
		k.wantError(t, `Error from server (NotFound): namespaces "nowhere" not found`, "get", "polr", "-n", "nowhere", "missing")
		k.wantError(t, `Error from server (NotFound): policyreports.wgpolicyk8s.io "missing" not found`, "get", "polr", "missing")
		k.mustRun(t, "create", "namespace", "empty")
		k.wantError(t, `Error from server (NotFound): policyreports.wgpolicyk8s.io "missing" not found`, "get", "polr", "-n", "empty", "missing")
	})

	t.Run("namespaces", func(t *testing.T) {
		if out := k.mustRun(t, "create", "namespace", "team-b"); strings.TrimSpace(out) != "namespace/team-b created" {
			t.Errorf("create namespace: %q", out)
		}
		k.wantError(t, `Error from server (AlreadyExists): namespaces "team-b" already exists`, "create", "namespace", "team-b")
		if out := k.mustRun(t, "get", "polr", "-n", "team-b"); out != "" {
			t.Errorf("get polr in a new namespace printed %q", out)
		}
		// A report's namespace exists from its first report on.
		k.applyStdin(t, demoReport("demo", "team-c"))
		out := k.mustRun(t, "get", "namespaces", "-o", "name")
		for _, ns := range []string{"namespace/default", "namespace/team-b", "namespace/team-c"} {
			if !strings.Contains(out, ns+"\n") {
				t.Errorf("kubectl get namespaces lacks %s:\n%s", ns, out)
			}
		}
		if out := k.mustRun(t, "get", "ns", "team-c", "--no-headers"); !strings.HasPrefix(out, "team-c") || !strings.Contains(out, "Active") {
			t.Errorf("get ns team-c: %q", out)
		}
		// Deleting a namespace deletes its reports, as the namespace controller does.
		if out := k.mustRun(t, "delete", "namespace", "team-c"); strings.TrimSpace(out) != `namespace "team-c" deleted` {
			t.Errorf("delete namespace: %q", out)
		}
		k.wantError(t, `Error from server (NotFound): namespaces "team-c" not found`, "get", "polr", "-n", "team-c", "demo")
		if out := k.mustRun(t, "get", "polr", "-A", "-o", "name"); strings.Contains(out, "demo") {
			t.Errorf("report outlived its namespace:\n%s", out)
		}
		k.wantError(t, `Error from server (Forbidden): namespaces "default" is forbidden: this namespace may not be deleted`,
			"delete", "namespace", "default")
		k.wantError(t, `Error from server (MethodNotAllowed): namespace "team-b" cannot be changed: the namespaces of a `+
			"standalone reports-server are names only (no labels, annotations or finalizers); create them with "+
			"`kubectl create namespace` or client-side `kubectl apply`, and delete them, but they cannot be updated, "+
			"patched or server-side applied", "label", "namespace", "team-b", "a=b")
		k.wantError(t, `Error from server (MethodNotAllowed): watch is not supported on resources of kind "namespaces"`,
			"get", "namespaces", "--watch")
	})

	t.Run("apply a List", func(t *testing.T) {
		k.applyStdin(t, demoReport("one", "lists")+"---\n"+demoReport("two", "lists"))
		list := k.mustRun(t, "get", "polr", "-n", "lists", "-o", "yaml")
		if !strings.HasPrefix(list, "apiVersion: v1\nitems:\n") || !strings.Contains(list, "kind: List\n") {
			t.Fatalf("kubectl get -o yaml did not write a List:\n%s", list)
		}
		k.mustRun(t, "delete", "polr", "--all", "-n", "lists")
		out := k.mustRun(t, "apply", "-f", writeFile(t, dir, "list.yaml", list, 0o600))
		want := "policyreport.wgpolicyk8s.io/one created\npolicyreport.wgpolicyk8s.io/two created\n"
		if out != want {
			t.Errorf("apply -f of a List: %q, want %q", out, want)
		}
	})

	t.Run("api-resources and categories", func(t *testing.T) {
		out := k.mustRun(t, "api-resources", "--api-group=")
		if !strings.Contains(out, "\nnamespaces ") || !strings.Contains(out, " ns ") {
			t.Errorf("api-resources of the core group lacks namespaces:\n%s", out)
		}
		// `get all` is the workload kinds of a cluster (pods, services, …); reports are in no
		// category "all", on a cluster as here, and kubectl says so.
		k.wantError(t, `error: the server doesn't have a resource type "all"`, "get", "all")
		// The CRDs' own categories work as on a cluster.
		k.mustRun(t, "get", "kyverno", "-A")
	})

	t.Run("label annotate wait diff edit", func(t *testing.T) {
		k.applyStdin(t, demoReport("demo", "default"))
		if out := k.mustRun(t, "label", "polr", "demo", "team=a"); strings.TrimSpace(out) != "policyreport.wgpolicyk8s.io/demo labeled" {
			t.Errorf("label: %q", out)
		}
		if out := k.mustRun(t, "annotate", "polr", "demo", "note=x"); strings.TrimSpace(out) != "policyreport.wgpolicyk8s.io/demo annotated" {
			t.Errorf("annotate: %q", out)
		}
		if out := k.mustRun(t, "wait", "--for=jsonpath={.metadata.labels.team}=a", "polr/demo", "--timeout=60s"); strings.TrimSpace(out) != "policyreport.wgpolicyk8s.io/demo condition met" {
			t.Errorf("wait: %q", out)
		}
		// diff exits 1 when there are differences, and prints them.
		changed := writeFile(t, dir, "changed.yaml", strings.Replace(demoReport("demo", "default"), "pass: 1", "pass: 2", 1), 0o600)
		out, err := k.run(t, "diff", "-f", changed)
		if exit := new(exec.ExitError); err == nil || !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, "+  pass: 2") {
			t.Errorf("diff: %v\n%s", err, out)
		}
		// edit with an editor script, as KUBE_EDITOR would run any editor.
		editor := writeFile(t, dir, "editor.sh", "#!/bin/sh\nsed -i 's/fail: 1/fail: 3/' \"$1\"\n", 0o700)
		out, err = k.runEnv(t, []string{"KUBE_EDITOR=" + editor}, "edit", "polr", "demo")
		if err != nil || strings.TrimSpace(out) != "policyreport.wgpolicyk8s.io/demo edited" {
			t.Errorf("edit: %v\n%s", err, out)
		}
		if got := k.mustRun(t, "get", "polr", "demo", "-o", "jsonpath={.summary.fail}"); got != "3" {
			t.Errorf("summary.fail after edit = %q, want 3", got)
		}
	})

	t.Run("get --watch", func(t *testing.T) {
		k.applyStdin(t, demoReport("watched", "watch"))
		w := k.start(t, "get", "polr", "-n", "watch", "--watch", "--output-watch-events", "--no-headers")
		w.waitFor(t, "ADDED", "watched")
		k.mustRun(t, "label", "polr", "watched", "-n", "watch", "seen=yes")
		w.waitFor(t, "MODIFIED", "watched")
		k.mustRun(t, "delete", "polr", "watched", "-n", "watch", "--wait=false")
		w.waitFor(t, "DELETED", "watched")
	})

	t.Run("delete --all and wait --for=delete", func(t *testing.T) {
		k.applyStdin(t, demoReport("a", "sweep")+"---\n"+demoReport("b", "sweep"))
		out := k.mustRun(t, "delete", "polr", "--all", "-n", "sweep")
		want := "policyreport.wgpolicyk8s.io \"a\" deleted from sweep namespace\npolicyreport.wgpolicyk8s.io \"b\" deleted from sweep namespace\n"
		if out != want {
			t.Errorf("delete --all: %q, want %q", out, want)
		}
		k.mustRun(t, "wait", "--for=delete", "polr/a", "-n", "sweep", "--timeout=60s")
		if out := k.mustRun(t, "get", "polr", "-n", "sweep", "-o", "name"); out != "" {
			t.Errorf("reports left after delete --all: %q", out)
		}
		// The namespace made on first use stays when its last report goes.
		k.wantError(t, `Error from server (NotFound): policyreports.wgpolicyk8s.io "a" not found`, "get", "polr", "-n", "sweep", "a")
	})
}

// applyStdin runs `kubectl apply -f -` with manifest on standard input.
func (k *kubectl) applyStdin(t *testing.T, manifest string) {
	t.Helper()
	cmd := k.command("apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
}

// runEnv is run with extra environment variables.
func (k *kubectl) runEnv(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := k.command(args...)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (k *kubectl) command(args ...string) *exec.Cmd {
	cmd := exec.Command(k.bin, append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+k.home, "KUBECONFIG=")
	return cmd
}

// running is a kubectl that keeps running (a watch), read line by line.
type running struct {
	lines *bufio.Scanner
	seen  []string
}

// start runs kubectl in the background until the test ends.
func (k *kubectl) start(t *testing.T, args ...string) *running {
	t.Helper()
	cmd := k.command(args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return &running{lines: bufio.NewScanner(stdout)}
}

// waitFor reads lines until one starts with event and names name. The watch prints every change,
// so the line comes or kubectl ends (a failure); no clock is involved.
func (r *running) waitFor(t *testing.T, event, name string) {
	t.Helper()
	for r.lines.Scan() {
		line := r.lines.Text()
		r.seen = append(r.seen, line)
		if f := strings.Fields(line); len(f) >= 2 && f[0] == event && f[1] == name {
			return
		}
	}
	t.Fatalf("kubectl --watch ended before a %s event for %s; printed:\n%s", event, name, strings.Join(r.seen, "\n"))
}
