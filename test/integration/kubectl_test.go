package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/reports-server/reports-server/internal/apis/reports"
)

// buildKubectl builds hack/tools/kubectl (kubectl of the k8s.io/kubectl version pinned in go.mod)
// into dir. With a warm build cache this only links.
func buildKubectl(t *testing.T, dir string) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "kubectl")
	cmd := exec.Command("go", "build", "-o", bin, "./hack/tools/kubectl")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build kubectl: %v\n%s", err, out)
	}
	return bin
}

// kubectl runs kubectl against one server, with its own HOME so discovery caches stay per test.
type kubectl struct {
	bin        string
	kubeconfig string
	home       string
}

func (k *kubectl) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(k.bin, append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+k.home, "KUBECONFIG=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = errors.Join(err, errors.New(strings.TrimSpace(stderr.String())))
	}
	return stdout.String(), err
}

func (k *kubectl) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := k.run(t, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestKubectl drives the standalone server with the upstream kubectl through the kubeconfig the
// server wrote: discovery with short names, printer columns, explain from the OpenAPI v3
// documents, and apply/get/delete of the sample reports of real producers, which must come back
// unchanged.
func TestKubectl(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	testdata := filepath.Join(root, "..", "shared", "testdata")
	samples, _ := filepath.Glob(filepath.Join(testdata, "*.yaml"))
	jsonSamples, _ := filepath.Glob(filepath.Join(testdata, "*.json"))
	samples = append(samples, jsonSamples...)
	sort.Strings(samples)

	dir := t.TempDir()
	bin := buildKubectl(t, dir)
	srv := startServer(t)
	k := &kubectl{bin: bin, kubeconfig: srv.Kubeconfig, home: dir}

	t.Run("api-resources", func(t *testing.T) {
		out := k.mustRun(t, "api-resources")
		rows := map[string][]string{}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				rows[f[0]] = f
			}
		}
		for _, kind := range reports.All() {
			row := rows[kind.Resource]
			want := []string{kind.Resource, strings.Join(kind.ShortNames, ","), kind.GroupVersion.String(),
				map[bool]string{true: "true", false: "false"}[kind.Namespaced], kind.Kind}
			if !slices.Equal(row, want) {
				t.Errorf("api-resources row %v, want %v", row, want)
			}
		}
	})

	t.Run("explain", func(t *testing.T) {
		out := k.mustRun(t, "explain", "polr.results")
		for _, want := range []string{"KIND:       PolicyReport", "FIELD: results", "policy\t<string> -required-", "result\t<string>"} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl explain polr.results lacks %q:\n%s", want, out)
			}
		}
	})

	if len(samples) == 0 {
		t.Skipf("no sample reports in %s (shared/testdata beside the repository): apply tests skipped", testdata)
	}

	t.Run("apply", func(t *testing.T) {
		for _, file := range samples {
			k.mustRun(t, "apply", "-f", file)
			for _, doc := range readDocuments(t, file) {
				checkRoundTrip(t, k, file, doc)
			}
		}
	})

	t.Run("get printer columns", func(t *testing.T) {
		out := k.mustRun(t, "get", "polr", "-A")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		header := strings.Fields(lines[0])
		want := []string{"NAMESPACE", "NAME", "KIND", "NAME", "PASS", "FAIL", "WARN", "ERROR", "SKIP", "AGE"}
		if !slices.Equal(header, want) {
			t.Errorf("kubectl get polr -A header %v, want %v", header, want)
		}
		// kyverno-reports-1.yaml: default/test-1 scoped to Pod test-pod, pass 1.
		var found bool
		for _, line := range lines[1:] {
			f := strings.Fields(line)
			if len(f) == 10 && f[0] == "default" && f[1] == "test-1" {
				found = true
				if got := f[2:9]; !slices.Equal(got, []string{"Pod", "test-pod", "1", "0", "0", "0", "0"}) {
					t.Errorf("test-1 row %v", f)
				}
			}
		}
		if !found && slices.Contains(samples, filepath.Join(testdata, "kyverno-reports-1.yaml")) {
			t.Errorf("kubectl get polr -A has no row for default/test-1:\n%s", out)
		}
	})

	t.Run("delete", func(t *testing.T) {
		for _, file := range samples {
			// Two Kyverno samples share test-2: whichever file comes second finds it gone.
			k.mustRun(t, "delete", "-f", file, "--wait=false", "--ignore-not-found")
			for _, doc := range readDocuments(t, file) {
				args := append([]string{"get"}, objectArgs(t, doc)...)
				if out, err := k.run(t, args...); err == nil || !strings.Contains(err.Error(), "NotFound") {
					t.Errorf("%s: kubectl %v after delete: %v\n%s", filepath.Base(file), args, err, out)
				}
			}
		}
	})
}

// readDocuments returns the objects of a YAML (possibly multi-document) or JSON file, in JSON form.
func readDocuments(t *testing.T, file string) []map[string]any {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	var docs []map[string]any
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			return docs
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if doc != nil {
			docs = append(docs, normalize(t, doc))
		}
	}
}

// normalize gives values the types encoding/json produces, so decoded YAML and JSON compare equal.
func normalize(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// kindOf finds the served kind of a sample document.
func kindOf(t *testing.T, doc map[string]any) reports.Kind {
	t.Helper()
	for _, k := range reports.All() {
		if k.GroupVersion.String() == doc["apiVersion"] && k.Kind == doc["kind"] {
			return k
		}
	}
	t.Fatalf("no served kind for %v %v", doc["apiVersion"], doc["kind"])
	return reports.Kind{}
}

// objectArgs are the kubectl arguments naming the object of doc (resource.group name [-n ns]).
func objectArgs(t *testing.T, doc map[string]any) []string {
	t.Helper()
	kind := kindOf(t, doc)
	meta, _ := doc["metadata"].(map[string]any)
	args := []string{kind.Resource + "." + kind.GroupVersion.Group, meta["name"].(string)}
	if kind.Namespaced {
		ns, _ := meta["namespace"].(string)
		if ns == "" {
			ns = "default" // the namespace of the written kubeconfig's context
		}
		args = append(args, "-n", ns)
	}
	return args
}

// checkRoundTrip compares what the server returns for doc with doc itself, ignoring what the
// server sets (uid, resourceVersion, creationTimestamp, generation, managedFields) and the
// annotation of client-side apply.
func checkRoundTrip(t *testing.T, k *kubectl, file string, doc map[string]any) {
	t.Helper()
	kind := kindOf(t, doc)
	out := k.mustRun(t, append(append([]string{"get"}, objectArgs(t, doc)...), "-o", "json")...)
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%s: decode kubectl get output: %v\n%s", file, err, out)
	}
	meta := got["metadata"].(map[string]any)
	for _, f := range []string{"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"} {
		if f != "managedFields" && meta[f] == nil {
			t.Errorf("%s: server did not set metadata.%s", filepath.Base(file), f)
		}
		delete(meta, f)
	}
	if ann, ok := meta["annotations"].(map[string]any); ok {
		delete(ann, "kubectl.kubernetes.io/last-applied-configuration")
		if len(ann) == 0 {
			delete(meta, "annotations")
		}
	}

	want := normalize(t, doc)
	wantMeta := want["metadata"].(map[string]any)
	if kind.Namespaced && wantMeta["namespace"] == nil {
		wantMeta["namespace"] = "default"
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("%s: %s/%v does not round-trip\n--- got\n%s\n--- want\n%s", filepath.Base(file), kind.Kind, wantMeta["name"], g, w)
	}
}
