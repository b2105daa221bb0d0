package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	analyticsv1alpha1 "github.com/reports-server/reports-server/internal/apis/analytics/v1alpha1"
	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/apiserver"
	"github.com/reports-server/reports-server/internal/apiservice"
	"github.com/reports-server/reports-server/internal/crdmigrate"
	"github.com/reports-server/reports-server/internal/servingcert"
)

// KubeOptions are the flags of aggregated mode's dealings with kube-apiserver beyond delegated
// authentication and authorization: which groups to serve, the APIServices that route them
// here, the serving certificate they trust, and the migration from CRDs.
type KubeOptions struct {
	// APIGroups are the report groups to serve (default all). The analytics group is served
	// with them.
	APIGroups []string
	// ManageAPIServices makes the server create and keep its APIServices.
	ManageAPIServices bool
	// The Service kube-apiserver reaches the server through.
	ServiceNamespace, ServiceName string
	ServicePort                   int32
	// ServingCertSecret is the Secret (in ServiceNamespace) holding the serving certificate all
	// replicas share; "" makes a self-signed one per process (APIServices then skip TLS
	// verification).
	ServingCertSecret string
	// MigrateFromCRDs copies reports from CRDs that still serve a group before taking it over.
	MigrateFromCRDs bool
	// ReconcileInterval is how often the APIServices are re-asserted.
	ReconcileInterval time.Duration
}

// NewKubeOptions returns the defaults; the service namespace defaults to $POD_NAMESPACE.
func NewKubeOptions() *KubeOptions {
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "reports-server"
	}
	return &KubeOptions{
		// On by default: the server is the one that knows its serving CA, and the one that must
		// migrate a group from its CRDs before kube-apiserver routes the group here.
		ManageAPIServices: true,
		ServiceNamespace:  ns,
		ServiceName:       "reports-server",
		ServicePort:       443,
		ServingCertSecret: "reports-server-tls",
		MigrateFromCRDs:   true,
		ReconcileInterval: apiservice.DefaultInterval,
	}
}

// AddFlags registers the flags.
func (o *KubeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&o.APIGroups, "api-groups", o.APIGroups,
		"Report API groups to serve (default all: "+strings.Join(allGroups(), ",")+"). The analytics group is always served.")
	fs.BoolVar(&o.ManageAPIServices, "manage-apiservices", o.ManageAPIServices,
		"Create and keep the APIServices of the served groups, pointing at --service-namespace/--service-name with the serving CA as caBundle. "+
			"They are never removed on shutdown; `reports-server apiservices remove` removes them. Aggregated mode only. "+
			"Set it to false when something else (static manifests, another controller) owns the APIServices.")
	fs.StringVar(&o.ServiceNamespace, "service-namespace", o.ServiceNamespace, "Namespace of the Service kube-apiserver reaches this server through (default $POD_NAMESPACE, else reports-server).")
	fs.StringVar(&o.ServiceName, "service-name", o.ServiceName, "Name of that Service.")
	fs.Int32Var(&o.ServicePort, "service-port", o.ServicePort, "Port of that Service.")
	fs.StringVar(&o.ServingCertSecret, "serving-cert-secret", o.ServingCertSecret,
		"Secret in --service-namespace that holds the serving certificate all replicas share, created (and renewed) by the first replica that needs it. "+
			"Ignored with --tls-cert-file. Empty: each process makes a self-signed certificate and the APIServices skip TLS verification.")
	fs.BoolVar(&o.MigrateFromCRDs, "migrate-from-crds", o.MigrateFromCRDs,
		"Before taking over a group that kube-apiserver still serves from CRDs, copy its reports into PostgreSQL (the CRD objects are left untouched). Needs --manage-apiservices.")
	fs.DurationVar(&o.ReconcileInterval, "apiservice-reconcile-interval", o.ReconcileInterval, "How often the APIServices are re-asserted.")
}

// Validate checks the flags.
func (o *KubeOptions) Validate() []error {
	var errs []error
	all := allGroups()
	for _, g := range o.APIGroups {
		if !slices.Contains(all, g) {
			errs = append(errs, fmt.Errorf("--api-groups: %q is not a served group (one of %s)", g, strings.Join(all, ", ")))
		}
	}
	if o.ManageAPIServices && (o.ServiceNamespace == "" || o.ServiceName == "" || o.ServicePort <= 0) {
		errs = append(errs, errors.New("--manage-apiservices needs --service-namespace, --service-name and a positive --service-port"))
	}
	if o.ReconcileInterval <= 0 {
		errs = append(errs, errors.New("--apiservice-reconcile-interval must be positive"))
	}
	return errs
}

func allGroups() []string {
	var groups []string
	for _, k := range reports.All() {
		if !slices.Contains(groups, k.GroupVersion.Group) {
			groups = append(groups, k.GroupVersion.Group)
		}
	}
	return groups
}

// Kinds are the served report kinds.
func (o *KubeOptions) Kinds() []reports.Kind {
	if len(o.APIGroups) == 0 {
		return reports.All()
	}
	var kinds []reports.Kind
	for _, k := range reports.All() {
		if slices.Contains(o.APIGroups, k.GroupVersion.Group) {
			kinds = append(kinds, k)
		}
	}
	return kinds
}

// GroupVersions are the served group/versions, analytics included: one APIService each.
func (o *KubeOptions) GroupVersions() []schema.GroupVersion {
	var gvs []schema.GroupVersion
	for _, k := range o.Kinds() {
		if !slices.Contains(gvs, k.GroupVersion) {
			gvs = append(gvs, k.GroupVersion)
		}
	}
	return append(gvs, analyticsv1alpha1.SchemeGroupVersion)
}

func (o *KubeOptions) service() apiservice.Service {
	return apiservice.Service{Namespace: o.ServiceNamespace, Name: o.ServiceName, Port: o.ServicePort}
}

// hosts are the names kube-apiserver verifies the serving certificate against.
func (o *KubeOptions) hosts() []string {
	svc := o.ServiceName + "." + o.ServiceNamespace
	return []string{svc + ".svc", svc + ".svc.cluster.local", svc, o.ServiceName}
}

// kubeConfig is the client configuration for kube-apiserver: the --kubeconfig of the core API
// options, else in-cluster.
func kubeConfig(kubeconfigPath string) (*rest.Config, error) {
	if kubeconfigPath != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfigPath, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("no --kubeconfig and not in a cluster: %w", err)
	}
	return cfg, nil
}

// kubeClients talk to kube-apiserver for the APIServices, the serving certificate's Secret and
// the migration from CRDs.
type kubeClients struct {
	core     kubernetes.Interface
	dynamic  dynamic.Interface
	caBundle []byte // the CA the APIServices trust; nil: skip verification
}

func (o *Options) kubeClients(context.Context) (*kubeClients, error) {
	path := ""
	if o.Recommended.CoreAPI != nil {
		path = o.Recommended.CoreAPI.CoreAPIKubeconfigPath
	}
	cfg, err := kubeConfig(path)
	if err != nil {
		return nil, fmt.Errorf("--manage-apiservices: %w", err)
	}
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create kube-apiserver client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create kube-apiserver client: %w", err)
	}
	return &kubeClients{core: core, dynamic: dyn}, nil
}

// applyServingCert loads the shared serving certificate (creating it if needed), writes it where
// the serving options read it from (reloaded when it changes) and returns the CA bundle.
func (o *Options) applyServingCert(ctx context.Context, client kubernetes.Interface) ([]byte, error) {
	k := o.Kube
	b, err := servingcert.Ensure(ctx, client, k.ServiceNamespace, k.ServingCertSecret, k.hosts(), time.Now())
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	dir, err := os.MkdirTemp("", "reports-server-cert-")
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, b.CertPEM, 0o600); err != nil {
		return nil, fmt.Errorf("write serving certificate: %w", err)
	}
	if err := os.WriteFile(keyFile, b.KeyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("write serving key: %w", err)
	}
	ck := &o.Recommended.SecureServing.ServerCert.CertKey
	ck.CertFile, ck.KeyFile = certFile, keyFile
	return b.CABundle, nil
}

// runAPIServices migrates what CRDs still serve, takes the groups over, and keeps the
// APIServices in place until ctx ends. Failures are retried: the API works meanwhile, only
// kube-apiserver does not route to it yet.
func (o *Options) runAPIServices(ctx context.Context, dyn dynamic.Interface, srv *apiserver.Server, caBundle []byte) {
	log := slog.Default().With("component", "apiservices")
	reconciler := apiservice.New(apiservice.Config{
		Client: dyn, GroupVersions: o.Kube.GroupVersions(), Service: o.Kube.service(),
		CABundle: caBundle, Interval: o.Kube.ReconcileInterval, Log: log,
	})
	var resources []schema.GroupVersionResource
	for _, k := range o.Kube.Kinds() {
		resources = append(resources, k.GroupVersionResource())
	}
	for ctx.Err() == nil {
		var err error
		if o.Kube.MigrateFromCRDs {
			err = crdmigrate.TakeOver(ctx, crdmigrate.Config{
				Client: dyn, Target: srv.CRDImportTarget(), Resources: resources, Log: log.With("component", "crd-migration"),
			}, reconciler.Reconcile)
		} else {
			err = reconciler.Reconcile(ctx)
		}
		if err == nil {
			break
		}
		log.Error("cannot take the API groups over yet; retrying", "err", err, "retry_in", 10*time.Second)
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
	}
	reconciler.Run(ctx)
}
