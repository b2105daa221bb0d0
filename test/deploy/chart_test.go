package deploy

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"sigs.k8s.io/yaml"
)

var chartDir = filepath.Join(repoRoot, "deploy", "helm", "reports-server")

// kubeVersion is the cluster version the chart is rendered for.
var kubeVersion = mustParseKubeVersion("v1.37.0")

func mustParseKubeVersion(v string) *common.KubeVersion {
	kv, err := common.ParseKubeVersion(v)
	if err != nil {
		panic(err) // only with a malformed constant of this file
	}
	return kv
}

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
func render(t *testing.T, c *chart.Chart, kube *common.KubeVersion, releaseName, namespace, values string) (rendered, error) {
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
			// Hooks are not the release's objects (helm uninstall leaves them, GitOps tools
			// treat them apart): only the migration Job, which must run before the server's pods,
			// and the Secret it reads are hooks.
			if strings.Contains(files[name], "helm.sh/hook") && base != "migrations.yaml" {
				t.Errorf("%s: only the migration Job (migrations.yaml) may be a hook", name)
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

// static is the values prefix of the chart's static APIServices with the self-signed
// certificate (the chart's only mode before the server managed its APIServices).
const static = "apiService: {managed: false, insecureSkipTLSVerify: true}\n"

// hasArgPrefix reports whether the Deployment passes a flag starting with prefix.
func hasArgPrefix(idx index, prefix string) bool {
	return slices.ContainsFunc(deploymentOf(idx).Spec.Template.Spec.Containers[0].Args, func(a string) bool { return strings.HasPrefix(a, prefix) })
}

// checkArgs checks that the Deployment passes every flag of want (--name=value).
func checkArgs(t *testing.T, idx index, want ...string) {
	t.Helper()
	args := deploymentOf(idx).Spec.Template.Spec.Containers[0].Args
	for _, a := range want {
		if !slices.Contains(args, a) {
			t.Errorf("args %q lack %s", args, a)
		}
	}
}

// serverRulesOf are the rules of the ClusterRoles bound to the server's service account.
func serverRulesOf(idx index) []rbacv1.PolicyRule {
	sa := deploymentOf(idx).Spec.Template.Spec.ServiceAccountName
	var rules []rbacv1.PolicyRule
	for _, crb := range typedOf[*rbacv1.ClusterRoleBinding](idx, "ClusterRoleBinding") {
		if !slices.ContainsFunc(crb.Subjects, func(s rbacv1.Subject) bool { return s.Name == sa }) {
			continue
		}
		if o := find(idx, "ClusterRole", crb.RoleRef.Name); o != nil {
			rules = append(rules, o.typed.(*rbacv1.ClusterRole).Rules...)
		}
	}
	return rules
}

// checkStaticRBAC checks that with static APIServices the server gets no access to APIServices,
// Secrets or CRDs: it leaves the APIServices alone and migrates nothing.
func checkStaticRBAC(t *testing.T, idx index) {
	t.Helper()
	rules := serverRulesOf(idx)
	if allows(rules, "apiregistration.k8s.io", "apiservices", "create", "") || allows(rules, "apiregistration.k8s.io", "apiservices", "update", analyticsAPIService) {
		t.Error("static APIServices: the server may still create or update APIServices")
	}
	if allows(rules, "apiextensions.k8s.io", "customresourcedefinitions", "get", "policyreports.wgpolicyk8s.io") {
		t.Error("static APIServices: the server may still read CRDs (no migration without --manage-apiservices)")
	}
	if len(idx["Role"]) != 0 {
		t.Errorf("static APIServices: unexpected Roles:\n%s", names(idx["Role"]))
	}
}

var chartCases = []chartCase{
	{
		name: "defaults",
		want: expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "managed"},
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
			if hasArgPrefix(idx, "--disable-admission-plugins") {
				t.Errorf("no admission plugin needs turning off on %s", kubeVersion.Version)
			}
			checkArgs(t, idx, "--manage-apiservices=true", "--service-name=reports-server",
				"--serving-cert-secret=reports-server-tls", "--migrate-from-crds=true")
			for _, prefix := range []string{"--api-groups", "--cert-dir", "--tls-cert-file", "--service-namespace"} {
				if hasArgPrefix(idx, prefix) {
					t.Errorf("unexpected %s by default", prefix)
				}
			}
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.Secret != nil {
					t.Errorf("volume %s mounts Secret %s: the server reads its certificate through the API", v.Name, v.Secret.SecretName)
				}
			}
			if hasArgPrefix(idx, "--migrate=") {
				t.Error("the server migrates at start by default: no --migrate flag")
			}
			for _, kind := range []string{"APIService", "StatefulSet", "ServiceMonitor", "Certificate", "Issuer", "Secret", "Job"} {
				if len(idx[kind]) != 0 {
					t.Errorf("unexpected %s by default", kind)
				}
			}
			if find(idx, "ClusterRole", "reports-server:view") == nil {
				t.Error("no ClusterRole aggregated into view/edit/admin")
			}
			if find(idx, "Role", "reports-server:serving-cert") == nil || find(idx, "RoleBinding", "reports-server:serving-cert") == nil {
				t.Error("no Role and RoleBinding reports-server:serving-cert")
			}
			if !strings.Contains(r.notes, "create secret generic reports-server-database") {
				t.Errorf("NOTES do not say to create the database Secret:\n%s", r.notes)
			}
			// Uninstalling: the APIServices and the Secret the server made are not the release's.
			var deleted []string
			for _, line := range strings.Split(r.notes, "\n") {
				if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "kubectl delete apiservices "); ok {
					deleted = strings.Fields(rest)
				}
			}
			if want := append(slices.Clone(allAPIServices), analyticsAPIService); !slices.Equal(slices.Sorted(slices.Values(deleted)), slices.Sorted(slices.Values(want))) {
				t.Errorf("NOTES delete the APIServices %v on uninstall, want %v:\n%s", deleted, want, r.notes)
			}
			if !strings.Contains(r.notes, "delete secret reports-server-tls") {
				t.Errorf("NOTES do not say to delete the serving certificate's Secret on uninstall:\n%s", r.notes)
			}
			if strings.Contains(r.notes, "insecureSkipTLSVerify") {
				t.Errorf("NOTES mention insecureSkipTLSVerify, which managed APIServices do not use:\n%s", r.notes)
			}
		},
	},
	{
		name: "kubernetes 1.34",
		kube: "v1.34.2",
		want: expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "managed"},
		check: func(t *testing.T, r rendered, idx index) {
			checkArgs(t, idx, "--disable-admission-plugins=MutatingAdmissionPolicy")
		},
	},
	{
		name:   "kubernetes 1.35 with another plugin off",
		kube:   "v1.35.0",
		values: "disableAdmissionPlugins: [ValidatingAdmissionPolicy]",
		want:   expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "managed"},
		check: func(t *testing.T, r rendered, idx index) {
			checkArgs(t, idx, "--disable-admission-plugins=ValidatingAdmissionPolicy,MutatingAdmissionPolicy")
		},
	},
	{
		name:   "existing database secret",
		values: "database: {existingSecret: pg-credentials, secretKey: dsn}",
		want:   expectation{dbSecret: "pg-credentials", dbKey: "dsn", tls: "managed"},
		check: func(t *testing.T, r rendered, idx index) {
			if strings.Contains(r.notes, "create secret") {
				t.Error("NOTES ask to create a Secret that was given")
			}
		},
	},
	{
		name: "split roles, owner url",
		values: `database:
  existingSecret: app-db
  migrations:
    url: 'postgres://reports_owner:owner-pw@db.example:5432/reports?sslmode=verify-full'
    activeDeadlineSeconds: 300
    backoffLimit: 1`,
		want: expectation{dbSecret: "app-db", dbKey: "url", tls: "managed"},
		check: func(t *testing.T, r rendered, idx index) {
			checkMigrationJob(t, idx, "reports-server-migrations", "url", 300, 1)
			owner := find(idx, "Secret", "reports-server-migrations")
			if owner == nil {
				t.Fatal("no Secret reports-server-migrations for the owner's URL")
			}
			if url := string(owner.typed.(*corev1.Secret).Data["url"]); !strings.HasPrefix(url, "postgres://reports_owner:") {
				t.Errorf("Secret reports-server-migrations holds %q, want the owner's URL", url)
			}
			checkHook(t, owner, "-10")
		},
	},
	{
		name: "split roles, existing owner secret",
		values: `database:
  url: 'postgres://reports_app:app-pw@db.example:5432/reports?sslmode=verify-full'
  migrations: {existingSecret: pg-owner, secretKey: dsn}`,
		want: expectation{dbSecret: "reports-server-database", dbKey: "url", dbSecretRendered: true, tls: "managed"},
		check: func(t *testing.T, r rendered, idx index) {
			checkMigrationJob(t, idx, "pg-owner", "dsn", 600, 3)
			if find(idx, "Secret", "reports-server-migrations") != nil {
				t.Error("Secret reports-server-migrations rendered; the user provides pg-owner")
			}
		},
	},
	{
		name:   "database url",
		values: "database: {url: 'postgres://reports:secret@db.example:5432/reports?sslmode=verify-full'}",
		want:   expectation{dbSecret: "reports-server-database", dbKey: "url", dbSecretRendered: true, tls: "managed"},
		check: func(t *testing.T, r rendered, idx index) {
			if deploymentOf(idx).Spec.Template.Annotations["checksum/database"] == "" {
				t.Error("no checksum/database annotation: a changed URL would not roll the pods")
			}
		},
	},
	{
		name:   "bundled postgresql",
		values: "postgresql: {enabled: true, persistence: {size: 1Gi, storageClassName: fast}}",
		want:   expectation{dbSecret: "reports-server-postgresql", dbKey: "url", dbSecretRendered: true, tls: "managed"},
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
			if !strings.Contains(r.notes, "PersistentVolumeClaim is kept") {
				t.Error("NOTES do not say the PostgreSQL claim outlives the release")
			}
		},
	},
	{
		name:   "service monitor",
		values: "serviceMonitor: {enabled: true, labels: {release: kube-prometheus-stack}}",
		want:   expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "managed"},
		check: func(t *testing.T, r rendered, idx index) {
			sm := find(idx, "ServiceMonitor", "reports-server")
			if sm == nil {
				t.Fatal("no ServiceMonitor")
			}
			if sm.u.GetLabels()["release"] != "kube-prometheus-stack" {
				t.Error("ServiceMonitor labels not applied")
			}
			checkServiceMonitorTargets(t, sm.u, idx)
			tls := serviceMonitorTLS(sm)
			ca, _, _ := unstructured.NestedStringMap(tls, "ca", "secret")
			if tls["serverName"] != "reports-server.reports-server.svc" || ca["name"] != "reports-server-tls" || ca["key"] != "ca.crt" {
				t.Errorf("ServiceMonitor tlsConfig %v: want verification with the CA in the server's Secret reports-server-tls", tls)
			}
		},
	},
	{
		name:   "one group disabled",
		values: "groups: {reportsKyverno: false}",
		want: expectation{
			apiServices: []string{"v1alpha2.wgpolicyk8s.io", "v1alpha1.openreports.io"},
			dbSecret:    "reports-server-database", dbKey: "url", tls: "managed",
		},
		check: func(t *testing.T, r rendered, idx index) {
			checkArgs(t, idx, "--api-groups=openreports.io,wgpolicyk8s.io")
			view := find(idx, "ClusterRole", "reports-server:view").typed.(*rbacv1.ClusterRole)
			if allows(view.Rules, "reports.kyverno.io", "ephemeralreports", "list", "") {
				t.Error("the view role still covers the disabled group")
			}
			if !allows(view.Rules, "openreports.io", "clusterreports", "watch", "") {
				t.Error("the view role lacks an enabled group")
			}
			server := serverRulesOf(idx)
			if allows(server, "apiregistration.k8s.io", "apiservices", "update", "v1.reports.kyverno.io") {
				t.Error("the server may still update the disabled group's APIService")
			}
			if allows(server, "apiextensions.k8s.io", "customresourcedefinitions", "get", "ephemeralreports.reports.kyverno.io") ||
				allows(server, "reports.kyverno.io", "ephemeralreports", "list", "") {
				t.Error("the server may still read the disabled group's CRDs or objects")
			}
			if strings.Contains(r.notes, "reports.kyverno.io") {
				t.Error("NOTES list the disabled group")
			}
		},
	},
	{
		name:   "without migration from CRDs",
		values: "apiService: {migrateFromCRDs: false}",
		want:   expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "managed"},
		check: func(t *testing.T, r rendered, idx index) {
			checkArgs(t, idx, "--migrate-from-crds=false")
			for _, rule := range serverRulesOf(idx) {
				for _, g := range rule.APIGroups {
					if g == "apiextensions.k8s.io" || g == "wgpolicyk8s.io" || g == "reports.kyverno.io" || g == "openreports.io" {
						t.Errorf("without migration the server needs no access to %s: %+v", g, rule)
					}
				}
			}
			if strings.Contains(r.notes, "copies their reports") {
				t.Error("NOTES announce a migration that is off")
			}
		},
	},
	{
		name:   "own serving certificate Secret name",
		values: "apiService: {servingCertSecret: reports-server-serving}\nserviceMonitor: {enabled: true}",
		want:   expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "managed"},
		check: func(t *testing.T, r rendered, idx index) {
			checkArgs(t, idx, "--serving-cert-secret=reports-server-serving")
			ca, _, _ := unstructured.NestedStringMap(serviceMonitorTLS(find(idx, "ServiceMonitor", "reports-server")), "ca", "secret")
			if ca["name"] != "reports-server-serving" {
				t.Errorf("ServiceMonitor CA from %v, want the Secret reports-server-serving", ca)
			}
		},
	},
	{
		name:   "static, self-signed",
		values: static,
		want:   expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "selfSigned"},
		check: func(t *testing.T, r rendered, idx index) {
			checkStaticRBAC(t, idx)
			for _, prefix := range []string{"--serving-cert-secret", "--service-name", "--migrate-from-crds", "--api-groups"} {
				if hasArgPrefix(idx, prefix) {
					t.Errorf("unexpected %s with static APIServices", prefix)
				}
			}
			if !strings.Contains(r.notes, "insecureSkipTLSVerify") {
				t.Errorf("NOTES do not mention insecureSkipTLSVerify:\n%s", r.notes)
			}
			if !strings.Contains(r.notes, "v1alpha1.analytics.reports-server.io") {
				t.Errorf("NOTES do not list the analytics APIService:\n%s", r.notes)
			}
		},
	},
	{
		name:   "static, self-signed, service monitor",
		values: static + "serviceMonitor: {enabled: true}",
		want:   expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "selfSigned"},
		check: func(t *testing.T, r rendered, idx index) {
			sm := find(idx, "ServiceMonitor", "reports-server")
			checkServiceMonitorTargets(t, sm.u, idx)
			if tls := serviceMonitorTLS(sm); tls["insecureSkipVerify"] != true {
				t.Errorf("tlsConfig %v: want insecureSkipVerify with the self-signed certificate", tls)
			}
		},
	},
	{
		name:   "static, one group disabled",
		values: static + "groups: {wgpolicyk8s: false}",
		want: expectation{
			apiServices: []string{"v1.reports.kyverno.io", "v1alpha1.openreports.io"},
			dbSecret:    "reports-server-database", dbKey: "url", tls: "selfSigned",
		},
		check: func(t *testing.T, r rendered, idx index) {
			checkArgs(t, idx, "--manage-apiservices=false", "--api-groups=openreports.io,reports.kyverno.io")
			checkStaticRBAC(t, idx)
		},
	},
	{
		name:   "cert-manager with a chart-made CA",
		values: "apiService: {managed: false, certManager: {enabled: true}}\nserviceMonitor: {enabled: true}",
		want:   expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "certManager"},
		check: func(t *testing.T, r rendered, idx index) {
			if len(idx["Issuer"]) != 2 || len(idx["Certificate"]) != 2 {
				t.Fatalf("want 2 Issuers and 2 Certificates (self-signed CA), got:\n%s", names(append(idx["Issuer"], idx["Certificate"]...)))
			}
			checkCertManager(t, idx)
			checkStaticRBAC(t, idx)
			tls := serviceMonitorTLS(find(idx, "ServiceMonitor", "reports-server"))
			if tls["serverName"] != "reports-server.reports-server.svc" || tls["ca"] == nil {
				t.Errorf("ServiceMonitor tlsConfig %v: want verification with the cert-manager CA", tls)
			}
		},
	},
	{
		name:   "cert-manager with a cluster issuer",
		values: "apiService: {managed: false, certManager: {enabled: true, issuerRef: {name: corp-ca, kind: ClusterIssuer}}}",
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
		values: "apiService:\n  managed: false\n  tls:\n    existingSecret: reports-server-tls\n    caBundle: |\n      -----BEGIN CERTIFICATE-----\n      MIIB\n      -----END CERTIFICATE-----\n",
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
			checkStaticRBAC(t, idx)
		},
	},
	{
		name: "names, pod settings, scheduling, disruption budget, service monitor",
		values: `
nameOverride: reports
fullnameOverride: policy-reports
replicaCount: 3
groups: {openreports: false}
imagePullSecrets: [{name: registry-creds}]
extraEnv: [{name: GOGC, value: "50"}]
goMemLimit: ""
podAnnotations: {example.io/team: policy}
podLabels: {example.io/tier: api}
podSecurityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: {type: RuntimeDefault}}
securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
resources: {requests: {cpu: 250m, memory: 200Mi}, limits: {memory: 200Mi}}
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64]}]}]}}}
topologySpreadConstraints: [{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app.kubernetes.io/name: reports}}}]
podDisruptionBudget: {minAvailable: 2}
serviceMonitor: {enabled: true, interval: 1m, scrapeTimeout: 20s, tlsConfig: {insecureSkipVerify: true}}
`,
		want: expectation{
			apiServices: []string{"v1alpha2.wgpolicyk8s.io", "v1.reports.kyverno.io"},
			dbSecret:    "policy-reports-database", dbKey: "url", tls: "managed",
		},
		check: func(t *testing.T, r rendered, idx index) {
			d := deploymentOf(idx)
			spec := d.Spec.Template.Spec
			c := spec.Containers[0]
			if d.Name != "policy-reports" || *d.Spec.Replicas != 3 || d.Spec.Template.Labels["app.kubernetes.io/name"] != "reports" {
				t.Errorf("Deployment %s, %d replicas, pod labels %v", d.Name, *d.Spec.Replicas, d.Spec.Template.Labels)
			}
			checkArgs(t, idx, "--service-name=policy-reports", "--serving-cert-secret=policy-reports-tls", "--api-groups=reports.kyverno.io,wgpolicyk8s.io")
			if len(spec.ImagePullSecrets) != 1 || spec.ImagePullSecrets[0].Name != "registry-creds" {
				t.Errorf("imagePullSecrets %v", spec.ImagePullSecrets)
			}
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			if _, ok := env["GOMEMLIMIT"]; ok || env["GOGC"] != "50" {
				t.Errorf("env %v: want GOGC and no GOMEMLIMIT", env)
			}
			if d.Spec.Template.Annotations["example.io/team"] != "policy" || d.Spec.Template.Labels["example.io/tier"] != "api" {
				t.Errorf("pod annotations %v, labels %v", d.Spec.Template.Annotations, d.Spec.Template.Labels)
			}
			if *spec.SecurityContext.RunAsUser != 10001 || *spec.SecurityContext.RunAsGroup != 10001 {
				t.Errorf("pod securityContext %+v", spec.SecurityContext)
			}
			if c.Resources.Requests.Cpu().String() != "250m" || c.Resources.Limits.Memory().String() != "200Mi" {
				t.Errorf("resources %+v", c.Resources)
			}
			if spec.Affinity.NodeAffinity == nil || spec.Affinity.PodAntiAffinity != nil {
				t.Errorf("affinity %+v: want the given one instead of the default", spec.Affinity)
			}
			if len(spec.TopologySpreadConstraints) != 1 || spec.TopologySpreadConstraints[0].WhenUnsatisfiable != corev1.DoNotSchedule {
				t.Errorf("topologySpreadConstraints %+v", spec.TopologySpreadConstraints)
			}
			pdb := find(idx, "PodDisruptionBudget", "policy-reports")
			if pdb == nil || pdb.typed.(*policyv1.PodDisruptionBudget).Spec.MinAvailable.IntValue() != 2 {
				t.Errorf("PodDisruptionBudget %v: want minAvailable 2", pdb)
			}
			sm := find(idx, "ServiceMonitor", "policy-reports")
			if sm == nil {
				t.Fatal("no ServiceMonitor policy-reports")
			}
			checkServiceMonitorTargets(t, sm.u, idx)
			endpoints, _, _ := unstructured.NestedSlice(sm.u.Object, "spec", "endpoints")
			ep := endpoints[0].(map[string]any)
			if ep["interval"] != "1m" || ep["scrapeTimeout"] != "20s" || serviceMonitorTLS(sm)["insecureSkipVerify"] != true {
				t.Errorf("ServiceMonitor endpoint %v", ep)
			}
		},
	},
	{
		name:   "provided service account, no disruption budget",
		values: "serviceAccount: {create: false, name: reports-sa}\npodDisruptionBudget: {enabled: false}",
		want:   expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "managed", saProvided: true},
		check: func(t *testing.T, r rendered, idx index) {
			if sa := deploymentOf(idx).Spec.Template.Spec.ServiceAccountName; sa != "reports-sa" {
				t.Errorf("the server runs as %q, want reports-sa", sa)
			}
			if len(idx["ServiceAccount"]) != 0 || len(idx["PodDisruptionBudget"]) != 0 {
				t.Errorf("unexpected ServiceAccount or PodDisruptionBudget:\n%s", names(append(idx["ServiceAccount"], idx["PodDisruptionBudget"]...)))
			}
		},
	},
	{
		name:   "static, cert-manager durations, other priorities",
		values: "apiService: {managed: false, groupPriorityMinimum: 2000, versionPriority: 50, certManager: {enabled: true, duration: 720h, renewBefore: 240h}}",
		want:   expectation{dbSecret: "reports-server-database", dbKey: "url", tls: "certManager", otherPriorities: true},
		check: func(t *testing.T, r rendered, idx index) {
			for _, as := range typedOf[*apiregistrationv1.APIService](idx, "APIService") {
				if as.Spec.GroupPriorityMinimum != 2000 || as.Spec.VersionPriority != 50 {
					t.Errorf("APIService %s priorities %d, %d; want 2000, 50", as.Name, as.Spec.GroupPriorityMinimum, as.Spec.VersionPriority)
				}
			}
			var durations []string
			for _, c := range idx["Certificate"] {
				if isCA, _, _ := unstructured.NestedBool(c.u.Object, "spec", "isCA"); !isCA {
					d, _, _ := unstructured.NestedString(c.u.Object, "spec", "duration")
					rb, _, _ := unstructured.NestedString(c.u.Object, "spec", "renewBefore")
					durations = append(durations, d, rb)
				}
			}
			if !slices.Equal(durations, []string{"720h", "240h"}) {
				t.Errorf("serving Certificate duration, renewBefore %v; want 720h, 240h", durations)
			}
			checkCertManager(t, idx)
		},
	},
	{
		name: "bundled postgresql, every setting",
		values: `
postgresql:
  enabled: true
  password: Sup3rSecretPassw0rd
  database: policy
  username: policy
  image: {repository: registry.example/postgres, tag: "16", pullPolicy: Always}
  resources: {requests: {cpu: 200m, memory: 512Mi}, limits: {memory: 1Gi}}
`,
		want: expectation{dbSecret: "reports-server-postgresql", dbKey: "url", dbSecretRendered: true, tls: "managed"},
		check: func(t *testing.T, r rendered, idx index) {
			secret := find(idx, "Secret", "reports-server-postgresql").typed.(*corev1.Secret)
			if got, want := string(secret.Data["url"]), "postgres://policy:Sup3rSecretPassw0rd@reports-server-postgresql.reports-server.svc:5432/policy?sslmode=disable"; got != want {
				t.Errorf("url %q, want %q", got, want)
			}
			c := find(idx, "StatefulSet", "reports-server-postgresql").typed.(*appsv1.StatefulSet).Spec.Template.Spec.Containers[0]
			if c.Image != "registry.example/postgres:16" || c.ImagePullPolicy != corev1.PullAlways {
				t.Errorf("PostgreSQL image %s %s", c.Image, c.ImagePullPolicy)
			}
			if c.Resources.Requests.Cpu().String() != "200m" || c.Resources.Limits.Memory().String() != "1Gi" {
				t.Errorf("PostgreSQL resources %+v", c.Resources)
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
		want: expectation{dbSecret: "rs-reports-server-database", dbKey: "url", tls: "managed"},
		check: func(t *testing.T, r rendered, idx index) {
			d := deploymentOf(idx)
			if d.Name != "rs-reports-server" {
				t.Errorf("Deployment name %s", d.Name)
			}
			checkArgs(t, idx, "--cluster-name=prod-eu-1", "--v=2", "--logging-format=json",
				"--service-name=rs-reports-server", "--serving-cert-secret=rs-reports-server-tls")
			c := d.Spec.Template.Spec.Containers[0]
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
			if o := find(idx, "Role", "rs-reports-server:serving-cert"); o == nil || o.u.GetNamespace() != "policy" {
				t.Error("no Role rs-reports-server:serving-cert in the release namespace")
			}
		},
	},
}

// serviceMonitorTLS is the tlsConfig of a ServiceMonitor's first endpoint.
// checkMigrationJob checks the split-role mode: a hook Job runs `migrate up` with the owner's
// URL from secret/key before the server (--migrate=false) is created or updated.
func checkMigrationJob(t *testing.T, idx index, secret, key string, deadline int64, backoff int32) {
	t.Helper()
	checkArgs(t, idx, "--migrate=false")
	job := find(idx, "Job", "reports-server-migrate")
	if job == nil {
		t.Fatal("no Job reports-server-migrate")
	}
	checkHook(t, job, "0")
	j := job.typed.(*batchv1.Job)
	spec := &j.Spec.Template.Spec
	checkRestricted(t, "Job "+j.Name, spec)
	if spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("Job restartPolicy %s, want Never (the Job retries, backoffLimit)", spec.RestartPolicy)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the migration Job mounts a service account token; it talks to PostgreSQL only")
	}
	if j.Spec.ActiveDeadlineSeconds == nil || *j.Spec.ActiveDeadlineSeconds != deadline || j.Spec.BackoffLimit == nil || *j.Spec.BackoffLimit != backoff {
		t.Errorf("Job activeDeadlineSeconds %v, backoffLimit %v; want %d, %d", j.Spec.ActiveDeadlineSeconds, j.Spec.BackoffLimit, deadline, backoff)
	}
	if got := j.Spec.Template.Labels["app.kubernetes.io/component"]; got != "migrations" {
		t.Errorf("Job pods' component label %q: the server's Service and PodDisruptionBudget must not select them", got)
	}
	c := spec.Containers[0]
	if !slices.Equal(c.Args, []string{"migrate", "up"}) {
		t.Errorf("Job args %q, want [migrate up]", c.Args)
	}
	if want := deploymentOf(idx).Spec.Template.Spec.Containers[0].Image; c.Image != want {
		t.Errorf("Job image %s, want the server's %s", c.Image, want)
	}
	var ref *corev1.SecretKeySelector
	for _, e := range c.Env {
		if e.Name == "DATABASE_URL" && e.ValueFrom != nil {
			ref = e.ValueFrom.SecretKeyRef
		}
	}
	if ref == nil || ref.Name != secret || ref.Key != key {
		t.Errorf("Job DATABASE_URL from %+v, want Secret %s key %s", ref, secret, key)
	}
	// The server's container never sees the owner's Secret.
	for _, e := range deploymentOf(idx).Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == secret {
			t.Errorf("the server's %s comes from the owner's Secret %s", e.Name, secret)
		}
	}
}

// checkHook checks that o runs before the release's other objects at install and upgrade,
// ordered by weight.
func checkHook(t *testing.T, o *object, weight string) {
	t.Helper()
	a := o.u.GetAnnotations()
	if a["helm.sh/hook"] != "pre-install,pre-upgrade" || a["helm.sh/hook-weight"] != weight || a["helm.sh/hook-delete-policy"] != "before-hook-creation" {
		t.Errorf("%v: hook annotations %v, want pre-install,pre-upgrade with weight %s, deleted before the next one", o, a, weight)
	}
}

func serviceMonitorTLS(sm *object) map[string]any {
	endpoints, _, _ := unstructured.NestedSlice(sm.u.Object, "spec", "endpoints")
	if len(endpoints) == 0 {
		return nil
	}
	tls, _ := endpoints[0].(map[string]any)["tlsConfig"].(map[string]any)
	return tls
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
				if kube, err = common.ParseKubeVersion(tc.kube); err != nil {
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
		case o.gvk.Kind == "RoleBinding" && o.typed.(*rbacv1.RoleBinding).RoleRef.Name == "extension-apiserver-authentication-reader":
			// The Role it binds lives in kube-system.
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
	old, err := common.ParseKubeVersion("v1.29.9")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := render(t, c, old, "reports-server", "reports-server", ""); err == nil || !strings.Contains(err.Error(), "kubeVersion") {
		t.Errorf("Kubernetes 1.29: err %v, want the chart's kubeVersion constraint", err)
	}
	for _, tc := range []struct{ name, values, want string }{
		{"url and existing secret", "database: {url: 'postgres://x', existingSecret: s}", "set only one of"},
		{"url and bundled postgresql", "database: {url: 'postgres://x'}\npostgresql: {enabled: true}", "set only one of"},
		{"two owner sources", "database: {migrations: {url: 'postgres://x', existingSecret: s}}", "set only one of database.migrations.existingSecret"},
		{"owner with bundled postgresql", "database: {migrations: {url: 'postgres://x'}}\npostgresql: {enabled: true}", "has one role"},
		{"managed with cert-manager", "apiService: {certManager: {enabled: true}}", "apiService.managed=true: the server makes the serving certificate (in the Secret apiService.servingCertSecret) and puts its CA into the APIServices it manages, so apiService.certManager.enabled cannot apply"},
		{"managed with a provided certificate", "apiService: {tls: {existingSecret: s, caBundle: x}}", "so apiService.tls.existingSecret, apiService.tls.caBundle cannot apply"},
		{"managed with insecureSkipTLSVerify", "apiService: {insecureSkipTLSVerify: true}", "so apiService.insecureSkipTLSVerify cannot apply"},
		{"managed with other priorities", "apiService: {groupPriorityMinimum: 2000}", "apply only with apiService.managed=false"},
		{"managed, invalid Secret name", "apiService: {servingCertSecret: Serving_Cert}", "servingCertSecret"},
		{"static cert-manager with insecureSkipTLSVerify", "apiService: {managed: false, insecureSkipTLSVerify: true, certManager: {enabled: true}}", "insecureSkipTLSVerify=false"},
		{"static, no way to trust the certificate", "apiService: {managed: false}", "cannot verify"},
		{"static provided certificate without CA", "apiService: {managed: false, tls: {existingSecret: s}}", "caBundle"},
		{"static cert-manager and provided certificate", "apiService: {managed: false, certManager: {enabled: true}, tls: {existingSecret: s, caBundle: x}}", "set only one of"},
		{"managed not a boolean", "apiService: {managed: 'yes'}", "managed"},
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

// TestChartLint runs helm lint (Chart.yaml, values schema, templates) with the values of every
// rendering case and fails on warnings.
func TestChartLint(t *testing.T) {
	for _, tc := range chartCases {
		t.Run(tc.name, func(t *testing.T) {
			kube := kubeVersion
			if tc.kube != "" {
				kube = mustParseKubeVersion(tc.kube)
			}
			namespace := tc.namespace
			if namespace == "" {
				namespace = "reports-server"
			}
			linter := lint.RunAll(chartDir, caseValues(t, tc), namespace, lint.WithKubeVersion(kube))
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

func caseValues(t *testing.T, tc chartCase) map[string]any {
	t.Helper()
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte(tc.values), &vals); err != nil {
		t.Fatalf("values of %s: %v", tc.name, err)
	}
	return vals
}

// TestChartCasesCoverValues checks that the rendering (and lint) cases set every value
// values.yaml documents, so none goes untried: a value counts as set when a case sets it, a map
// that holds it, or something inside it.
func TestChartCasesCoverValues(t *testing.T) {
	c := loadChart(t)
	var set [][]string
	for _, tc := range chartCases {
		set = append(set, valuePaths(nil, caseValues(t, tc))...)
	}
	for _, doc := range valuePaths(nil, c.Values) {
		covered := slices.ContainsFunc(set, func(p []string) bool {
			n := min(len(p), len(doc))
			return slices.Equal(p[:n], doc[:n])
		})
		if !covered {
			t.Errorf("no case of chartCases sets %s", strings.Join(doc, "."))
		}
	}
}

// valuePaths are the paths of the leaves of values: scalars, lists and empty maps.
func valuePaths(prefix []string, values map[string]any) [][]string {
	var paths [][]string
	for _, k := range slices.Sorted(maps.Keys(values)) {
		path := append(slices.Clone(prefix), k)
		if m, ok := values[k].(map[string]any); ok && len(m) > 0 {
			paths = append(paths, valuePaths(path, m)...)
		} else {
			paths = append(paths, path)
		}
	}
	return paths
}
