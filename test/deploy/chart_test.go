package deploy

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"sigs.k8s.io/yaml"
)

var chartDir = filepath.Join(repoRoot, "deploy", "helm", "reports-server")

// kubeVersion is the cluster version the chart is rendered for.
var kubeVersion = &chartutil.KubeVersion{Version: "v1.37.0", Major: "1", Minor: "37"}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rendered is a chart rendered as `helm template` does, with values from YAML.
type rendered struct {
	objs  []object
	notes string
}

// render renders the chart for a cluster of version kube, like `helm template` (no cluster
// access: lookup finds nothing). It checks the values against values.schema.json and the
// chart's kubeVersion constraint, as helm install does.
func render(t *testing.T, c *chart.Chart, kube *chartutil.KubeVersion, releaseName, namespace, values string) (rendered, error) {
	t.Helper()
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte(values), &vals); err != nil {
		t.Fatalf("values: %v", err)
	}
	files, err := RenderChart(c, kube, releaseName, namespace, vals)
	if err != nil {
		return rendered{}, err
	}
	var r rendered
	for _, name := range slices.Sorted(maps.Keys(files)) {
		base := filepath.Base(name)
		switch {
		case base == "NOTES.txt":
			r.notes = files[name]
		case strings.HasPrefix(base, "_"):
			// Partials render to nothing.
		default:
			if strings.Contains(files[name], "helm.sh/hook") {
				t.Errorf("%s: the chart should have no hooks", name)
			}
			objs, err := decodeDocuments(name, []byte(files[name]))
			if err != nil {
				t.Fatal(err)
			}
			r.objs = append(r.objs, objs...)
		}
	}
	return r, nil
}

// chartCase is one value set and what its rendering must hold.
type chartCase struct {
	name               string
	release, namespace string // default reports-server, reports-server
	kube               string // the cluster's version; default kubeVersion
	values             string
	want               expectation // namespace and apiServices are filled in when empty
	check              func(t *testing.T, r rendered, idx index)
}

func find(idx index, kind, name string) *object {
	for i := range idx[kind] {
		if idx[kind][i].u.GetName() == name {
			return &idx[kind][i]
		}
	}
	return nil
}

func deploymentOf(idx index) *appsv1.Deployment {
	return typedOf[*appsv1.Deployment](idx, "Deployment")[0]
}

var chartCases = []chartCase{
	{
		name: "defaults",
		want: expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "selfSigned"},
		check: func(t *testing.T, r rendered, idx index) {
			d := deploymentOf(idx)
			if *d.Spec.Replicas != 2 {
				t.Errorf("replicas %d, want 2", *d.Spec.Replicas)
			}
			if img := d.Spec.Template.Spec.Containers[0].Image; img != "ghcr.io/reports-server/reports-server:v0.1.0" {
				t.Errorf("image %s, want the chart's appVersion", img)
			}
			if len(idx["PodDisruptionBudget"]) != 1 {
				t.Error("want a PodDisruptionBudget")
			}
			if args := d.Spec.Template.Spec.Containers[0].Args; slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--disable-admission-plugins") }) {
				t.Errorf("args %q: no admission plugin needs turning off on %s", args, kubeVersion.Version)
			}
			for _, kind := range []string{"StatefulSet", "ServiceMonitor", "Certificate", "Issuer", "Secret"} {
				if len(idx[kind]) != 0 {
					t.Errorf("unexpected %s by default", kind)
				}
			}
			if find(idx, "ClusterRole", "reports-server:view") == nil {
				t.Error("no ClusterRole aggregated into view/edit/admin")
			}
			if !strings.Contains(r.notes, "create secret generic reports-server-database") {
				t.Errorf("NOTES do not say to create the database Secret:\n%s", r.notes)
			}
			if !strings.Contains(r.notes, "insecureSkipTLSVerify") {
				t.Errorf("NOTES do not mention insecureSkipTLSVerify:\n%s", r.notes)
			}
		},
	},
	{
		name: "kubernetes 1.34",
		kube: "v1.34.2",
		want: expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "selfSigned"},
		check: func(t *testing.T, r rendered, idx index) {
			args := deploymentOf(idx).Spec.Template.Spec.Containers[0].Args
			if !slices.Contains(args, "--disable-admission-plugins=MutatingAdmissionPolicy") {
				t.Errorf("args %q: MutatingAdmissionPolicy (no v1 API before 1.36) is not turned off", args)
			}
		},
	},
	{
		name:   "kubernetes 1.35 with another plugin off",
		kube:   "v1.35.0",
		values: "disableAdmissionPlugins: [ValidatingAdmissionPolicy]",
		want:   expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "selfSigned"},
		check: func(t *testing.T, r rendered, idx index) {
			args := deploymentOf(idx).Spec.Template.Spec.Containers[0].Args
			if !slices.Contains(args, "--disable-admission-plugins=ValidatingAdmissionPolicy,MutatingAdmissionPolicy") {
				t.Errorf("args %q: want both plugins off in one flag", args)
			}
		},
	},
	{
		name:   "existing database secret",
		values: "database: {existingSecret: pg-credentials, secretKey: dsn}",
		want:   expectation{dbSecret: "pg-credentials", dbKey: "dsn", tls: "selfSigned"},
		check: func(t *testing.T, r rendered, idx index) {
			if strings.Contains(r.notes, "create secret") {
				t.Error("NOTES ask to create a Secret that was given")
			}
		},
	},
	{
		name:   "database url",
		values: "database: {url: 'postgres://reports:secret@db.example:5432/reports?sslmode=verify-full'}",
		want:   expectation{dbSecret: "reports-server-database", dbKey: "url", dbSecretRendered: true, tls: "selfSigned"},
		check: func(t *testing.T, r rendered, idx index) {
			if deploymentOf(idx).Spec.Template.Annotations["checksum/database"] == "" {
				t.Error("no checksum/database annotation: a changed URL would not roll the pods")
			}
		},
	},
	{
		name:   "bundled postgresql",
		values: "postgresql: {enabled: true, persistence: {size: 1Gi, storageClassName: fast}}",
		want:   expectation{dbSecret: "reports-server-postgresql", dbKey: "url", dbSecretRendered: true, tls: "selfSigned"},
		check: func(t *testing.T, r rendered, idx index) {
			o := find(idx, "StatefulSet", "reports-server-postgresql")
			if o == nil {
				t.Fatal("no StatefulSet reports-server-postgresql")
			}
			sts := o.typed.(*appsv1.StatefulSet)
			if *sts.Spec.Replicas != 1 || len(sts.Spec.VolumeClaimTemplates) != 1 {
				t.Errorf("StatefulSet: %d replicas, %d claim templates; want 1, 1", *sts.Spec.Replicas, len(sts.Spec.VolumeClaimTemplates))
			}
			pvc := sts.Spec.VolumeClaimTemplates[0]
			if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "fast" || pvc.Spec.Resources.Requests.Storage().String() != "1Gi" {
				t.Errorf("claim template %+v", pvc.Spec)
			}
			mounted := slices.ContainsFunc(sts.Spec.Template.Spec.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == pvc.Name })
			if !mounted {
				t.Error("the claim template is not mounted")
			}
			svc := find(idx, "Service", sts.Spec.ServiceName)
			if svc == nil || !labels.SelectorFromSet(svc.typed.(*corev1.Service).Spec.Selector).Matches(labels.Set(sts.Spec.Template.Labels)) {
				t.Errorf("no Service %s selecting the PostgreSQL pod", sts.Spec.ServiceName)
			}
			secret := find(idx, "Secret", "reports-server-postgresql").typed.(*corev1.Secret)
			url := string(secret.Data["url"])
			wantURL := fmt.Sprintf("postgres://reports:%s@reports-server-postgresql.reports-server.svc:5432/reports?sslmode=disable", secret.Data["password"])
			if len(secret.Data["password"]) < 16 || url != wantURL {
				t.Errorf("url %q, want %q with a generated password", url, wantURL)
			}
			if !strings.Contains(r.notes, "WARNING") || !strings.Contains(sts.Annotations["reports-server.io/not-for-production"], "development") {
				t.Error("the bundled PostgreSQL is not marked as not for production")
			}
		},
	},
	{
		name:   "service monitor",
		values: "serviceMonitor: {enabled: true, labels: {release: kube-prometheus-stack}}",
		want:   expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "selfSigned"},
		check: func(t *testing.T, r rendered, idx index) {
			sm := find(idx, "ServiceMonitor", "reports-server")
			if sm == nil {
				t.Fatal("no ServiceMonitor")
			}
			if sm.u.GetLabels()["release"] != "kube-prometheus-stack" {
				t.Error("ServiceMonitor labels not applied")
			}
			checkServiceMonitorTargets(t, sm.u, idx)
			ep := sm.u.Object["spec"].(map[string]any)["endpoints"].([]any)[0].(map[string]any)
			if ep["tlsConfig"].(map[string]any)["insecureSkipVerify"] != true {
				t.Errorf("tlsConfig %v: want insecureSkipVerify with the self-signed certificate", ep["tlsConfig"])
			}
		},
	},
	{
		name:   "one group disabled",
		values: "groups: {reportsKyverno: false}",
		want: expectation{
			apiServices: []string{"v1alpha2.wgpolicyk8s.io", "v1alpha1.openreports.io"},
			dbSecret:    "reports-server-database", dbKey: "url", tls: "selfSigned",
		},
		check: func(t *testing.T, r rendered, idx index) {
			view := find(idx, "ClusterRole", "reports-server:view").typed.(*rbacv1.ClusterRole)
			if allows(view.Rules, "reports.kyverno.io", "ephemeralreports", "list", "") {
				t.Error("the view role still covers the disabled group")
			}
			if !allows(view.Rules, "openreports.io", "clusterreports", "watch", "") {
				t.Error("the view role lacks an enabled group")
			}
			server := find(idx, "ClusterRole", "reports-server").typed.(*rbacv1.ClusterRole)
			if allows(server.Rules, "apiregistration.k8s.io", "apiservices", "update", "v1.reports.kyverno.io") {
				t.Error("the server may still update the disabled group's APIService")
			}
			if strings.Contains(r.notes, "reports.kyverno.io") {
				t.Error("NOTES list the disabled group")
			}
		},
	},
	{
		name:   "cert-manager with a chart-made CA",
		values: "apiService: {insecureSkipTLSVerify: false, certManager: {enabled: true}}\nserviceMonitor: {enabled: true}",
		want:   expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "certManager"},
		check: func(t *testing.T, r rendered, idx index) {
			if len(idx["Issuer"]) != 2 || len(idx["Certificate"]) != 2 {
				t.Fatalf("want 2 Issuers and 2 Certificates (self-signed CA), got:\n%s", names(append(idx["Issuer"], idx["Certificate"]...)))
			}
			checkCertManager(t, idx)
			sm := find(idx, "ServiceMonitor", "reports-server")
			ep := sm.u.Object["spec"].(map[string]any)["endpoints"].([]any)[0].(map[string]any)
			tls := ep["tlsConfig"].(map[string]any)
			if tls["serverName"] != "reports-server.reports-server.svc" || tls["ca"] == nil {
				t.Errorf("ServiceMonitor tlsConfig %v: want verification with the cert-manager CA", tls)
			}
		},
	},
	{
		name:   "cert-manager with a cluster issuer",
		values: "apiService: {insecureSkipTLSVerify: false, certManager: {enabled: true, issuerRef: {name: corp-ca, kind: ClusterIssuer}}}",
		want:   expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "certManager"},
		check: func(t *testing.T, r rendered, idx index) {
			if len(idx["Issuer"]) != 0 || len(idx["Certificate"]) != 1 {
				t.Fatalf("want only the serving Certificate, got:\n%s", names(append(idx["Issuer"], idx["Certificate"]...)))
			}
			ref, _, _ := unstructured.NestedStringMap(idx["Certificate"][0].u.Object, "spec", "issuerRef")
			if ref["name"] != "corp-ca" || ref["kind"] != "ClusterIssuer" {
				t.Errorf("issuerRef %v", ref)
			}
			checkCertManager(t, idx)
		},
	},
	{
		name:   "provided certificate",
		values: "apiService:\n  insecureSkipTLSVerify: false\n  tls:\n    existingSecret: reports-server-tls\n    caBundle: |\n      -----BEGIN CERTIFICATE-----\n      MIIB\n      -----END CERTIFICATE-----\n",
		want:   expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "secret"},
		check: func(t *testing.T, r rendered, idx index) {
			for _, as := range typedOf[*apiregistrationv1.APIService](idx, "APIService") {
				if !strings.HasPrefix(string(as.Spec.CABundle), "-----BEGIN CERTIFICATE-----") {
					t.Errorf("APIService %s caBundle %q", as.Name, as.Spec.CABundle)
				}
			}
			vols := deploymentOf(idx).Spec.Template.Spec.Volumes
			if !slices.ContainsFunc(vols, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == "reports-server-tls" }) {
				t.Error("the provided Secret is not mounted")
			}
		},
	},
	{
		name:      "other release, one replica, scheduling",
		release:   "rs",
		namespace: "policy",
		values: `
replicaCount: 1
clusterName: prod-eu-1
extraArgs: ["--v=2", "--logging-format=json"]
priorityClassName: system-cluster-critical
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: infra, effect: NoSchedule}]
image: {repository: registry.example/reports-server, tag: dev, pullPolicy: Always}
serviceAccount: {annotations: {example.io/role: reports}}
rbac: {aggregateToDefaultRoles: false}
`,
		want: expectation{dbSecret: "rs-reports-server-database", dbKey: "url", tls: "selfSigned"},
		check: func(t *testing.T, r rendered, idx index) {
			d := deploymentOf(idx)
			if d.Name != "rs-reports-server" {
				t.Errorf("Deployment name %s", d.Name)
			}
			c := d.Spec.Template.Spec.Containers[0]
			for _, arg := range []string{"--cluster-name=prod-eu-1", "--v=2", "--logging-format=json"} {
				if !slices.Contains(c.Args, arg) {
					t.Errorf("args %q lack %s", c.Args, arg)
				}
			}
			if c.Image != "registry.example/reports-server:dev" || c.ImagePullPolicy != corev1.PullAlways {
				t.Errorf("image %s %s", c.Image, c.ImagePullPolicy)
			}
			spec := d.Spec.Template.Spec
			if spec.PriorityClassName != "system-cluster-critical" || spec.NodeSelector["kubernetes.io/os"] != "linux" || len(spec.Tolerations) != 1 {
				t.Error("scheduling values not applied")
			}
			if len(idx["PodDisruptionBudget"]) != 0 {
				t.Error("a PodDisruptionBudget with one replica would block node drains")
			}
			if find(idx, "ClusterRole", "rs-reports-server:view") != nil {
				t.Error("aggregated role rendered although disabled")
			}
		},
	},
}

// checkServiceMonitorTargets checks that the ServiceMonitor selects the server's Service and
// scrapes a port it has.
func checkServiceMonitorTargets(t *testing.T, sm *unstructured.Unstructured, idx index) {
	t.Helper()
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	var port string
	if endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints"); len(endpoints) > 0 {
		port, _ = endpoints[0].(map[string]any)["port"].(string)
	}
	var matched int
	for _, svc := range typedOf[*corev1.Service](idx, "Service") {
		if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(svc.Labels)) {
			matched++
			if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == port }) {
				t.Errorf("Service %s has no port %q", svc.Name, port)
			}
			if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(deploymentOf(idx).Spec.Template.Labels)) {
				t.Errorf("the ServiceMonitor selects Service %s, which is not the server's", svc.Name)
			}
		}
	}
	if matched != 1 {
		t.Errorf("the ServiceMonitor selects %d Services, want the server's", matched)
	}
}

// checkCertManager checks that the serving Certificate covers the Service's DNS name, that its
// Secret is what the server mounts, and that the APIServices take their CA from it.
func checkCertManager(t *testing.T, idx index) {
	t.Helper()
	d := deploymentOf(idx)
	var svc *corev1.Service
	for _, s := range typedOf[*corev1.Service](idx, "Service") {
		if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			svc = s
		}
	}
	var serving *object
	for i, c := range idx["Certificate"] {
		if isCA, _, _ := unstructured.NestedBool(c.u.Object, "spec", "isCA"); !isCA {
			serving = &idx["Certificate"][i]
		}
	}
	if serving == nil {
		t.Fatal("no serving Certificate")
	}
	dnsNames, _, _ := unstructured.NestedStringSlice(serving.u.Object, "spec", "dnsNames")
	if host := svc.Name + "." + svc.Namespace + ".svc"; !slices.Contains(dnsNames, host) {
		t.Errorf("serving Certificate dnsNames %v lack %s, the name kube-apiserver verifies", dnsNames, host)
	}
	secretName, _, _ := unstructured.NestedString(serving.u.Object, "spec", "secretName")
	if !slices.ContainsFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == secretName }) {
		t.Errorf("the server does not mount the serving Certificate's Secret %s", secretName)
	}
	want := serving.u.GetNamespace() + "/" + serving.u.GetName()
	for _, as := range typedOf[*apiregistrationv1.APIService](idx, "APIService") {
		if got := as.Annotations["cert-manager.io/inject-ca-from"]; got != want {
			t.Errorf("APIService %s injects the CA from %q, want %q", as.Name, got, want)
		}
	}
	// Issuers the Certificates refer to are rendered (unless they are cluster issuers given by
	// the user).
	for _, c := range idx["Certificate"] {
		ref, _, _ := unstructured.NestedStringMap(c.u.Object, "spec", "issuerRef")
		if ref["kind"] == "Issuer" && find(idx, "Issuer", ref["name"]) == nil {
			t.Errorf("%v: Issuer %s is not rendered", c, ref["name"])
		}
	}
}

// TestChartRender renders the chart with several value sets and checks each rendering strictly
// and against the invariants of an installation.
func TestChartRender(t *testing.T) {
	c := loadChart(t)
	for _, tc := range chartCases {
		t.Run(tc.name, func(t *testing.T) {
			release, namespace := tc.release, tc.namespace
			if release == "" {
				release = "reports-server"
			}
			if namespace == "" {
				namespace = "reports-server"
			}
			kube := kubeVersion
			if tc.kube != "" {
				var err error
				if kube, err = chartutil.ParseKubeVersion(tc.kube); err != nil {
					t.Fatal(err)
				}
			}
			r, err := render(t, c, kube, release, namespace, tc.values)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			want := tc.want
			want.namespace = namespace
			if want.apiServices == nil {
				want.apiServices = allAPIServices
			}
			checkInvariants(t, r.objs, want)
			checkReleaseObjects(t, r.objs, release, namespace)
			if r.notes == "" {
				t.Error("no NOTES")
			}
			if tc.check != nil {
				tc.check(t, r, indexObjects(r.objs))
			}
		})
	}
}

// checkReleaseObjects checks namespaces and the labels Helm users select by.
func checkReleaseObjects(t *testing.T, objs []object, release, namespace string) {
	t.Helper()
	for _, o := range objs {
		ns := o.u.GetNamespace()
		switch {
		case o.gvk.Kind == "RoleBinding":
			if ns != "kube-system" {
				t.Errorf("%v: want kube-system", o)
			}
		case isClusterScoped(o.gvk.Kind):
			if ns != "" {
				t.Errorf("%v: cluster-scoped object with a namespace", o)
			}
		default:
			if ns != namespace {
				t.Errorf("%v: want namespace %s", o, namespace)
			}
		}
		l := o.u.GetLabels()
		if l["app.kubernetes.io/instance"] != release || l["app.kubernetes.io/managed-by"] != "Helm" {
			t.Errorf("%v: labels %v lack the release's", o, l)
		}
	}
}

// TestChartRejects checks that inconsistent values fail to render with a message instead of
// producing an installation that cannot work.
func TestChartRejects(t *testing.T) {
	c := loadChart(t)
	old, err := chartutil.ParseKubeVersion("v1.29.9")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := render(t, c, old, "reports-server", "reports-server", ""); err == nil || !strings.Contains(err.Error(), "kubeVersion") {
		t.Errorf("Kubernetes 1.29: err %v, want the chart's kubeVersion constraint", err)
	}
	for _, tc := range []struct{ name, values, want string }{
		{"url and existing secret", "database: {url: 'postgres://x', existingSecret: s}", "set only one of"},
		{"url and bundled postgresql", "database: {url: 'postgres://x'}\npostgresql: {enabled: true}", "set only one of"},
		{"cert-manager with insecureSkipTLSVerify", "apiService: {certManager: {enabled: true}}", "insecureSkipTLSVerify=false"},
		{"no way to trust the certificate", "apiService: {insecureSkipTLSVerify: false}", "cannot verify"},
		{"provided certificate without CA", "apiService: {insecureSkipTLSVerify: false, tls: {existingSecret: s}}", "caBundle"},
		{"cert-manager and provided certificate", "apiService: {insecureSkipTLSVerify: false, certManager: {enabled: true}, tls: {existingSecret: s, caBundle: x}}", "set only one of"},
		{"no group", "groups: {wgpolicyk8s: false, reportsKyverno: false, openreports: false}", "at least one API group"},
		{"unknown value", "replicas: 3", "additional properties"},
		{"unknown group", "groups: {policies: true}", "additional properties"},
		{"wrong type", "replicaCount: two", "replicaCount"},
		{"flag without dashes", "extraArgs: [v=2]", "extraArgs"},
		{"unknown admission plugin", "disableAdmissionPlugins: [PodSecurity]", "disableAdmissionPlugins"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, c, kubeVersion, "reports-server", "reports-server", tc.values)
			if err == nil {
				t.Fatal("rendered without error")
			}
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.want)) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// TestChartLint runs helm lint (Chart.yaml, values schema, templates) and fails on warnings.
func TestChartLint(t *testing.T) {
	for name, values := range map[string]map[string]any{
		"defaults":   nil,
		"postgresql": {"postgresql": map[string]any{"enabled": true}},
	} {
		t.Run(name, func(t *testing.T) {
			linter := lint.AllWithKubeVersion(chartDir, values, "reports-server", kubeVersion)
			for _, m := range linter.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", m)
				} else {
					t.Logf("helm lint: %s", m)
				}
			}
		})
	}
}
