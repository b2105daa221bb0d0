package namespaces

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	wgpolicyv1alpha2 "github.com/reports-server/reports-server/internal/apis/wgpolicyk8s/v1alpha2"
	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/db/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

func names(t *testing.T, s *Storage, opts *metainternalversion.ListOptions) []string {
	t.Helper()
	obj, err := s.List(context.Background(), opts)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	var out []string
	for _, ns := range obj.(*corev1.NamespaceList).Items {
		out = append(out, ns.Name)
	}
	return out
}

// TestNamespaces runs the verbs of the namespaces resource against a real database: what is
// created is listed and got, dry runs change nothing, deletion purges first, and the refusals
// carry the statuses kube-apiserver gives.
func TestNamespaces(t *testing.T) {
	ctx := context.Background()
	pool, err := db.Open(ctx, dbtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var purged []string
	s := New(pool, "c", func(_ context.Context, ns string) error { purged = append(purged, ns); return nil })
	if err := s.EnsureDefault(ctx); err != nil {
		t.Fatal(err)
	}
	create := func(name string, dryRun ...string) error {
		_, err := s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, nil, &metav1.CreateOptions{DryRun: dryRun})
		return err
	}

	if err := create("team-a"); err != nil {
		t.Fatal(err)
	}
	if err := create("team-a"); !apierrors.IsAlreadyExists(err) {
		t.Errorf("second create: %v, want AlreadyExists", err)
	}
	if err := create("dry", metav1.DryRunAll); err != nil {
		t.Errorf("dry-run create: %v", err)
	}
	if err := create("Bad_Name"); !apierrors.IsInvalid(err) {
		t.Errorf("invalid name: %v, want Invalid", err)
	}
	// A report's namespace on first use (Provision) is a namespace like the others; a dry run's is not.
	report := &wgpolicyv1alpha2.PolicyReport{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "first-use"}}
	if _, err := s.Provision(ctx, report, &metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dryReport := &wgpolicyv1alpha2.PolicyReport{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "dry-use"}}
	if _, err := s.Provision(ctx, dryReport, &metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatal(err)
	}
	if got, want := names(t, s, nil), []string{"default", "first-use", "team-a"}; !slices.Equal(got, want) {
		t.Errorf("namespaces %v, want %v", got, want)
	}
	byName := &metainternalversion.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "team-a")}
	if got := names(t, s, byName); !slices.Equal(got, []string{"team-a"}) {
		t.Errorf("metadata.name=team-a selects %v", got)
	}
	if _, err := s.List(ctx, &metainternalversion.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.x", "1")}); !apierrors.IsBadRequest(err) {
		t.Errorf("unsupported field selector: %v, want BadRequest", err)
	}

	if _, _, err := s.Delete(ctx, "team-a", nil, &metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); err != nil || len(purged) != 0 {
		t.Errorf("dry-run delete: %v, purged %v", err, purged)
	}
	if _, deleted, err := s.Delete(ctx, "team-a", nil, &metav1.DeleteOptions{}); err != nil || !deleted || !slices.Equal(purged, []string{"team-a"}) {
		t.Errorf("delete: deleted %v, %v, purged %v", deleted, err, purged)
	}
	if _, err := s.Get(ctx, "team-a", nil); !apierrors.IsNotFound(err) || err.Error() != `namespaces "team-a" not found` {
		t.Errorf("get after delete: %v", err)
	}
	if _, _, err := s.Delete(ctx, "default", nil, &metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("delete default: %v, want Forbidden", err)
	}
	if _, _, err := s.Update(ctx, "default", nil, nil, nil, false, nil); !apierrors.IsMethodNotSupported(err) {
		t.Errorf("update: %v, want MethodNotAllowed", err)
	}
}
