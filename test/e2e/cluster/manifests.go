package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	analyticsv1alpha1 "github.com/reports-server/reports-server/internal/apis/analytics/v1alpha1"
	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/internal/apiservice"
)

// Manifests are the objects of an installation of reports-server: deploy/manifests as `kubectl
// kustomize` renders them, or a Helm release's manifest (DecodeManifests).
type Manifests struct {
	// Dir is deploy/manifests (empty for a Helm release).
	Dir     string
	Objects []*unstructured.Unstructured

	Deployment     *appsv1.Deployment
	Service        *corev1.Service
	ServiceAccount *corev1.ServiceAccount

	// The manifests ship no APIService: the server creates and keeps them
	// (--manage-apiservices), one per served group/version plus the analytics group, pointing at
	// the Service its flags name. APIServiceNames are those the Deployment's command line makes
	// it register, ServicePort the Service port they use and ServicePortName that port's name,
	// under which an EndpointSlice must list the server's port.
	APIServiceNames []string
	ServicePort     int32
	ServicePortName string
}

// loadManifests renders deploy/manifests with the repository's kubectl (its embedded kustomize)
// and picks out what the harness needs to run the server as the Deployment would.
func loadManifests(ctx context.Context, c *Cluster, repoRoot string) (*Manifests, error) {
	dir := filepath.Join(repoRoot, "deploy", "manifests")
	out, stderr, err := c.Kubectl(ctx, nil, "kustomize", dir)
	if err != nil {
		return nil, fmt.Errorf("kubectl kustomize %s: %w\n%s", dir, err, stderr)
	}
	m, err := DecodeManifests(dir, out)
	if err != nil {
		return nil, err
	}
	m.Dir = dir
	return m, nil
}

// DecodeManifests decodes the YAML documents of an installation (what is its source, for
// messages) and picks out what the harness needs to run the server as its Deployment would.
func DecodeManifests(what, docs string) (*Manifests, error) {
	m := &Manifests{}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(docs), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decode kustomize output: %w", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		m.Objects = append(m.Objects, u)
		var err error
		switch u.GetKind() {
		case "Deployment":
			m.Deployment = &appsv1.Deployment{}
			err = fromUnstructured(u, m.Deployment)
		case "Service":
			if m.Service != nil {
				// The bundled PostgreSQL of the chart has one; the harness uses the test's database.
				err = errors.New("a second Service: the harness expects only the server's")
				break
			}
			m.Service = &corev1.Service{}
			err = fromUnstructured(u, m.Service)
		case "ServiceAccount":
			m.ServiceAccount = &corev1.ServiceAccount{}
			err = fromUnstructured(u, m.ServiceAccount)
		case "APIService":
			// A static APIService next to the server's own would be overwritten by the server, and
			// reapplying the manifests would undo that (kube-apiserver refuses insecureSkipTLSVerify
			// together with the caBundle the server sets).
			err = errors.New("the manifests must not ship APIServices: the server manages them (--manage-apiservices)")
		}
		if err != nil {
			return nil, fmt.Errorf("decode %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	if m.Deployment == nil || m.Service == nil || m.ServiceAccount == nil {
		return nil, fmt.Errorf("%s lacks a Deployment, Service or ServiceAccount", what)
	}
	if len(m.Deployment.Spec.Template.Spec.Containers) != 1 {
		return nil, fmt.Errorf("the Deployment of %s has %d containers, the harness expects one", what, len(m.Deployment.Spec.Template.Spec.Containers))
	}
	if m.ServiceAccount.Name != m.Deployment.Spec.Template.Spec.ServiceAccountName {
		return nil, fmt.Errorf("the Deployment of %s runs as ServiceAccount %q, it creates %q",
			what, m.Deployment.Spec.Template.Spec.ServiceAccountName, m.ServiceAccount.Name)
	}
	if err := m.apiServices(); err != nil {
		return nil, err
	}
	return m, nil
}

// apiServices works out, from the Deployment's command line, which APIServices the server
// registers and which Service port they use, with the server's defaults for flags not given
// (internal/server/kube_options.go).
func (m *Manifests) apiServices() error {
	container := m.Deployment.Spec.Template.Spec.Containers[0]
	args := container.Args
	if v, ok := lastFlag(args, "--manage-apiservices"); ok && v != "true" {
		return fmt.Errorf("the Deployment runs the server with --manage-apiservices=%s; the harness expects it to register its APIServices", v)
	}
	namespace := "reports-server"
	for _, e := range container.Env {
		if e.Name != "POD_NAMESPACE" {
			continue
		}
		switch {
		case e.ValueFrom == nil:
			namespace = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			namespace = m.Deployment.Namespace
		}
	}
	if v, ok := lastFlag(args, "--service-namespace"); ok {
		namespace = v
	}
	name := "reports-server"
	if v, ok := lastFlag(args, "--service-name"); ok {
		name = v
	}
	port := int32(443)
	if v, ok := lastFlag(args, "--service-port"); ok {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return fmt.Errorf("the Deployment's --service-port=%s: %w", v, err)
		}
		port = int32(n)
	}
	if namespace != m.Service.Namespace || name != m.Service.Name {
		return fmt.Errorf("the server registers its APIServices for Service %s/%s, the manifests create %s/%s",
			namespace, name, m.Service.Namespace, m.Service.Name)
	}
	portName, err := servicePortName(m.Service, port)
	if err != nil {
		return fmt.Errorf("the APIServices use port %d: %w", port, err)
	}
	m.ServicePort, m.ServicePortName = port, portName

	var groups []string
	if v, ok := lastFlag(args, "--api-groups"); ok && v != "" {
		groups = strings.Split(v, ",")
	}
	var gvs []schema.GroupVersion
	for _, k := range reports.All() {
		if (len(groups) == 0 || slices.Contains(groups, k.GroupVersion.Group)) && !slices.Contains(gvs, k.GroupVersion) {
			gvs = append(gvs, k.GroupVersion)
		}
	}
	if len(gvs) == 0 {
		return fmt.Errorf("the Deployment's --api-groups=%s names no served group", strings.Join(groups, ","))
	}
	for _, gv := range append(gvs, analyticsv1alpha1.SchemeGroupVersion) {
		m.APIServiceNames = append(m.APIServiceNames, apiservice.Name(gv))
	}
	return nil
}

// lastFlag returns the value of the last --name=value (or bare --name, "true") in args.
func lastFlag(args []string, name string) (value string, found bool) {
	for _, a := range args {
		if a == name {
			value, found = "true", true
		} else if v, ok := cutFlag(a, name); ok {
			value, found = v, true
		}
	}
	return value, found
}

func servicePortName(svc *corev1.Service, port int32) (string, error) {
	for _, p := range svc.Spec.Ports {
		if p.Port == port {
			return p.Name, nil
		}
	}
	return "", fmt.Errorf("Service %s/%s has no port %d", svc.Namespace, svc.Name, port)
}

func fromUnstructured(u *unstructured.Unstructured, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, into, true)
}

// installable is the YAML of every object except the Deployment and PodDisruptionBudget, with the
// Service's selector removed.
func (m *Manifests) installable() ([]byte, error) {
	var buf bytes.Buffer
	for _, u := range m.Objects {
		switch u.GetKind() {
		case "Deployment", "PodDisruptionBudget":
			continue
		case "Service":
			u = u.DeepCopy()
			unstructured.RemoveNestedField(u.Object, "spec", "selector")
		}
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// serverOverrides are what differs between the Deployment's pod and a local process.
type serverOverrides struct {
	port    int
	certDir string
	// secret reads the value of a key of a Secret in the Deployment's namespace from
	// kube-apiserver, as the kubelet does for a secretKeyRef.
	secret func(name, key string) (string, error)
	// podName stands in for the pod's metadata.name.
	podName   string
	extraArgs []string
}

// serverCommand is the Deployment container's command line and environment, with the port and
// certificate directory (if any) replaced, Secret references resolved (the database URL), the
// pod's namespace and name in place of the downward API, and the extra flags a process outside
// a pod needs.
func (m *Manifests) serverCommand(o serverOverrides) (args, env []string, err error) {
	container := m.Deployment.Spec.Template.Spec.Containers[0]
	if len(container.Command) > 0 {
		return nil, nil, fmt.Errorf("the Deployment's container sets command %v; the harness runs the binary with its args", container.Command)
	}
	for _, a := range container.Args {
		if _, ok := cutFlag(a, "--secure-port"); ok {
			a = "--secure-port=" + strconv.Itoa(o.port)
		} else if _, ok := cutFlag(a, "--cert-dir"); ok {
			a = "--cert-dir=" + o.certDir
		}
		args = append(args, a)
	}
	if len(args) == 0 || args[0] != "serve" {
		return nil, nil, fmt.Errorf("the Deployment's args %v do not start with serve", container.Args)
	}
	args = append(args, o.extraArgs...)
	for _, e := range container.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.SecretKeyRef != nil:
			v, err := o.secret(e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
			if err != nil {
				return nil, nil, fmt.Errorf("the Deployment's variable %s: %w", e.Name, err)
			}
			env = append(env, e.Name+"="+v)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env = append(env, e.Name+"="+m.Deployment.Namespace)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env = append(env, e.Name+"="+o.podName)
		default:
			return nil, nil, fmt.Errorf("the Deployment's variable %s comes from a source the harness cannot provide", e.Name)
		}
	}
	return args, env, nil
}

// databaseSecret is the YAML of the Secret the Deployment reads DATABASE_URL from, holding url
// under its key (deploy/README.md, "The database Secret").
func (m *Manifests) databaseSecret(url string) ([]byte, error) {
	for _, e := range m.Deployment.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "DATABASE_URL" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			ref := e.ValueFrom.SecretKeyRef
			b, err := yaml.Marshal(&corev1.Secret{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
				ObjectMeta: metav1.ObjectMeta{Name: ref.Name, Namespace: m.Deployment.Namespace},
				StringData: map[string]string{ref.Key: url},
			})
			return append([]byte("---\n"), b...), err
		}
	}
	return nil, errors.New("the Deployment does not take DATABASE_URL from a Secret")
}

// cutFlag returns the value of arg if it is --name=value.
func cutFlag(arg, name string) (string, bool) {
	return strings.CutPrefix(arg, name+"=")
}

// probe is an HTTP probe of the Deployment's container.
type probe struct {
	what, scheme, path string
}

// httpProbes are the container's startup, liveness and readiness probes that use HTTP(S) on the
// serving port: the harness waits for them as the kubelet would, without credentials.
func (m *Manifests) httpProbes() ([]probe, error) {
	container := m.Deployment.Spec.Template.Spec.Containers[0]
	var probes []probe
	for _, named := range []struct {
		what  string
		probe *corev1.Probe
	}{
		{"startupProbe", container.StartupProbe},
		{"livenessProbe", container.LivenessProbe},
		{"readinessProbe", container.ReadinessProbe},
	} {
		what, p := named.what, named.probe
		if p == nil || p.HTTPGet == nil {
			continue
		}
		port := p.HTTPGet.Port
		if !(port.String() == "https" || (len(container.Ports) > 0 && port.IntValue() == int(container.Ports[0].ContainerPort))) {
			return nil, fmt.Errorf("the Deployment's %s probes port %s, not the serving port", what, port.String())
		}
		probes = append(probes, probe{what: what, scheme: strings.ToLower(string(p.HTTPGet.Scheme)), path: p.HTTPGet.Path})
	}
	if len(probes) == 0 {
		return nil, errors.New("the Deployment's container has no HTTP probes")
	}
	return probes, nil
}
