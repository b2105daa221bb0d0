// Package apiservice registers the server with kube-apiserver's aggregation layer: it keeps one
// APIService object per served group/version pointing at the server's Service, with the CA that
// signed the serving certificate, and removes them on uninstall.
//
// Replicas reconcile independently and idempotently (they write the same desired state), so
// there is no leader. They never delete an APIService when they stop: a rolling update or a
// crash must not take the API away from its clients (kyverno/reports-server #327, #343).
// Removal is an explicit step (`reports-server apiservices remove`).
package apiservice

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"
)

// Resource is the APIService resource of kube-aggregator.
var Resource = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

const (
	// ManagedByLabel marks the APIServices this server manages; Remove deletes only those.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "reports-server"
	// automanagedLabel marks the APIServices kube-apiserver makes for CRDs (and for its own
	// groups). Its autoregister controller rewrites such an object to a local one while the CRD
	// exists, and leaves one without the label alone: taking a group over from CRDs means
	// removing it.
	automanagedLabel = "kube-aggregator.kubernetes.io/automanaged"

	// Priorities kube-apiserver gives a CRD-backed group/version, so discovery orders the groups
	// as it did when they were CRDs.
	DefaultGroupPriorityMinimum = 1000
	DefaultVersionPriority      = 100
	// DefaultInterval is how often a replica re-asserts the APIServices, so one deleted or
	// changed by hand comes back.
	DefaultInterval = time.Minute
)

// Service is the Service kube-apiserver proxies the groups to.
type Service struct {
	Namespace, Name string
	Port            int32
}

// Config says what to register.
type Config struct {
	Client dynamic.Interface
	// GroupVersions are the served group/versions: one APIService each.
	GroupVersions []schema.GroupVersion
	Service       Service
	// CABundle is the PEM CA that kube-apiserver verifies the serving certificate with. Empty:
	// insecureSkipTLSVerify (kube-apiserver refuses both at once).
	CABundle []byte
	// GroupPriorityMinimum and VersionPriority default to the CRD priorities.
	GroupPriorityMinimum, VersionPriority int32
	// Interval between reconciliations in Run (default DefaultInterval).
	Interval time.Duration
	Log      *slog.Logger
}

func (c *Config) defaults() {
	if c.GroupPriorityMinimum == 0 {
		c.GroupPriorityMinimum = DefaultGroupPriorityMinimum
	}
	if c.VersionPriority == 0 {
		c.VersionPriority = DefaultVersionPriority
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// Name is the name kube-aggregator requires for a group/version's APIService.
func Name(gv schema.GroupVersion) string { return gv.Version + "." + gv.Group }

// Reconciler keeps the APIServices of Config in place.
type Reconciler struct{ cfg Config }

// New returns a reconciler of cfg.
func New(cfg Config) *Reconciler {
	cfg.defaults()
	return &Reconciler{cfg: cfg}
}

// Run reconciles at once and then every interval until ctx ends; failures are logged and
// retried (the API keeps working meanwhile, only its registration may be stale).
func (r *Reconciler) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		if err := r.Reconcile(ctx); err != nil && ctx.Err() == nil {
			r.cfg.Log.Warn("cannot reconcile the APIServices; retrying", "err", err, "retry_in", r.cfg.Interval)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Reconcile creates or updates every APIService of the config.
func (r *Reconciler) Reconcile(ctx context.Context) error {
	var errs []error
	for _, gv := range r.cfg.GroupVersions {
		if err := r.reconcileOne(ctx, gv); err != nil {
			errs = append(errs, fmt.Errorf("APIService %s: %w", Name(gv), err))
		}
	}
	return errors.Join(errs...)
}

func (r *Reconciler) reconcileOne(ctx context.Context, gv schema.GroupVersion) error {
	client := r.cfg.Client.Resource(Resource)
	want := r.desired(gv)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := client.Get(ctx, Name(gv), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			obj := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": Resource.GroupVersion().String(), "kind": "APIService",
				"metadata": map[string]any{"name": Name(gv), "labels": map[string]any{ManagedByLabel: ManagedByValue}},
				"spec":     want,
			}}
			if _, err := client.Create(ctx, obj, metav1.CreateOptions{FieldManager: ManagedByValue}); err != nil {
				return fmt.Errorf("create: %w", err)
			}
			r.cfg.Log.Info("registered APIService", "name", Name(gv))
			return nil
		}
		if err != nil {
			return fmt.Errorf("get: %w", err)
		}
		labels := cur.GetLabels()
		_, automanaged := labels[automanagedLabel]
		if !automanaged && labels[ManagedByLabel] == ManagedByValue && specEqual(cur.Object["spec"], want) {
			return nil
		}
		if labels == nil {
			labels = map[string]string{}
		}
		delete(labels, automanagedLabel)
		labels[ManagedByLabel] = ManagedByValue
		cur.SetLabels(labels)
		cur.Object["spec"] = want
		if _, err := client.Update(ctx, cur, metav1.UpdateOptions{FieldManager: ManagedByValue}); err != nil {
			return fmt.Errorf("update: %w", err)
		}
		if automanaged {
			r.cfg.Log.Info("took over APIService from kube-apiserver (CRD-backed until now)", "name", Name(gv))
		} else {
			r.cfg.Log.Info("updated APIService", "name", Name(gv))
		}
		return nil
	})
}

// desired is the spec of gv's APIService.
func (r *Reconciler) desired(gv schema.GroupVersion) map[string]any {
	spec := map[string]any{
		"group":                gv.Group,
		"version":              gv.Version,
		"groupPriorityMinimum": int64(r.cfg.GroupPriorityMinimum),
		"versionPriority":      int64(r.cfg.VersionPriority),
		"service": map[string]any{
			"namespace": r.cfg.Service.Namespace,
			"name":      r.cfg.Service.Name,
			"port":      int64(r.cfg.Service.Port),
		},
	}
	if len(r.cfg.CABundle) > 0 {
		spec["caBundle"] = r.cfg.CABundle
	} else {
		spec["insecureSkipTLSVerify"] = true
	}
	return spec
}

// specEqual compares a stored spec with the desired one as JSON values (the stored caBundle is
// base64 text, ports are int64).
func specEqual(stored any, want map[string]any) bool {
	s, ok := stored.(map[string]any)
	if !ok {
		return false
	}
	norm := map[string]any{}
	for k, v := range want {
		if b, ok := v.([]byte); ok {
			v = base64.StdEncoding.EncodeToString(b)
		}
		norm[k] = v
	}
	have := map[string]any{}
	for k, v := range s {
		if v == false || v == nil { // omitted and false are the same to the API
			continue
		}
		have[k] = v
	}
	return reflect.DeepEqual(have, norm)
}

// Remove deletes the APIServices of groupVersions that this server manages (labelled, pointing
// at service); others (CRD-backed ones, another installation's) are left alone and reported.
func Remove(ctx context.Context, client dynamic.Interface, groupVersions []schema.GroupVersion, service Service, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	var errs []error
	for _, gv := range groupVersions {
		name := Name(gv)
		cur, err := client.Resource(Resource).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("get APIService %s: %w", name, err))
			continue
		}
		ns, _, _ := unstructured.NestedString(cur.Object, "spec", "service", "namespace")
		svc, _, _ := unstructured.NestedString(cur.Object, "spec", "service", "name")
		if cur.GetLabels()[ManagedByLabel] != ManagedByValue || ns != service.Namespace || svc != service.Name {
			log.Warn("leaving an APIService this installation does not manage", "name", name, "service", ns+"/"+svc)
			continue
		}
		uid := cur.GetUID()
		err = client.Resource(Resource).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete APIService %s: %w", name, err))
			continue
		}
		log.Info("removed APIService", "name", name)
	}
	return errors.Join(errs...)
}

// Available reports whether gv's APIService has condition Available=True, with its message.
func Available(ctx context.Context, client dynamic.Interface, gv schema.GroupVersion) (bool, string, error) {
	cur, err := client.Resource(Resource).Get(ctx, Name(gv), metav1.GetOptions{})
	if err != nil {
		return false, "", err
	}
	conds, _, _ := unstructured.NestedSlice(cur.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Available" {
			msg, _ := m["message"].(string)
			return m["status"] == "True", msg, nil
		}
	}
	return false, "no Available condition yet", nil
}
