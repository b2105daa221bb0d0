package e2e

import (
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// allVerbs are the verbs of a CRD-backed kind without subresources, which clients expect of ours.
var allVerbs = []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

// testDiscovery checks that kube-apiserver's discovery lists the six kinds with their names,
// scope and verbs: in the aggregated document (/apis, which kube-apiserver assembles from the
// aggregated servers and client-go reads by default), in the per-group/version document proxied
// to reports-server, and in kubectl api-resources.
func testDiscovery(t *testing.T, c *cluster.Cluster) {
	dc, err := discovery.NewDiscoveryClientForConfig(c.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, source string, lists []*metav1.APIResourceList) {
		t.Helper()
		for _, k := range reports.All() {
			var res *metav1.APIResource
			for _, l := range lists {
				if l.GroupVersion != k.GroupVersion.String() {
					continue
				}
				for i := range l.APIResources {
					if l.APIResources[i].Name == k.Resource {
						res = &l.APIResources[i]
					}
				}
			}
			if res == nil {
				t.Errorf("%s: no %s in %s", source, k.Resource, k.GroupVersion)
				continue
			}
			verbs := slices.Sorted(slices.Values(res.Verbs))
			if res.Kind != k.Kind || res.Namespaced != k.Namespaced || !slices.Equal(res.ShortNames, k.ShortNames) ||
				res.SingularName != k.Singular || !slices.Equal(verbs, allVerbs) || !slices.Equal(res.Categories, k.Categories) {
				t.Errorf("%s: %s is %+v; want kind %s, namespaced %v, short names %v, singular %s, verbs %v, categories %v",
					source, k.Resource, *res, k.Kind, k.Namespaced, k.ShortNames, k.Singular, allVerbs, k.Categories)
			}
		}
	}

	t.Run("aggregated", func(t *testing.T) {
		_, lists, err := dc.ServerGroupsAndResources()
		if err != nil {
			// A partial failure here is what every client of the cluster would see.
			t.Fatalf("discovery: %v", err)
		}
		check(t, "/apis (aggregated discovery)", lists)
	})

	t.Run("per group version", func(t *testing.T) {
		var lists []*metav1.APIResourceList
		for _, gv := range groupVersions() {
			l, err := dc.ServerResourcesForGroupVersion(gv)
			if err != nil {
				t.Fatalf("discovery of %s: %v", gv, err)
			}
			lists = append(lists, l)
		}
		check(t, "/apis/<group>/<version>", lists)
	})

	t.Run("kubectl api-resources", func(t *testing.T) {
		byName := map[string][]string{}
		for _, r := range rows(kubectl(t, c, "api-resources", "-o", "wide")) {
			byName[r[0]] = r
		}
		for _, k := range reports.All() {
			row := byName[k.Resource]
			// NAME SHORTNAMES APIVERSION NAMESPACED KIND VERBS [CATEGORIES], verbs comma-separated.
			want := []string{k.Resource, strings.Join(k.ShortNames, ","), k.GroupVersion.String(),
				map[bool]string{true: "true", false: "false"}[k.Namespaced], k.Kind, strings.Join(allVerbs, ",")}
			if len(k.Categories) > 0 {
				want = append(want, strings.Join(k.Categories, ","))
			}
			if !slices.Equal(row, want) {
				t.Errorf("api-resources -o wide row %v, want %v", row, want)
			}
		}
	})
}

// groupVersions are the served group/versions.
func groupVersions() []string {
	var gvs []string
	for _, k := range reports.All() {
		if gv := k.GroupVersion.String(); !slices.Contains(gvs, gv) {
			gvs = append(gvs, gv)
		}
	}
	return gvs
}
