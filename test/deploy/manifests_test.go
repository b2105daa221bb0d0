package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

var manifestsDir = filepath.Join(repoRoot, "deploy", "manifests")

const exampleSecretFile = "database-secret.example.yaml"

// manifestFiles returns the YAML files of deploy/manifests other than kustomization.yaml.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(manifestsDir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".yaml") && e.Name() != "kustomization.yaml" {
			files = append(files, e.Name())
		}
	}
	if len(files) == 0 {
		t.Fatal("no manifests")
	}
	return files
}

// buildKustomization builds deploy/manifests as `kubectl apply -k` would.
func buildKustomization(t *testing.T) []object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), manifestsDir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", manifestsDir, err)
	}
	out, err := resMap.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeDocuments("kustomize build deploy/manifests", out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestManifestsDecodeStrictly decodes every document of every file in deploy/manifests, the
// example Secret included, into its typed object.
func TestManifestsDecodeStrictly(t *testing.T) {
	for _, f := range manifestFiles(t) {
		t.Run(f, func(t *testing.T) {
			objs := decodeFile(t, filepath.Join(manifestsDir, f))
			if len(objs) == 0 {
				t.Fatal("no objects")
			}
		})
	}
}

// TestManifestsKustomization checks that kustomization.yaml lists every manifest but the example
// Secret, and that its build is what the files hold (with the image tag it sets).
func TestManifestsKustomization(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(manifestsDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kust types.Kustomization
	if err := yaml.UnmarshalStrict(data, &kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if kust.Namespace != "" {
		t.Error("kustomization.yaml sets namespace: it would move the RoleBinding out of kube-system")
	}
	var want []string
	for _, f := range manifestFiles(t) {
		if f != exampleSecretFile {
			want = append(want, f)
		}
	}
	got := slices.Sorted(slices.Values(kust.Resources))
	if !slices.Equal(got, want) {
		t.Errorf("kustomization resources %v, want %v (every manifest but %s)", got, want, exampleSecretFile)
	}

	var fromFiles []object
	for _, f := range want {
		fromFiles = append(fromFiles, decodeFile(t, filepath.Join(manifestsDir, f))...)
	}
	built := buildKustomization(t)
	if len(built) != len(fromFiles) {
		t.Errorf("kustomize build has %d objects, the files %d:\n%s\n--\n%s", len(built), len(fromFiles), names(built), names(fromFiles))
	}
	for _, d := range typedOf[*appsv1.Deployment](indexObjects(built), "Deployment") {
		image := d.Spec.Template.Spec.Containers[0].Image
		if len(kust.Images) != 1 || image != kust.Images[0].Name+":"+kust.Images[0].NewTag {
			t.Errorf("image %s, want the one kustomization.yaml sets", image)
		}
	}
}

// TestManifestsInvariants checks the built base: aggregated mode with server-managed APIServices,
// the database URL from the Secret of the example, everything in the reports-server namespace.
func TestManifestsInvariants(t *testing.T) {
	objs := buildKustomization(t)
	example := decodeFile(t, filepath.Join(manifestsDir, exampleSecretFile))
	if len(example) != 1 {
		t.Fatalf("%s: want one Secret", exampleSecretFile)
	}
	secret := example[0].typed.(*corev1.Secret)
	var key string
	for k := range secret.StringData {
		key = k
	}
	checkInvariants(t, append(objs, example...), expectation{
		namespace:        "reports-server",
		apiServices:      allAPIServices,
		dbSecret:         secret.Name,
		dbKey:            key,
		dbSecretRendered: true,
		tls:              "managed",
	})

	var namespace *corev1.Namespace
	for _, o := range objs {
		ns := o.u.GetNamespace()
		switch {
		case o.gvk.Kind == "Namespace":
			namespace = o.typed.(*corev1.Namespace)
		case o.gvk.Kind == "RoleBinding" && o.u.GetName() == "reports-server:extension-apiserver-authentication-reader":
			if ns != "kube-system" {
				t.Errorf("%v: want kube-system", o)
			}
		case isClusterScoped(o.gvk.Kind):
			if ns != "" {
				t.Errorf("%v: cluster-scoped object with a namespace", o)
			}
		default:
			if ns != "reports-server" {
				t.Errorf("%v: want namespace reports-server", o)
			}
		}
	}
	if namespace == nil || namespace.Name != "reports-server" {
		t.Fatal("no Namespace reports-server")
	}
	if namespace.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Error("Namespace reports-server does not enforce the restricted Pod Security Standard")
	}
	if secret.Namespace != "reports-server" {
		t.Errorf("%s: namespace %q", exampleSecretFile, secret.Namespace)
	}
}

func isClusterScoped(kind string) bool {
	switch kind {
	case "Namespace", "ClusterRole", "ClusterRoleBinding", "APIService":
		return true
	}
	return false
}
