// Package namespaces serves core/v1 namespaces in standalone mode, so kubectl behaves as against a
// cluster: `kubectl apply -f` of a `kind: List` file needs the core v1 group in discovery, and
// after a NotFound kubectl asks for the object's namespace to word its message.
//
// Behind kube-apiserver namespaces are kube-apiserver's and this package is not installed.
//
// The model is deliberately small (sql/schema/00010_namespaces.sql): a namespace exists when it
// was created (`kubectl create namespace`; "default", ensured at start; the namespace of a report,
// on its first report, as Kubernetes' NamespaceAutoProvision admission would: Provision) or when
// reports are in it (those written before the namespaces table, say). Namespaces
// have a name, a uid and a creation time; they support get, list (with field selectors on
// metadata.name and status.phase), create and delete. Deleting a namespace deletes its reports
// first, as the namespace controller of a cluster does, but at once rather than through a
// Terminating phase. Updates (labels, annotations) and watches of namespaces are not served: they
// answer 405 with a message saying so.
package namespaces

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
	"github.com/reports-server/reports-server/internal/apiserver/tables"
	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/sqlc"
)

// Default is the namespace that always exists: kubeconfigs (ours too) name it as the context's.
const Default = metav1.NamespaceDefault

var resource = corev1.Resource("namespaces")

// Purge deletes every report in a namespace; Delete calls it before the namespace goes.
type Purge func(ctx context.Context, namespace string) error

// Storage is the namespaces resource.
type Storage struct {
	pool    *pgxpool.Pool
	cluster string
	purge   Purge
	queries *db.Queries
	// provisioned are the namespaces this process has given a row: a create in one of them
	// needs no query (standalone mode has one process; deleting a namespace forgets it).
	provisioned sync.Map
	tables.Convertor
}

var (
	_ rest.Storage                  = (*Storage)(nil)
	_ rest.Scoper                   = (*Storage)(nil)
	_ rest.Getter                   = (*Storage)(nil)
	_ rest.Lister                   = (*Storage)(nil)
	_ rest.Creater                  = (*Storage)(nil)
	_ rest.GracefulDeleter          = (*Storage)(nil)
	_ rest.Updater                  = (*Storage)(nil)
	_ rest.ShortNamesProvider       = (*Storage)(nil)
	_ rest.SingularNameProvider     = (*Storage)(nil)
	_ rest.GroupVersionKindProvider = (*Storage)(nil)
)

// New returns the namespaces of cluster in pool; purge deletes a namespace's reports.
func New(pool *pgxpool.Pool, cluster string, purge Purge) *Storage {
	return &Storage{
		pool: pool, cluster: cluster, purge: purge, queries: db.New(),
		Convertor: tables.New(resource, cells,
			metav1.TableColumnDefinition{Name: "Status", Type: "string", Description: "The phase of the namespace."},
			metav1.TableColumnDefinition{Name: "Age", Type: "string", Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]},
		),
	}
}

// EnsureDefault gives the default namespace its row, so it exists with its own creation time.
func (s *Storage) EnsureDefault(ctx context.Context) error {
	err := s.queries.EnsureNamespace(ctx, s.pool, sqlc.EnsureNamespaceParams{Cluster: s.cluster, Name: Default})
	if err != nil {
		return fmt.Errorf("ensure namespace %q: %w", Default, err)
	}
	return nil
}

func (s *Storage) New() runtime.Object     { return &corev1.Namespace{} }
func (s *Storage) NewList() runtime.Object { return &corev1.NamespaceList{} }
func (s *Storage) Destroy()                {}
func (s *Storage) NamespaceScoped() bool   { return false }
func (s *Storage) ShortNames() []string    { return []string{"ns"} }
func (s *Storage) GetSingularName() string { return "namespace" }

// GroupVersionKind is core/v1 Namespace, whatever version the scheme prefers.
func (s *Storage) GroupVersionKind(schema.GroupVersion) schema.GroupVersionKind {
	return corev1.SchemeGroupVersion.WithKind("Namespace")
}

// Provision gives a report's namespace a row before the report is created, so a namespace made on
// first use stays when its last report goes, as in a cluster. It is the store's BeginCreate hook
// (a create, or an apply or update that creates); dry runs provision nothing.
func (s *Storage) Provision(ctx context.Context, obj runtime.Object, options *metav1.CreateOptions) (genericregistry.FinishFunc, error) {
	nothing := func(context.Context, bool) {}
	m, err := meta.Accessor(obj)
	if err != nil || m.GetNamespace() == "" || (options != nil && isDryRun(options.DryRun)) {
		return nothing, nil
	}
	if _, ok := s.provisioned.Load(m.GetNamespace()); ok {
		return nothing, nil
	}
	qctx, cancel := pgstorage.WithDatabaseDeadline(ctx)
	defer cancel()
	err = s.queries.EnsureNamespace(qctx, s.pool, sqlc.EnsureNamespaceParams{Cluster: s.cluster, Name: m.GetNamespace()})
	if err != nil {
		return nil, apiError(fmt.Errorf("create namespace %q on first use: %w", m.GetNamespace(), err))
	}
	s.provisioned.Store(m.GetNamespace(), struct{}{})
	return nothing, nil
}

// Get returns the namespace name, or NotFound worded as kube-apiserver words it.
func (s *Storage) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	rows, err := s.queries.GetNamespace(ctx, s.pool, sqlc.GetNamespaceParams{Cluster: s.cluster, Name: name})
	if err != nil {
		return nil, apiError(fmt.Errorf("get namespace %q: %w", name, err))
	}
	if len(rows) == 0 {
		return nil, apierrors.NewNotFound(resource, name)
	}
	return namespace(rows[0].Name, rows[0].Uid, rows[0].CreatedAt), nil
}

// List returns the namespaces that match the selectors, by name.
func (s *Storage) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	match, err := matcher(options)
	if err != nil {
		return nil, err
	}
	rows, err := s.queries.ListNamespaces(ctx, s.pool, s.cluster)
	if err != nil {
		return nil, apiError(fmt.Errorf("list namespaces: %w", err))
	}
	list := &corev1.NamespaceList{}
	for _, r := range rows {
		ns := namespace(r.Name, r.Uid, r.CreatedAt)
		if match(ns) {
			list.Items = append(list.Items, *ns)
		}
	}
	return list, nil
}

// Create adds a namespace; AlreadyExists when it exists, with a row or with reports in it.
func (s *Storage) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a Namespace: %T", obj))
	}
	if err := validateName(ns.Name); err != nil {
		return nil, err
	}
	if createValidation != nil {
		if err := createValidation(ctx, obj); err != nil {
			return nil, err
		}
	}
	if isDryRun(options.DryRun) {
		if _, err := s.Get(ctx, ns.Name, nil); err == nil {
			return nil, apierrors.NewAlreadyExists(resource, ns.Name)
		}
		return namespace(ns.Name, "", pgtype.Timestamptz{Time: time.Now(), Valid: true}), nil
	}
	rows, err := s.queries.CreateNamespace(ctx, s.pool, sqlc.CreateNamespaceParams{Cluster: s.cluster, Name: ns.Name})
	if err != nil {
		return nil, apiError(fmt.Errorf("create namespace %q: %w", ns.Name, err))
	}
	if len(rows) == 0 {
		return nil, apierrors.NewAlreadyExists(resource, ns.Name)
	}
	return namespace(rows[0].Name, rows[0].Uid, rows[0].CreatedAt), nil
}

// Update refuses every change (labels and annotations too, hence `kubectl label ns`), with a
// message saying what namespaces of a standalone server can do; without it the handlers would
// answer a bare 405.
func (s *Storage) Update(_ context.Context, name string, _ rest.UpdatedObjectInfo, _ rest.ValidateObjectFunc, _ rest.ValidateObjectUpdateFunc, _ bool, _ *metav1.UpdateOptions) (runtime.Object, bool, error) {
	return nil, false, &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure,
		Code:   http.StatusMethodNotAllowed,
		Reason: metav1.StatusReasonMethodNotAllowed,
		Message: fmt.Sprintf("namespace %q cannot be changed: the namespaces of a standalone reports-server are names "+
			"only (no labels, annotations or finalizers); create them with `kubectl create namespace` or client-side "+
			"`kubectl apply`, and delete them, but they cannot be updated, patched or server-side applied", name),
		Details: &metav1.StatusDetails{Name: name, Kind: resource.Resource},
	}}
}

// Delete deletes the namespace's reports, then the namespace. "default" may not be deleted, as
// in a cluster.
func (s *Storage) Delete(ctx context.Context, name string, deleteValidation rest.ValidateObjectFunc, options *metav1.DeleteOptions) (runtime.Object, bool, error) {
	if name == Default {
		return nil, false, apierrors.NewForbidden(resource, name, errors.New("this namespace may not be deleted"))
	}
	obj, err := s.Get(ctx, name, nil)
	if err != nil {
		return nil, false, err
	}
	ns := obj.(*corev1.Namespace)
	if err := checkPreconditions(ns, options); err != nil {
		return nil, false, err
	}
	if deleteValidation != nil {
		if err := deleteValidation(ctx, obj); err != nil {
			return nil, false, err
		}
	}
	ns.Status.Phase = corev1.NamespaceTerminating
	if options != nil && isDryRun(options.DryRun) {
		return ns, false, nil
	}
	s.provisioned.Delete(name)
	if err := s.purge(ctx, name); err != nil {
		return nil, false, fmt.Errorf("delete the reports of namespace %q: %w", name, err)
	}
	if err := s.queries.DeleteNamespace(ctx, s.pool, sqlc.DeleteNamespaceParams{Cluster: s.cluster, Name: name}); err != nil {
		return nil, false, apiError(fmt.Errorf("delete namespace %q: %w", name, err))
	}
	s.provisioned.Delete(name) // again: a create may have provisioned it during the purge
	return ns, true, nil
}

// namespace builds the served object of one row. Namespaces are Active while they exist.
func namespace(name, uid string, created pgtype.Timestamptz) *corev1.Namespace {
	return &corev1.Namespace{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{
			Name:              name,
			UID:               types.UID(uid),
			CreationTimestamp: metav1.NewTime(created.Time.UTC().Truncate(time.Second)),
			Labels:            map[string]string{corev1.LabelMetadataName: name},
		},
		Spec:   corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{corev1.FinalizerKubernetes}},
		Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
	}
}

// cells are a namespace's Table cells after its name: status and age, as kubectl prints them.
func cells(obj runtime.Object) []any {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return nil
	}
	return []any{string(ns.Status.Phase), age(ns.CreationTimestamp)}
}

func age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}

// Selectable are the fields a namespace list can be selected on, as kube-apiserver's.
var Selectable = []string{"metadata.name", "status.phase"}

// FieldLabelConversion is the scheme's check of field selectors on namespaces (the default one
// knows only metadata.name and metadata.namespace); register it with
// AddFieldLabelConversionFunc.
func FieldLabelConversion(label, value string) (string, string, error) {
	if !slices.Contains(Selectable, label) {
		return "", "", fmt.Errorf("field label not supported: %s (namespaces can be selected on %s)", label, strings.Join(Selectable, ", "))
	}
	return label, value, nil
}

// matcher returns the test a list's items pass; 400 for a field namespaces cannot be selected on.
func matcher(options *metainternalversion.ListOptions) (func(*corev1.Namespace) bool, error) {
	labelSel, fieldSel := labels.Everything(), fields.Everything()
	if options != nil && options.LabelSelector != nil {
		labelSel = options.LabelSelector
	}
	if options != nil && options.FieldSelector != nil {
		fieldSel = options.FieldSelector
	}
	for _, r := range fieldSel.Requirements() {
		if _, _, err := FieldLabelConversion(r.Field, r.Value); err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
	}
	return func(ns *corev1.Namespace) bool {
		return labelSel.Matches(labels.Set(ns.Labels)) &&
			fieldSel.Matches(fields.Set{"metadata.name": ns.Name, "status.phase": string(ns.Status.Phase)})
	}, nil
}

// validateName refuses names that are not DNS labels, with kube-apiserver's Invalid status.
func validateName(name string) error {
	if name == "" {
		return apierrors.NewBadRequest("a namespace needs metadata.name (generateName is not supported here)")
	}
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Namespace").GroupKind(), name,
			field.ErrorList{field.Invalid(field.NewPath("metadata", "name"), name, strings.Join(msgs, "; "))})
	}
	return nil
}

// checkPreconditions applies a delete's uid precondition; resourceVersions are not kept for
// namespaces, so a resourceVersion precondition cannot hold.
func checkPreconditions(ns *corev1.Namespace, options *metav1.DeleteOptions) error {
	if options == nil || options.Preconditions == nil {
		return nil
	}
	p := options.Preconditions
	if p.UID != nil && *p.UID != ns.UID {
		return apierrors.NewConflict(resource, ns.Name, fmt.Errorf("precondition failed: uid is %s, not %s", ns.UID, *p.UID))
	}
	if p.ResourceVersion != nil && *p.ResourceVersion != "" {
		return apierrors.NewConflict(resource, ns.Name, errors.New("precondition failed: namespaces of a standalone server have no resourceVersion"))
	}
	return nil
}

func isDryRun(dryRun []string) bool { return len(dryRun) > 0 }

// apiError maps a database failure to an API status: 503 with a retry hint when the database is
// unreachable, 500 otherwise.
func apiError(err error) error {
	if db.IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded) {
		return &apierrors.StatusError{ErrStatus: metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusServiceUnavailable,
			Reason:  metav1.StatusReasonServiceUnavailable,
			Message: fmt.Sprintf("the report database is unavailable: %v; retry shortly", err),
			Details: &metav1.StatusDetails{RetryAfterSeconds: 1},
		}}
	}
	return apierrors.NewInternalError(err)
}
