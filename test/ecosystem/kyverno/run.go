package kyverno

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// Namespace is where Kyverno's configuration, leases and certificates live, as the Helm chart
// installs it.
const Namespace = "kyverno"

// Names of the controllers' ServiceAccounts and Deployments in the Helm chart; Kyverno reads them
// from its environment (pkg/config) and checks, e.g., that the reports controller's
// ServiceAccount may read what a policy matches before it reports on it.
const (
	ReportsControllerName   = "kyverno-reports-controller"
	AdmissionControllerName = "kyverno-admission-controller"
	// serviceName is the admission controller's Service (KYVERNO_SVC); it names the secrets of
	// the webhooks' certificates, which the admission controller generates itself.
	serviceName = "kyverno-svc"
)

// Install prepares the cluster for Kyverno as its Helm chart would, minus the report CRDs, which
// reports-server serves: the namespace, the CRDs of kyverno.io and policies.kyverno.io from the
// module's config/crds, the ConfigMaps the controllers read at start-up, and the controllers'
// ServiceAccounts, bound to cluster-admin (the chart's ClusterRoles are finer; what matters here
// is that Kyverno's own permission checks on those ServiceAccounts pass).
func Install(ctx context.Context, c *cluster.Cluster, b *Binaries) error {
	steps := []struct {
		what string
		run  func() error
	}{
		{"namespace, ConfigMaps and ServiceAccounts", func() error { return apply(ctx, c, baseObjects()) }},
		{"CRDs", func() error { return installCRDs(ctx, c, b.ModuleDir) }},
	}
	for _, s := range steps {
		if err := s.run(); err != nil {
			return fmt.Errorf("install Kyverno's %s: %w", s.what, err)
		}
	}
	return nil
}

// installCRDs applies Kyverno's policy CRDs, not config/crds/policyreport nor config/crds/reports
// (reports-server serves those groups), and waits until they are established.
func installCRDs(ctx context.Context, c *cluster.Cluster, moduleDir string) error {
	for _, group := range []string{"kyverno", "policies.kyverno.io"} {
		dir := filepath.Join(moduleDir, "config", "crds", group)
		// Server-side: the CRDs are too large for the last-applied annotation of client-side apply.
		if _, stderr, err := c.Kubectl(ctx, nil, "apply", "--server-side", "-f", dir); err != nil {
			return fmt.Errorf("%w\n%s", err, stderr)
		}
	}
	_, stderr, err := c.Kubectl(ctx, nil, "wait", "--for=condition=Established", "--timeout=2m", "crd", "--all")
	if err != nil {
		return fmt.Errorf("%w\n%s", err, stderr)
	}
	return nil
}

// InstallReportCRDs applies Kyverno's report CRDs (config/crds/policyreport and
// config/crds/reports of the module), as Kyverno's chart installs them when reports-server is not
// used: for a cluster without reports-server, where the reports live in etcd. Install must have
// run, or run after it.
func InstallReportCRDs(ctx context.Context, c *cluster.Cluster, b *Binaries) error {
	for _, group := range []string{"policyreport", "reports"} {
		dir := filepath.Join(b.ModuleDir, "config", "crds", group)
		if _, stderr, err := c.Kubectl(ctx, nil, "apply", "--server-side", "-f", dir); err != nil {
			return fmt.Errorf("install Kyverno's report CRDs from %s: %w\n%s", dir, err, stderr)
		}
	}
	_, stderr, err := c.Kubectl(ctx, nil, "wait", "--for=condition=Established", "--timeout=2m", "crd", "--all")
	if err != nil {
		return fmt.Errorf("wait for Kyverno's report CRDs: %w\n%s", err, stderr)
	}
	return nil
}

func apply(ctx context.Context, c *cluster.Cluster, manifest string) error {
	if _, stderr, err := c.Kubectl(ctx, []byte(manifest), "apply", "-f", "-"); err != nil {
		return fmt.Errorf("%w\n%s", err, stderr)
	}
	return nil
}

// baseObjects are the namespace, the two ConfigMaps every controller reads at start-up (with the
// chart's defaults that matter: the resource filters and the webhooks' namespace selector, which
// keeps the webhooks away from Kyverno's own namespace and kube-system) and the ServiceAccounts.
func baseObjects() string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: kyverno
  namespace: %[1]s
data:
  resourceFilters: '[Event,*,*][*/*,kube-system,*][*/*,kube-public,*][*/*,kube-node-lease,*][Node,*,*][APIService,*,*][TokenReview,*,*][SubjectAccessReview,*,*][SelfSubjectAccessReview,*,*][Binding,*,*][Pod/binding,*,*][ReplicaSet,*,*][ReportChangeRequest,*,*][ClusterReportChangeRequest,*,*][*/*,%[1]s,*]'
  webhooks: '{"namespaceSelector":{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system","%[1]s"]}]}}'
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: kyverno-metrics
  namespace: %[1]s
data:
  namespaces: '{"include":[],"exclude":[]}'
`, Namespace)
	for _, sa := range []string{ReportsControllerName, AdmissionControllerName} {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: %[1]s
  namespace: %[2]s
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: %[1]s-e2e
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
- kind: ServiceAccount
  name: %[1]s
  namespace: %[2]s
`, sa, Namespace)
	}
	return b.String()
}

// env is a controller's environment as the chart's Deployment sets it (the downward API's pod
// name is the Deployment's name with a suffix).
func env(name string) []string {
	return []string{
		"KYVERNO_NAMESPACE=" + Namespace,
		"KYVERNO_POD_NAME=" + name + "-0",
		"KYVERNO_SERVICEACCOUNT_NAME=" + name,
		"KYVERNO_DEPLOYMENT=" + name,
		"KYVERNO_SVC=" + serviceName,
		"INIT_CONFIG=kyverno",
		"METRICS_CONFIG=kyverno-metrics",
	}
}

// commonArgs are the flags both controllers get: the cluster's admin kubeconfig (out of cluster
// there is no in-cluster configuration), no metrics or profiling servers (they would compete for
// ports), and a leader-election period long enough that Freeze can stop a controller for a minute
// without it losing its lease (a leader gives up five periods after its last renewal).
func commonArgs(c *cluster.Cluster) ([]string, error) {
	// The metrics server starts even with --disableMetrics (which only stops the export), on
	// port 8000 of every address unless told otherwise: one port each, on loopback.
	port, err := freePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	return []string{
		"--kubeconfig=" + c.AdminKubeconfig,
		"--disableMetrics=true",
		"--metricsHost=127.0.0.1",
		"--metricsPort=" + strconv.Itoa(port),
		"--leaderElectionRetryPeriod=20s",
		"--loggingFormat=text",
		"--disableLogColor=true",
		"--v=2",
	}, nil
}

// ReportsControllerOptions tune the reports controller for tests.
type ReportsControllerOptions struct {
	// BackgroundScanInterval is how often every resource is scanned again (Kyverno's default is an
	// hour; changed resources are scanned when they change, whatever the interval).
	BackgroundScanInterval time.Duration
	// ReportCRDs says the report CRDs are installed (InstallReportCRDs) and no reports-server
	// serves the report APIs: the controller then runs as Kyverno's chart runs it by default,
	// with its check that the CRDs exist.
	ReportCRDs bool
	// ExtraArgs are more flags, e.g. PolicyExceptionArgs.
	ExtraArgs []string
}

// PolicyExceptionArgs turn on PolicyExceptions (kyverno.io/v2), in every namespace, as Kyverno's
// chart does with features.policyExceptions (off by default; its conformance tests turn it on).
// Both the admission and the reports controller need them: each applies exceptions itself.
func PolicyExceptionArgs() []string {
	return []string{"--enablePolicyException=true", "--exceptionNamespace=*"}
}

// StartReportsController runs cmd/reports-controller out of cluster and waits until it leads
// (its controllers run only on the leader). Unless o.ReportCRDs, it runs with
// --reportsCRDsSanityChecks=false, which is what a user of reports-server must set too: the
// controller otherwise exits because the report CRDs, which reports-server replaces by
// APIServices, are absent.
func StartReportsController(ctx context.Context, c *cluster.Cluster, b *Binaries, o ReportsControllerOptions) (*cluster.Process, error) {
	args, err := commonArgs(c)
	if err != nil {
		return nil, err
	}
	args = append(args, "--backgroundScanInterval="+o.BackgroundScanInterval.String())
	args = append(args, o.ExtraArgs...)
	if !o.ReportCRDs {
		args = append(args, "--reportsCRDsSanityChecks=false")
	}
	p, err := c.StartProcess(ReportsControllerName, b.ReportsController, args, env(ReportsControllerName))
	if err != nil {
		return nil, err
	}
	if err := waitLeader(ctx, c, p, "kyverno-reports-controller", ReportsControllerName+"-0"); err != nil {
		return p, err
	}
	return p, nil
}

// StartAdmissionController runs cmd/kyverno, the admission controller, out of cluster. Its
// webhook server listens on the cluster's NodeIP, which kube-apiserver reaches inside the
// network namespace; --serverIP makes Kyverno register its webhooks by URL (https://ip:port/…)
// instead of by Service, and put that address in the serving certificate it generates. It
// waits until the controller leads and its policy webhooks are registered. extraArgs are more
// flags, e.g. PolicyExceptionArgs.
func StartAdmissionController(ctx context.Context, c *cluster.Cluster, b *Binaries, extraArgs ...string) (*cluster.Process, error) {
	port, err := freePort(c.NodeIP.String())
	if err != nil {
		return nil, err
	}
	ip := c.NodeIP.String()
	args, err := commonArgs(c)
	if err != nil {
		return nil, err
	}
	args = append(args,
		"--serverIP="+net.JoinHostPort(ip, strconv.Itoa(port)),
		"--webhookServerHost="+ip,
		"--webhookServerPort="+strconv.Itoa(port),
		"--caSecretName="+serviceName+"."+Namespace+".svc.kyverno-tls-ca",
		"--tlsSecretName="+serviceName+"."+Namespace+".svc.kyverno-tls-pair",
		"--reportsServiceAccountName=system:serviceaccount:"+Namespace+":"+ReportsControllerName,
		"--backgroundServiceAccountName=system:serviceaccount:"+Namespace+":kyverno-background-controller",
		"--controllerRuntimeMetricsAddress=0",
	)
	args = append(args, extraArgs...)
	p, err := c.StartProcess(AdmissionControllerName, b.AdmissionController, args, env(AdmissionControllerName))
	if err != nil {
		return nil, err
	}
	if err := waitLeader(ctx, c, p, "kyverno", AdmissionControllerName+"-0"); err != nil {
		return p, err
	}
	// The webhooks are registered before the server has loaded the certificate it generates;
	// until then kube-apiserver's calls fail the TLS handshake. Probe as the chart's readiness
	// probe does (HTTPS, certificate not verified: the kubelet does not either).
	probe := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // a readiness probe
	readiness := "https://" + net.JoinHostPort(ip, strconv.Itoa(port)) + "/health/readiness"
	if err := poll(ctx, p, "its webhook server's "+readiness, 3*time.Minute, func(ctx context.Context) error {
		return httpGetOK(ctx, probe, readiness)
	}); err != nil {
		return p, err
	}
	client, err := kubernetes.NewForConfig(c.AdminConfig)
	if err != nil {
		return p, err
	}
	err = poll(ctx, p, "the admission controller's policy webhooks", 3*time.Minute, func(ctx context.Context) error {
		_, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "kyverno-policy-validating-webhook-cfg", metav1.GetOptions{})
		return err
	})
	return p, err
}

// waitLeader waits until the lease of a controller names it holder.
func waitLeader(ctx context.Context, c *cluster.Cluster, p *cluster.Process, lease, holder string) error {
	client, err := kubernetes.NewForConfig(c.AdminConfig)
	if err != nil {
		return err
	}
	return poll(ctx, p, "lease "+lease, 3*time.Minute, func(ctx context.Context) error {
		l, err := client.CoordinationV1().Leases(Namespace).Get(ctx, lease, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != holder {
			return fmt.Errorf("held by %v", l.Spec.HolderIdentity)
		}
		return nil
	})
}

// poll checks every second until check succeeds, the process exits or timeout passes; the error
// names what was awaited, the last failure and the tail of the process's log.
func poll(ctx context.Context, p *cluster.Process, what string, timeout time.Duration, check func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		if !p.Running() {
			return false, errors.New("exited")
		}
		last = check(ctx)
		if apierrors.IsForbidden(last) || apierrors.IsUnauthorized(last) {
			return false, last
		}
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%s: waiting for %s: %w (last check: %v)\n--- last lines of %s ---\n%s", p.Name, what, err, last, p.LogPath, p.Tail(40))
	}
	return nil
}

// Freeze stops the process (SIGSTOP to its process group) until the returned function resumes
// it: the state it leaves, e.g. ephemeral reports not yet aggregated, stays as it is meanwhile.
func Freeze(p *cluster.Process) (resume func() error, err error) {
	pid := p.Pid()
	if pid == 0 {
		return nil, fmt.Errorf("%s is not running", p.Name)
	}
	if err := syscall.Kill(-pid, syscall.SIGSTOP); err != nil {
		return nil, fmt.Errorf("stop %s: %w", p.Name, err)
	}
	return func() error {
		if err := syscall.Kill(-pid, syscall.SIGCONT); err != nil {
			return fmt.Errorf("resume %s: %w", p.Name, err)
		}
		return nil
	}, nil
}

// httpGetOK fails unless GET url answers 200.
func httpGetOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// freePort asks the kernel for a free TCP port on ip.
func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
