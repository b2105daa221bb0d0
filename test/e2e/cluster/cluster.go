// Package cluster runs a minimal real Kubernetes control plane — etcd, kube-apiserver and
// kube-controller-manager, built from their Go modules — with reports-server behind it as an
// aggregated API server, the way deploy/manifests installs it: its ServiceAccount, RBAC and
// Service come from the kustomization, and its command line and replica count from the
// Deployment. The manifests ship no APIService: reports-server registers its own
// (--manage-apiservices), one per served group/version plus the analytics group, with the CA of
// the serving certificate its replicas share through a Secret as caBundle, so kube-apiserver
// verifies the replicas' TLS.
//
// There is no kubelet and no kube-proxy. Each replica of the Deployment is a local process
// listening on NodeIP, an address that exists only in the cluster's own network namespace (see
// netns.go), all on the same address with a port each,
// sharing the database and a token of the ServiceAccount. A Service without selector stands in
// for the Deployment's, with one EndpointSlice per replica (a slice's ports apply to all of its
// endpoints); kube-apiserver dials the slices' addresses directly
// (--enable-aggregator-routing=true), picking a random ready endpoint per request. The harness
// plays the kubelet: a replica's endpoint is marked ready once it passes the Deployment's probes,
// and not ready when a test stops it or says its probes would fail.
//
// With Options.ControlPlaneOnly nothing is installed: a test installs reports-server itself (with
// Helm) and has the harness run that installation's Deployment the same way (Deploy, RollOut,
// RemoveReplicas).
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
)

const (
	// serviceCIDR is the Service IP range; firstServiceIP is the kubernetes Service's address,
	// which kube-apiserver's serving certificate names as usual.
	serviceCIDR    = "10.96.0.0/16" // netcheck: kube-apiserver configuration; nothing routes or dials it
	firstServiceIP = "10.96.0.1"    // netcheck: a name in a certificate, never dialled
	// serviceAccountIssuer is the issuer of service-account tokens (and their default audience).
	serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
	// endpointSlicePrefix names the EndpointSlices that stand in for the Deployment's pods, one
	// per replica: <prefix><index>.
	endpointSlicePrefix = "reports-server-e2e-"
	managedBy           = "reports-server-e2e"
)

// Options configure Start.
type Options struct {
	// Dir holds certificates, kubeconfigs, etcd's data and the logs. It must exist.
	Dir      string
	Binaries *Binaries
	// RepoRoot is the checkout: deploy/manifests is installed from it.
	RepoRoot string
	// DatabaseURL is reports-server's database, shared by the replicas.
	DatabaseURL string
	// Replicas is how many reports-server processes run behind the Service; 0 means as many as
	// the Deployment has.
	Replicas int
	// ServerArgs are added to every replica's command line, after the Deployment's (a later flag
	// wins), e.g. a shorter --summary-refresh-interval for tests that wait for the summaries.
	ServerArgs []string
	// ControlPlaneOnly starts etcd, kube-apiserver and kube-controller-manager without installing
	// reports-server: the test installs it (e.g. with Helm) and runs the installation's Deployment
	// with Deploy.
	ControlPlaneOnly bool
	Logf             func(format string, args ...any)
}

// Cluster is a running control plane with reports-server behind it.
type Cluster struct {
	Dir string
	// DatabaseURL is reports-server's database.
	DatabaseURL string
	// NodeIP is the address reports-server listens on and the EndpointSlice names.
	NodeIP net.IP
	// CA signs the client certificates kube-apiserver accepts.
	CA *CA
	// Server is kube-apiserver's URL.
	Server string
	// AdminKubeconfig authenticates as a member of system:masters; AdminConfig is the same for
	// client-go.
	AdminKubeconfig string
	AdminConfig     *rest.Config
	KubectlBin      string
	// ReportsServerBin is the reports-server binary the replicas run; HelmBin the helm command.
	ReportsServerBin, HelmBin string
	// Manifests are the objects of the installation whose Deployment the replicas run: those of
	// deploy/manifests (kustomize output), as installed, unless Deploy or RollOut ran another's.
	Manifests *Manifests

	Etcd, APIServer, ControllerManager *Process
	// ReportsServers are the Deployment's replicas: processes on NodeIP, each on a port of its
	// own, each the one endpoint of an EndpointSlice of the Service.
	ReportsServers []*Replica
	// extra are the processes of StartProcess, stopped before the cluster.
	extra []*Process

	logf    func(string, ...any)
	pki     *pki
	etcdURL string
	// replicas is how many reports-server processes to run; serverArgs are added to each one's
	// command line (Options.ServerArgs).
	replicas   int
	serverArgs []string
	// nextReplica is the index of the next replica started: a rollout's new replicas get new
	// names, logs and EndpointSlices, as new pods would.
	nextReplica int
}

// Start brings the cluster up, in dependency order, each step waiting until the previous
// component is ready. On error everything already started is stopped.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	c := &Cluster{Dir: o.Dir, DatabaseURL: o.DatabaseURL, KubectlBin: o.Binaries.Kubectl, ReportsServerBin: o.Binaries.ReportsServer, HelmBin: o.Binaries.Helm, logf: o.Logf, replicas: o.Replicas, serverArgs: o.ServerArgs}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	for _, d := range []string{"logs", "pki", "etcd", "home"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	ip := net.ParseIP(NodeIP)
	if err := checkListen(ip); err != nil {
		return nil, fmt.Errorf("%w (the cluster runs in the network namespace RunInNamespace makes, where %s is configured)", err, NodeIP)
	}
	c.NodeIP = ip

	if c.pki, err = newPKI(filepath.Join(o.Dir, "pki"), []net.IP{net.ParseIP("127.0.0.1"), ip}); err != nil {
		return nil, fmt.Errorf("generate PKI: %w", err)
	}
	c.CA = c.pki.ca

	steps := []struct {
		what string
		run  func(context.Context, Options) error
	}{
		{"etcd", c.startEtcd},
		{"kube-apiserver", c.startAPIServer},
		{"kube-controller-manager", c.startControllerManager},
		{"deploy/manifests", c.installManifests},
		{"reports-server", func(ctx context.Context, o Options) error { return c.Deploy(ctx, c.Manifests) }},
	}
	if o.ControlPlaneOnly {
		steps = steps[:3]
	}
	for _, s := range steps {
		start := time.Now()
		if err := s.run(ctx, o); err != nil {
			return nil, fmt.Errorf("start %s: %w", s.what, err)
		}
		o.Logf("%s ready after %s", s.what, time.Since(start).Round(time.Millisecond))
	}
	return c, nil
}

// EtcdURL is etcd's client URL (loopback, inside the cluster's namespace).
func (c *Cluster) EtcdURL() string { return c.etcdURL }

// Stop stops every process (the reports-server replicas first, etcd last). It does not remove
// Dir, which holds the logs.
func (c *Cluster) Stop() {
	stop := append(slices.Clone(c.extra), c.replicaProcesses()...)
	for _, p := range append(stop, c.ControllerManager, c.APIServer, c.Etcd) {
		if p == nil {
			continue
		}
		if err := p.Stop(10 * time.Second); err != nil {
			c.logf("stop %s: %v", p.Name, err)
		}
	}
}

// StartProcess runs bin as a process of the cluster, like its components: in the cluster's
// network namespace, logging to logs/<name>.log, stopped by Stop (before the cluster) and killed
// if the test binary dies. env is its whole environment besides HOME, PATH and TMPDIR. Other test
// modules run their own components with it (test/ecosystem: Kyverno, from Binaries.Extra).
func (c *Cluster) StartProcess(name, bin string, args, env []string) (*Process, error) {
	p := c.newProcess(name, bin, args, c.processEnv(env...))
	if err := p.start(); err != nil {
		return nil, err
	}
	c.extra = append(c.extra, p)
	return p, nil
}

func (c *Cluster) newProcess(name, bin string, args, env []string) *Process {
	dir := filepath.Join(c.Dir, "home")
	return newProcess(name, filepath.Join(c.Dir, "logs", name+".log"), dir, bin, args, env)
}

// processEnv is the environment of the components: nothing from the test's environment leaks
// in (e.g. KUBECONFIG), except what a Go program needs to find temporary space.
func (c *Cluster) processEnv(extra ...string) []string {
	env := []string{"HOME=" + filepath.Join(c.Dir, "home"), "PATH=/usr/bin:/bin"}
	if tmp := os.Getenv("TMPDIR"); tmp != "" {
		env = append(env, "TMPDIR="+tmp)
	}
	return append(env, extra...)
}

func (c *Cluster) startEtcd(ctx context.Context, o Options) error {
	clientPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	peerPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	clientURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	c.Etcd = c.newProcess("etcd", o.Binaries.Etcd, []string{
		"--name=e2e",
		"--data-dir=" + filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=e2e=" + peerURL,
		// Throw-away data: durability only costs time on a busy disk.
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}, c.processEnv())
	if err := c.Etcd.start(); err != nil {
		return err
	}
	c.etcdURL = clientURL
	return waitFor(ctx, c.Etcd, "/health", time.Minute, func(ctx context.Context) error {
		return httpGetOK(ctx, http.DefaultClient, clientURL+"/health")
	})
}

func (c *Cluster) startAPIServer(ctx context.Context, o Options) error {
	port, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	p := c.pki
	c.Server = "https://127.0.0.1:" + strconv.Itoa(port)
	args := []string{
		"--etcd-servers=" + c.etcdURL,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		// The address kube-apiserver would publish in the kubernetes Service's endpoints; with no
		// in-cluster clients the endpoints are not maintained at all.
		"--advertise-address=" + c.NodeIP.String(),
		"--endpoint-reconciler-type=none",
		"--cert-dir=" + filepath.Join(c.Dir, "pki"),
		"--tls-cert-file=" + p.apiserverCert,
		"--tls-private-key-file=" + p.apiserverKey,
		"--client-ca-file=" + p.caFile,
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range=" + serviceCIDR,
		"--service-account-issuer=" + serviceAccountIssuer,
		"--service-account-key-file=" + p.serviceAccountPub,
		"--service-account-signing-key-file=" + p.serviceAccountKey,
		// Aggregation: kube-apiserver authenticates to aggregated servers with the front-proxy
		// client certificate and passes the user in these headers; the servers learn the CA and
		// header names from kube-system/extension-apiserver-authentication.
		"--requestheader-client-ca-file=" + p.frontProxyCAFile,
		"--requestheader-allowed-names=" + frontProxyClientName,
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-uid-headers=X-Remote-Uid",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + p.frontProxyClientCert,
		"--proxy-client-key-file=" + p.frontProxyClientKey,
		// No kube-proxy: dial the EndpointSlice addresses of an APIService's Service directly.
		"--enable-aggregator-routing=true",
		"--profiling=false",
		"--v=1",
	}
	c.APIServer = c.newProcess("kube-apiserver", o.Binaries.KubeAPIServer, args, c.processEnv())
	if err := c.APIServer.start(); err != nil {
		return err
	}

	c.AdminKubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	if err := c.writeKubeconfig(c.AdminKubeconfig, "admin", certAuth(p.admin)); err != nil {
		return err
	}
	if c.AdminConfig, err = loadConfig(c.AdminKubeconfig); err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(c.AdminConfig)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	if err := waitFor(ctx, c.APIServer, "/readyz", 3*time.Minute, func(ctx context.Context) error {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").Param("verbose", "true").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%w: %s", err, body)
		}
		return nil
	}); err != nil {
		return err
	}
	// The system namespaces are created by a controller of kube-apiserver, not before /readyz;
	// the RoleBinding of deploy/manifests goes into kube-system.
	return waitFor(ctx, c.APIServer, "namespace kube-system", time.Minute, func(ctx context.Context) error {
		_, err := client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
		return err
	})
}

func (c *Cluster) startControllerManager(ctx context.Context, o Options) error {
	port, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(c.Dir, "controller-manager.kubeconfig")
	if err := c.writeKubeconfig(kubeconfig, "system:kube-controller-manager", certAuth(c.pki.controllerManager)); err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(c.Dir, "pki", "controller-manager"),
		"--leader-elect=false",
		// Every controller, each with its own service account, as kubeadm runs it: the garbage
		// collector then deletes reports as system:serviceaccount:kube-system:generic-garbage-collector,
		// which reports-server authorizes through kube-apiserver like any other user.
		"--controllers=*",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + c.pki.serviceAccountKey,
		"--root-ca-file=" + c.pki.caFile,
		"--profiling=false",
		"--v=1",
	}
	c.ControllerManager = c.newProcess("kube-controller-manager", o.Binaries.KubeControllerManager, args, c.processEnv())
	if err := c.ControllerManager.start(); err != nil {
		return err
	}
	// /healthz answers ok before the controllers run; each controller's own check is added once
	// it has started. Waiting for the garbage collector's means it started before reports-server's
	// APIServices exist, as in a cluster that gets reports-server installed later: the collector
	// must then find the new resources by re-reading discovery (every 30 s), which the garbage
	// collection test relies on.
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
	url := "https://127.0.0.1:" + strconv.Itoa(port) + "/healthz?verbose=true"
	return waitFor(ctx, c.ControllerManager, "the garbage collector to start", 2*time.Minute, func(ctx context.Context) error {
		body, err := httpGet(ctx, insecure, url)
		if err != nil {
			return err
		}
		if !strings.Contains(body, "[+]garbage-collector-controller ok") {
			return fmt.Errorf("no garbage-collector-controller check yet: %s", body)
		}
		return nil
	})
}

func (c *Cluster) installManifests(ctx context.Context, o Options) error {
	m, err := loadManifests(ctx, c, o.RepoRoot)
	if err != nil {
		return err
	}
	c.Manifests = m
	// Apply with the repository's kubectl, as the README tells users to, but without the
	// Deployment (there is no kubelet: reports-server runs as a local process below), its
	// PodDisruptionBudget, and the Service's selector (an EndpointSlice of ours takes the pods'
	// place, and a selector would have the endpointslice controller own the Service's slices).
	installed, err := m.installable()
	if err != nil {
		return err
	}
	// With the database Secret the Deployment reads, as the README has users apply it (a copy of
	// database-secret.example.yaml, filled in).
	secret, err := m.databaseSecret(o.DatabaseURL)
	if err != nil {
		return err
	}
	if _, stderr, err := c.Kubectl(ctx, append(installed, secret...), "apply", "-f", "-"); err != nil {
		return fmt.Errorf("kubectl apply deploy/manifests: %w\n%s", err, stderr)
	}
	return nil
}

// APIServiceNames are the APIServices reports-server registers, as the Deployment's command line
// makes it (see Manifests).
func (c *Cluster) APIServiceNames() []string { return slices.Clone(c.Manifests.APIServiceNames) }

// WaitAPIServices waits until every APIService the server registers has Available=want, and says
// which did not, with their conditions and the tail of the replicas' logs otherwise.
//
// With want, it also waits until clients can use the groups: Available is set by the
// availability controller, while the proxy handler and the aggregated discovery document
// (/apis) are updated by other controllers of kube-apiserver, moments later; until then
// requests get 503 and discovery reports the groups as stale.
func (c *Cluster) WaitAPIServices(ctx context.Context, want bool, timeout time.Duration) error {
	client, err := aggregator.NewForConfig(c.AdminConfig)
	if err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(c.AdminConfig)
	if err != nil {
		return err
	}
	wantStatus := apiregistrationv1.ConditionFalse
	if want {
		wantStatus = apiregistrationv1.ConditionTrue
	}
	// Waiting for Available=True is pointless once every replica has exited; while waiting for
	// False they are deliberately down.
	var proc watched = c.replicaProcesses()
	if !want {
		proc = c.APIServer
	}
	return waitFor(ctx, proc, fmt.Sprintf("APIServices Available=%s", wantStatus), timeout, func(ctx context.Context) error {
		var errs []error
		for _, name := range c.APIServiceNames() {
			as, err := client.ApiregistrationV1().APIServices().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if cond := availableCondition(as); cond == nil {
				errs = append(errs, fmt.Errorf("%s: no Available condition yet", name))
			} else if cond.Status != wantStatus {
				errs = append(errs, fmt.Errorf("%s: Available=%s (%s: %s)", name, cond.Status, cond.Reason, cond.Message))
			} else if want {
				if _, err := dc.ServerResourcesForGroupVersion(as.Spec.Group + "/" + as.Spec.Version); err != nil {
					errs = append(errs, fmt.Errorf("%s: discovery of its group/version: %w", name, err))
				}
			}
		}
		if len(errs) == 0 && want {
			if _, _, err := dc.ServerGroupsAndResources(); err != nil {
				errs = append(errs, fmt.Errorf("aggregated discovery: %w", err))
			}
		}
		return errors.Join(errs...)
	})
}

func availableCondition(as *apiregistrationv1.APIService) *apiregistrationv1.APIServiceCondition {
	for i := range as.Status.Conditions {
		if as.Status.Conditions[i].Type == apiregistrationv1.Available {
			return &as.Status.Conditions[i]
		}
	}
	return nil
}

// UserKubeconfig writes a kubeconfig for a client certificate of user in groups, signed by the
// cluster CA, and returns its path and client-go configuration.
func (c *Cluster) UserKubeconfig(user string, groups ...string) (string, *rest.Config, error) {
	kp, err := issueClient(c.CA, user, groups...)
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(c.Dir, "user-"+user+".kubeconfig")
	if err := c.writeKubeconfig(path, user, certAuth(kp)); err != nil {
		return "", nil, err
	}
	cfg, err := loadConfig(path)
	return path, cfg, err
}

// AnonymousConfig trusts kube-apiserver but presents no credentials.
func (c *Cluster) AnonymousConfig() *rest.Config {
	return &rest.Config{Host: c.Server, TLSClientConfig: rest.TLSClientConfig{CAData: c.CA.CertPEM}, QPS: -1}
}

func certAuth(kp KeyPair) *clientcmdapi.AuthInfo {
	return &clientcmdapi.AuthInfo{ClientCertificateData: kp.CertPEM, ClientKeyData: kp.KeyPEM}
}

func (c *Cluster) writeKubeconfig(path, user string, auth *clientcmdapi.AuthInfo) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthorityData: c.pki.ca.CertPEM}
	cfg.AuthInfos[user] = auth
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: user, Namespace: metav1.NamespaceDefault}
	cfg.CurrentContext = "e2e"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

func loadConfig(path string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", path, err)
	}
	// Tests issue many requests quickly; client-go's default 5 QPS would only slow them down.
	cfg.QPS = -1
	return cfg, nil
}
