package deploy

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/kube-aggregator/pkg/apis/apiregistration"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/kube-aggregator/pkg/apis/apiregistration/validation"
)

// servedFlags are the flags of `reports-server serve`, read from its --help: the deployment
// artifacts may only use these. (A hand-kept list here missed every new flag until someone
// noticed.)
var servedFlags = sync.OnceValues(func() (map[string]bool, error) {
	dir, err := os.MkdirTemp("", "reports-server-flags")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "reports-server")
	build := exec.Command("go", "build", "-o", bin, "./cmd/reports-server")
	build.Dir = filepath.Join("..", "..")
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build reports-server: %w\n%s", err, out)
	}
	help, err := exec.Command(bin, "serve", "--help").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("reports-server serve --help: %w\n%s", err, help)
	}
	flags := map[string]bool{}
	for _, m := range flagInHelp.FindAllSubmatch(help, -1) {
		flags[string(m[1])] = true
	}
	if !flags["database-url"] || !flags["secure-port"] {
		return nil, fmt.Errorf("reports-server serve --help lists no --database-url or --secure-port:\n%s", help)
	}
	return flags, nil
})

// flagInHelp matches a flag where cobra's help lists it: "  -v, --v Level" or "      --secure-port int".
var flagInHelp = regexp.MustCompile(`(?m)^\s+(?:-[a-zA-Z], )?--([a-z0-9][a-z0-9-]*)`)

func isKnownServeFlag(t *testing.T, name string) bool {
	t.Helper()
	flags, err := servedFlags()
	if err != nil {
		t.Fatal(err)
	}
	return flags[name]
}

// allAPIServices are the report group/versions the server serves.
var allAPIServices = []string{"v1alpha2.wgpolicyk8s.io", "v1.reports.kyverno.io", "v1alpha1.openreports.io"}

// analyticsAPIService is the findings group, served with whichever report groups are.
const analyticsAPIService = "v1alpha1.analytics.reports-server.io"

// servedResources are the resources of each report group/version (by APIService name).
var servedResources = map[string][]string{
	"v1alpha2.wgpolicyk8s.io": {"policyreports", "clusterpolicyreports"},
	"v1.reports.kyverno.io":   {"ephemeralreports", "clusterephemeralreports"},
	"v1alpha1.openreports.io": {"reports", "clusterreports"},
}

// expectation is what a rendered set must contain beyond the common invariants.
type expectation struct {
	namespace string // of the server's namespaced objects
	// apiServices are the report group/versions routed to the server (APIService names); the
	// analytics group comes with them.
	apiServices []string
	// dbSecret and dbKey: where DATABASE_URL comes from; dbSecretRendered: whether that Secret is
	// part of the set (else the user provides it).
	dbSecret, dbKey  string
	dbSecretRendered bool
	// saProvided: the server's ServiceAccount is the user's (serviceAccount.create=false), not
	// part of the set.
	saProvided bool
	// otherPriorities: static APIServices with priorities other than a CRD's (1000/100).
	otherPriorities bool
	// tls says who makes the serving certificate and the APIServices:
	//   - "managed": the server (--manage-apiservices, a certificate shared through a Secret it
	//     creates); nothing renders APIService objects;
	//   - "selfSigned" (--cert-dir, static APIServices with insecureSkipTLSVerify), "certManager"
	//     (mounted Secret, CA injected) or "secret" (mounted Secret, caBundle): static APIServices,
	//     and the server leaves them alone (--manage-apiservices=false).
	tls string
}

// managed reports whether the server creates and keeps its APIServices.
func (e expectation) managed() bool { return e.tls == "managed" }

// routed are the names of every APIService that routes to the server: the report groups and
// the analytics group.
func (e expectation) routed() []string {
	return append(slices.Clone(e.apiServices), analyticsAPIService)
}

// index groups objects by kind.
type index map[string][]object

func indexObjects(objs []object) index {
	idx := index{}
	for _, o := range objs {
		idx[o.gvk.Kind] = append(idx[o.gvk.Kind], o)
	}
	return idx
}

func typedOf[T any](idx index, kind string) []T {
	var out []T
	for _, o := range idx[kind] {
		out = append(out, o.typed.(T))
	}
	return out
}

// checkInvariants checks what every installation (plain manifests or chart) must satisfy.
func checkInvariants(t *testing.T, objs []object, want expectation) {
	t.Helper()
	idx := indexObjects(objs)

	// Unique names per kind and namespace.
	seen := map[string]bool{}
	for _, o := range objs {
		key := o.gvk.String() + "/" + o.u.GetNamespace() + "/" + o.u.GetName()
		if seen[key] {
			t.Errorf("duplicate %v", o)
		}
		seen[key] = true
	}

	deployments := typedOf[*appsv1.Deployment](idx, "Deployment")
	if len(deployments) != 1 {
		t.Fatalf("want 1 Deployment, got %d", len(deployments))
	}
	deploy := deployments[0]
	if deploy.Namespace != want.namespace {
		t.Errorf("Deployment namespace %q, want %q", deploy.Namespace, want.namespace)
	}
	checkDeployment(t, deploy, want)
	podLabels := labels.Set(deploy.Spec.Template.Labels)

	// Every pod template (server and bundled PostgreSQL) meets the restricted Pod Security
	// Standard.
	checkRestricted(t, "Deployment "+deploy.Name, &deploy.Spec.Template.Spec)
	for _, sts := range typedOf[*appsv1.StatefulSet](idx, "StatefulSet") {
		checkRestricted(t, "StatefulSet "+sts.Name, &sts.Spec.Template.Spec)
		var claims []string
		for _, c := range sts.Spec.VolumeClaimTemplates {
			claims = append(claims, c.Name)
		}
		checkVolumes(t, "StatefulSet "+sts.Name, &sts.Spec.Template.Spec, claims...)
		checkSelector(t, "StatefulSet "+sts.Name, sts.Spec.Selector.MatchLabels, sts.Spec.Template.Labels)
	}

	// The Service selects the server's pods and forwards 443 to the named container port.
	var service *corev1.Service
	for _, svc := range typedOf[*corev1.Service](idx, "Service") {
		if labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
			if service != nil {
				t.Errorf("Services %s and %s both select the server's pods", service.Name, svc.Name)
			}
			service = svc
		}
	}
	if service == nil {
		t.Fatal("no Service selects the server's pods")
	}
	if len(service.Spec.Ports) != 1 || service.Spec.Ports[0].Port != 443 ||
		service.Spec.Ports[0].TargetPort != intstr.FromString("https") {
		t.Errorf("Service %s ports %+v, want 443 → https", service.Name, service.Spec.Ports)
	}

	// Static APIServices point at that Service and are valid as kube-apiserver validates them;
	// managed ones are the server's to make, from its flags.
	var names []string
	for _, as := range typedOf[*apiregistrationv1.APIService](idx, "APIService") {
		names = append(names, as.Name)
		checkAPIService(t, as, service, want)
	}
	slices.Sort(names)
	var wantNames []string
	if !want.managed() {
		wantNames = slices.Sorted(slices.Values(want.routed()))
	}
	if !slices.Equal(names, wantNames) {
		t.Errorf("APIServices %v, want %v", names, wantNames)
	}
	checkAPIServiceFlags(t, deploy, service, want)

	// PodDisruptionBudgets select the server's pods.
	for _, pdb := range typedOf[*policyv1.PodDisruptionBudget](idx, "PodDisruptionBudget") {
		if !labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(podLabels) {
			t.Errorf("PodDisruptionBudget %s does not select the server's pods", pdb.Name)
		}
		if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() >= int(*deploy.Spec.Replicas) {
			t.Errorf("PodDisruptionBudget %s minAvailable %v with %d replicas", pdb.Name, pdb.Spec.MinAvailable, *deploy.Spec.Replicas)
		}
	}

	checkRBAC(t, idx, deploy, want)
	checkViewRole(t, idx, want)
	checkDatabaseSecret(t, idx, want)
}

// checkViewRole checks the ClusterRole aggregated into view/edit/admin, if the set has one: read
// access to the served report kinds and their findings, nothing else.
func checkViewRole(t *testing.T, idx index, want expectation) {
	t.Helper()
	for _, cr := range typedOf[*rbacv1.ClusterRole](idx, "ClusterRole") {
		if cr.Labels["rbac.authorization.k8s.io/aggregate-to-view"] != "true" {
			continue
		}
		for _, as := range want.apiServices {
			_, group, _ := strings.Cut(as, ".")
			for _, res := range servedResources[as] {
				if !allows(cr.Rules, group, res, "watch", "") {
					t.Errorf("ClusterRole %s: viewers cannot watch %s.%s", cr.Name, res, group)
				}
			}
		}
		for _, res := range []string{"findings", "clusterfindings", "findingsummaries"} {
			if !allows(cr.Rules, "analytics.reports-server.io", res, "list", "") {
				t.Errorf("ClusterRole %s: viewers cannot list %s", cr.Name, res)
			}
		}
		for _, r := range cr.Rules {
			for _, v := range r.Verbs {
				if !slices.Contains([]string{"get", "list", "watch"}, v) {
					t.Errorf("ClusterRole %s: aggregated into view, but grants %s on %v", cr.Name, v, r.Resources)
				}
			}
		}
	}
}

func checkSelector(t *testing.T, what string, selector, podLabels map[string]string) {
	t.Helper()
	if len(selector) == 0 || !labels.SelectorFromSet(selector).Matches(labels.Set(podLabels)) {
		t.Errorf("%s: selector %v does not match its pod labels %v", what, selector, podLabels)
	}
}

func checkDeployment(t *testing.T, d *appsv1.Deployment, want expectation) {
	t.Helper()
	checkSelector(t, "Deployment "+d.Name, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 1 {
		t.Errorf("Deployment replicas %v", d.Spec.Replicas)
	}
	spec := &d.Spec.Template.Spec
	if spec.ServiceAccountName == "" {
		t.Error("Deployment: no serviceAccountName")
	}
	checkVolumes(t, "Deployment "+d.Name, spec)
	if len(spec.Containers) != 1 {
		t.Fatalf("Deployment: want 1 container, got %d", len(spec.Containers))
	}
	c := spec.Containers[0]

	// Arguments: the serve command and flags it has.
	if len(c.Command) != 0 {
		t.Errorf("container command %q: the image's entrypoint is the binary", c.Command)
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Fatalf("container args %q: want the serve command first", c.Args)
	}
	flags := map[string]string{}
	for _, arg := range c.Args[1:] {
		if !strings.HasPrefix(arg, "-") {
			t.Errorf("argument %q: want --flag=value", arg)
			continue
		}
		name, value, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if !isKnownServeFlag(t, name) {
			t.Errorf("argument %q: `reports-server serve` has no flag --%s", arg, name)
		}
		if _, dup := flags[name]; dup {
			t.Errorf("flag --%s given twice", name)
		}
		flags[name] = value
	}
	if flags["secure-port"] != "6443" {
		t.Errorf("--secure-port=%q, want 6443", flags["secure-port"])
	}
	if flags["cluster-name"] == "" {
		t.Error("--cluster-name missing or empty")
	}
	if _, ok := flags["database-url"]; ok {
		t.Error("--database-url on the command line: the URL holds a password; use $DATABASE_URL from a Secret")
	}
	if _, ok := flags["standalone"]; ok {
		t.Error("--standalone in a cluster deployment")
	}
	switch want.tls {
	case "managed":
		if flags["tls-cert-file"] != "" || flags["tls-private-key-file"] != "" {
			t.Errorf("managed mode: --tls-cert-file would bypass the shared certificate whose CA the APIServices carry, got %v", flags)
		}
		if flags["serving-cert-secret"] == "" {
			t.Error("managed mode: want --serving-cert-secret (the certificate all replicas share)")
		}
		// The certificate is written to a temporary directory at start.
		checkWritable(t, c, spec, "/tmp")
	case "selfSigned":
		if flags["cert-dir"] == "" || flags["tls-cert-file"] != "" {
			t.Errorf("self-signed mode: want --cert-dir and no --tls-cert-file, got %v", flags)
		}
		checkWritable(t, c, spec, flags["cert-dir"])
	default:
		for _, f := range []string{"tls-cert-file", "tls-private-key-file"} {
			if !mountedFromSecret(c, spec, flags[f]) {
				t.Errorf("--%s=%q is not in a mounted Secret", f, flags[f])
			}
		}
	}

	// The database URL comes from a Secret.
	var db *corev1.EnvVar
	for i := range c.Env {
		if c.Env[i].Name == "DATABASE_URL" {
			db = &c.Env[i]
		}
	}
	if db == nil || db.ValueFrom == nil || db.ValueFrom.SecretKeyRef == nil {
		t.Fatal("DATABASE_URL: want a secretKeyRef")
	}
	if ref := db.ValueFrom.SecretKeyRef; ref.Name != want.dbSecret || ref.Key != want.dbKey {
		t.Errorf("DATABASE_URL from Secret %s key %s, want %s key %s", ref.Name, ref.Key, want.dbSecret, want.dbKey)
	}

	// Probes over HTTPS on the named port.
	if len(c.Ports) != 1 || c.Ports[0].Name != "https" || c.Ports[0].ContainerPort != 6443 {
		t.Errorf("container ports %+v, want https 6443", c.Ports)
	}
	checkProbe(t, "readiness", c.ReadinessProbe, "/readyz")
	checkProbe(t, "liveness", c.LivenessProbe, "/livez")
	if c.StartupProbe != nil {
		checkProbe(t, "startup", c.StartupProbe, "/livez")
	}

	// Memory: the server's target is below 300 MB.
	limit := c.Resources.Limits.Memory()
	if limit.IsZero() || limit.Cmp(resource.MustParse("300Mi")) > 0 {
		t.Errorf("memory limit %v, want set and at most 300Mi", limit)
	}
	if req := c.Resources.Requests.Memory(); req.IsZero() || req.Cmp(*limit) > 0 {
		t.Errorf("memory request %v, want set and at most the limit %v", req, limit)
	}
}

func checkProbe(t *testing.T, what string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s probe: want an HTTP GET", what)
		return
	}
	g := p.HTTPGet
	if g.Path != path || g.Scheme != corev1.URISchemeHTTPS || g.Port != intstr.FromString("https") {
		t.Errorf("%s probe %s %s port %v, want HTTPS %s on https", what, g.Scheme, g.Path, g.Port.String(), path)
	}
}

// checkRestricted checks the restricted Pod Security Standard, plus a read-only root filesystem.
func checkRestricted(t *testing.T, what string, spec *corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	podNonRoot := psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
	podSeccomp := psc != nil && psc.SeccompProfile != nil && psc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("%s: host namespaces", what)
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("%s: hostPath volume %s", what, v.Name)
		}
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s/%s: no securityContext", what, c.Name)
			continue
		}
		if !podNonRoot && (sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) {
			t.Errorf("%s/%s: runAsNonRoot not set", what, c.Name)
		}
		if !podSeccomp && (sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
			t.Errorf("%s/%s: seccomp profile not RuntimeDefault", what, c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s/%s: allowPrivilegeEscalation not false", what, c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s/%s: root filesystem not read-only", what, c.Name)
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("%s/%s: capabilities %+v, want drop ALL and add none", what, c.Name, sc.Capabilities)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s/%s: privileged", what, c.Name)
		}
	}
}

// checkVolumes checks that every mount names a volume of the pod (or one of claims, a
// StatefulSet's volume claim templates).
func checkVolumes(t *testing.T, what string, spec *corev1.PodSpec, claims ...string) {
	t.Helper()
	volumes := map[string]bool{}
	for _, c := range claims {
		volumes[c] = true
	}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
	}
	for _, c := range spec.Containers {
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				t.Errorf("%s/%s: mount of unknown volume %q", what, c.Name, m.Name)
			}
		}
	}
}

// mountFor returns the mount and volume that hold path in container c.
func mountFor(c corev1.Container, spec *corev1.PodSpec, path string) (*corev1.VolumeMount, *corev1.Volume) {
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		if path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			for j := range spec.Volumes {
				if spec.Volumes[j].Name == m.Name {
					return m, &spec.Volumes[j]
				}
			}
		}
	}
	return nil, nil
}

// checkWritable checks that dir is on a writable emptyDir (the root filesystem is read-only).
func checkWritable(t *testing.T, c corev1.Container, spec *corev1.PodSpec, dir string) {
	t.Helper()
	m, v := mountFor(c, spec, dir)
	if m == nil || m.ReadOnly || v.EmptyDir == nil {
		t.Errorf("%s is not on a writable emptyDir", dir)
	}
}

func mountedFromSecret(c corev1.Container, spec *corev1.PodSpec, path string) bool {
	_, v := mountFor(c, spec, path)
	return path != "" && v != nil && v.Secret != nil
}

func checkAPIService(t *testing.T, as *apiregistrationv1.APIService, svc *corev1.Service, want expectation) {
	t.Helper()
	if as.Name != as.Spec.Version+"."+as.Spec.Group {
		t.Errorf("APIService %s: name is not <version>.<group>", as.Name)
	}
	ref := as.Spec.Service
	if ref == nil || ref.Name != svc.Name || ref.Namespace != svc.Namespace || ref.Port == nil || *ref.Port != 443 {
		t.Errorf("APIService %s: service %+v, want %s/%s port 443", as.Name, ref, svc.Namespace, svc.Name)
	}
	// With otherPriorities the case checks the values it gave.
	if !want.otherPriorities && (as.Spec.GroupPriorityMinimum != 1000 || as.Spec.VersionPriority != 100) {
		t.Errorf("APIService %s: priorities %d/%d, want those of a CRD (1000/100)", as.Name, as.Spec.GroupPriorityMinimum, as.Spec.VersionPriority)
	}
	injected := as.Annotations["cert-manager.io/inject-ca-from"]
	switch want.tls {
	case "selfSigned":
		if !as.Spec.InsecureSkipTLSVerify || len(as.Spec.CABundle) != 0 || injected != "" {
			t.Errorf("APIService %s: want insecureSkipTLSVerify only", as.Name)
		}
	case "certManager":
		if as.Spec.InsecureSkipTLSVerify || injected == "" {
			t.Errorf("APIService %s: want a cert-manager CA injection and verification", as.Name)
		}
	case "secret":
		if as.Spec.InsecureSkipTLSVerify || len(as.Spec.CABundle) == 0 {
			t.Errorf("APIService %s: want a caBundle and verification", as.Name)
		}
	}
	// kube-aggregator's own validation of the object.
	internal := &apiregistration.APIService{}
	if err := scheme.Convert(as, internal, nil); err != nil {
		t.Fatalf("APIService %s: convert: %v", as.Name, err)
	}
	if errs := validation.ValidateAPIService(context.Background(), internal); len(errs) > 0 {
		t.Errorf("APIService %s: invalid: %v", as.Name, errs.ToAggregate())
	}
}

// boundTo reports whether a subject list names the service account.
func boundTo(subjects []rbacv1.Subject, sa, namespace string) bool {
	for _, s := range subjects {
		if s.Kind == rbacv1.ServiceAccountKind && s.Name == sa && s.Namespace == namespace {
			return true
		}
	}
	return false
}

func checkRBAC(t *testing.T, idx index, deploy *appsv1.Deployment, want expectation) {
	t.Helper()
	sa := deploy.Spec.Template.Spec.ServiceAccountName
	found := false
	for _, s := range typedOf[*corev1.ServiceAccount](idx, "ServiceAccount") {
		found = found || (s.Name == sa && s.Namespace == deploy.Namespace)
	}
	if found == want.saProvided {
		t.Errorf("ServiceAccount %s/%s: part of the set %v, want %v", deploy.Namespace, sa, found, !want.saProvided)
	}

	clusterRoles := map[string]*rbacv1.ClusterRole{}
	for _, cr := range typedOf[*rbacv1.ClusterRole](idx, "ClusterRole") {
		clusterRoles[cr.Name] = cr
	}
	var authDelegator bool
	var serverRules []rbacv1.PolicyRule
	for _, crb := range typedOf[*rbacv1.ClusterRoleBinding](idx, "ClusterRoleBinding") {
		if !boundTo(crb.Subjects, sa, deploy.Namespace) || crb.RoleRef.Kind != "ClusterRole" {
			t.Errorf("ClusterRoleBinding %s: not bound to the server's service account", crb.Name)
			continue
		}
		if crb.RoleRef.Name == "system:auth-delegator" {
			authDelegator = true
		} else if cr := clusterRoles[crb.RoleRef.Name]; cr != nil {
			serverRules = append(serverRules, cr.Rules...)
		} else {
			t.Errorf("ClusterRoleBinding %s: ClusterRole %s is not part of the set", crb.Name, crb.RoleRef.Name)
		}
	}
	if !authDelegator {
		t.Error("no ClusterRoleBinding to system:auth-delegator (TokenReview, SubjectAccessReview)")
	}

	var authReader bool
	for _, rb := range typedOf[*rbacv1.RoleBinding](idx, "RoleBinding") {
		if rb.Namespace == "kube-system" && rb.RoleRef.Kind == "Role" &&
			rb.RoleRef.Name == "extension-apiserver-authentication-reader" && boundTo(rb.Subjects, sa, deploy.Namespace) {
			authReader = true
		}
	}
	if !authReader {
		t.Error("no RoleBinding in kube-system to the Role extension-apiserver-authentication-reader")
	}

	// What RecommendedOptions' admission plugins and priority and fairness read, and the
	// APIService objects the server manages.
	for _, need := range []struct{ group, resource, verb, name string }{
		{"", "namespaces", "watch", ""},
		{"admissionregistration.k8s.io", "mutatingwebhookconfigurations", "list", ""},
		{"admissionregistration.k8s.io", "validatingwebhookconfigurations", "list", ""},
		{"admissionregistration.k8s.io", "validatingadmissionpolicies", "watch", ""},
		{"admissionregistration.k8s.io", "validatingadmissionpolicybindings", "watch", ""},
		{"admissionregistration.k8s.io", "mutatingadmissionpolicies", "watch", ""},
		{"admissionregistration.k8s.io", "mutatingadmissionpolicybindings", "watch", ""},
		{"flowcontrol.apiserver.k8s.io", "flowschemas", "watch", ""},
		{"flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations", "watch", ""},
	} {
		if !allows(serverRules, need.group, need.resource, need.verb, need.name) {
			t.Errorf("the server's ClusterRole does not allow %s on %s.%s", need.verb, need.resource, need.group)
		}
	}
	if want.managed() {
		checkManagedRBAC(t, idx, serverRules, sa, deploy, want)
	}
	if allows(serverRules, "apiregistration.k8s.io", "apiservices", "update", "v1.apps") {
		t.Error("the server's ClusterRole may update APIServices other than its own")
	}
	for _, r := range serverRules {
		if slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") {
			t.Errorf("the server's ClusterRole has a wildcard rule %+v", r)
		}
	}
}

// checkManagedRBAC checks what the server needs to keep its APIServices, to share its serving
// certificate through a Secret, and to migrate its groups from CRDs.
func checkManagedRBAC(t *testing.T, idx index, serverRules []rbacv1.PolicyRule, sa string, deploy *appsv1.Deployment, want expectation) {
	t.Helper()
	if !allows(serverRules, "apiregistration.k8s.io", "apiservices", "create", "") {
		t.Error("the server's ClusterRole does not allow creating APIServices")
	}
	for _, name := range want.routed() {
		for _, verb := range []string{"get", "update", "patch", "delete"} {
			if !allows(serverRules, "apiregistration.k8s.io", "apiservices", verb, name) {
				t.Errorf("the server's ClusterRole does not allow %s on APIService %s", verb, name)
			}
		}
	}
	for _, name := range allAPIServices {
		if !slices.Contains(want.apiServices, name) && allows(serverRules, "apiregistration.k8s.io", "apiservices", "update", name) {
			t.Errorf("the server's ClusterRole may update APIService %s of a group it does not serve", name)
		}
	}

	// The serving certificate's Secret, in the server's namespace.
	flags := serveFlags(deploy)
	secret := flags["serving-cert-secret"]
	var secretRules []rbacv1.PolicyRule
	roles := map[string]*rbacv1.Role{}
	for _, r := range typedOf[*rbacv1.Role](idx, "Role") {
		roles[r.Namespace+"/"+r.Name] = r
	}
	for _, rb := range typedOf[*rbacv1.RoleBinding](idx, "RoleBinding") {
		if rb.Namespace != deploy.Namespace || rb.RoleRef.Kind != "Role" || !boundTo(rb.Subjects, sa, deploy.Namespace) {
			continue
		}
		if r := roles[rb.Namespace+"/"+rb.RoleRef.Name]; r != nil {
			secretRules = append(secretRules, r.Rules...)
		} else {
			t.Errorf("RoleBinding %s: Role %s is not part of the set", rb.Name, rb.RoleRef.Name)
		}
	}
	for _, verb := range []string{"get", "update"} {
		if !allows(secretRules, "", "secrets", verb, secret) {
			t.Errorf("no Role in %s allows %s on Secret %s (--serving-cert-secret)", deploy.Namespace, verb, secret)
		}
	}
	if !allows(secretRules, "", "secrets", "create", "") {
		t.Errorf("no Role in %s allows creating Secret %s (--serving-cert-secret)", deploy.Namespace, secret)
	}
	if allows(secretRules, "", "secrets", "get", "some-other-secret") {
		t.Error("the server may read Secrets other than its serving certificate's")
	}

	// Migration from CRDs: the CRDs of the served groups, and their objects, read-only.
	if flags["migrate-from-crds"] == "false" {
		return
	}
	for _, as := range want.apiServices {
		_, group, _ := strings.Cut(as, ".")
		for _, res := range servedResources[as] {
			if !allows(serverRules, "apiextensions.k8s.io", "customresourcedefinitions", "get", res+"."+group) {
				t.Errorf("migration: the server's ClusterRole does not allow get on CRD %s.%s", res, group)
			}
			for _, verb := range []string{"get", "list", "watch"} {
				if !allows(serverRules, group, res, verb, "") {
					t.Errorf("migration: the server's ClusterRole does not allow %s on %s.%s", verb, res, group)
				}
			}
			if allows(serverRules, group, res, "update", "") || allows(serverRules, group, res, "delete", "") {
				t.Errorf("migration: the server may change the CRD objects of %s.%s", res, group)
			}
		}
	}
}

// serveFlags are the Deployment container's flags by name (checkDeployment checks their form).
func serveFlags(d *appsv1.Deployment) map[string]string {
	flags := map[string]string{}
	args := d.Spec.Template.Spec.Containers[0].Args
	for _, arg := range args[min(1, len(args)):] {
		name, value, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		flags[name] = value
	}
	return flags
}

// checkAPIServiceFlags checks the flags that say which groups the server serves and who keeps
// their APIServices: with managed APIServices they must name the Service and namespace the
// set installs and the groups it routes; otherwise the server must leave the static ones alone.
func checkAPIServiceFlags(t *testing.T, d *appsv1.Deployment, svc *corev1.Service, want expectation) {
	t.Helper()
	flags := serveFlags(d)
	if !want.managed() {
		if flags["manage-apiservices"] != "false" {
			t.Error("static APIServices: want --manage-apiservices=false, or the server would rewrite them")
		}
		return
	}
	if v, ok := flags["manage-apiservices"]; ok && v != "true" {
		t.Errorf("--manage-apiservices=%s, want true", v)
	}
	name := cmp.Or(flags["service-name"], "reports-server")
	if name != svc.Name {
		t.Errorf("--service-name=%s, want the Service %s", name, svc.Name)
	}
	if port := cmp.Or(flags["service-port"], "443"); port != "443" {
		t.Errorf("--service-port=%s, want 443", port)
	}
	// The namespace: --service-namespace, else $POD_NAMESPACE from the downward API.
	ns := flags["service-namespace"]
	if ns == "" {
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace" {
				ns = d.Namespace
			}
		}
	}
	if ns != svc.Namespace {
		t.Errorf("the server's Service namespace is %q (--service-namespace or POD_NAMESPACE from metadata.namespace), want %s", ns, svc.Namespace)
	}
	// --api-groups: absent means every group.
	var groups []string
	for _, as := range want.apiServices {
		_, g, _ := strings.Cut(as, ".")
		groups = append(groups, g)
	}
	got := strings.Split(flags["api-groups"], ",")
	if flags["api-groups"] == "" {
		got = nil
		for _, as := range allAPIServices {
			_, g, _ := strings.Cut(as, ".")
			got = append(got, g)
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(groups))) {
		t.Errorf("--api-groups=%q serves %v, want %v", flags["api-groups"], got, groups)
	}
}

// allows is a small RBAC evaluator for rules without wildcards.
func allows(rules []rbacv1.PolicyRule, group, res, verb, name string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, res) && slices.Contains(r.Verbs, verb) &&
			(len(r.ResourceNames) == 0 || slices.Contains(r.ResourceNames, name)) {
			return true
		}
	}
	return false
}

func checkDatabaseSecret(t *testing.T, idx index, want expectation) {
	t.Helper()
	var secret *corev1.Secret
	for _, s := range typedOf[*corev1.Secret](idx, "Secret") {
		if s.Name == want.dbSecret && s.Namespace == want.namespace {
			secret = s
		}
	}
	if !want.dbSecretRendered {
		if secret != nil {
			t.Errorf("Secret %s is rendered; the user provides it", want.dbSecret)
		}
		return
	}
	if secret == nil {
		t.Fatalf("Secret %s is not rendered", want.dbSecret)
	}
	url := string(secret.Data[want.dbKey])
	if url == "" {
		url = secret.StringData[want.dbKey]
	}
	if !strings.HasPrefix(url, "postgres://") {
		t.Errorf("Secret %s key %s = %q, want a postgres:// URL", secret.Name, want.dbKey, url)
	}
}

func names(objs []object) string {
	var out []string
	for _, o := range objs {
		out = append(out, fmt.Sprint(o))
	}
	return strings.Join(out, "\n")
}
