package ecosystem

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// The policies of the scenario, all Audit, all limited to the namespaces labelled selectorLabel.
// Each matches one kind, so every resource's expected results follow from the resource alone
// (expectedResults).
const (
	selectorLabel = "ecosystem.reports-server.io/kyverno"
	// requireTeam (ClusterPolicy): ConfigMaps need a team label.
	requireTeam = "require-team-label"
	// disallowLatest (ClusterPolicy, no autogen rules for controllers): no Pod container image
	// tagged latest.
	disallowLatest = "disallow-latest-tag"
	// requireOwner (ValidatingPolicy, CEL): Deployments need an owner annotation.
	requireOwner = "require-owner-annotation"
)

var policies = `apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: ` + requireTeam + `
spec:
  background: true
  rules:
  - name: check-team
    match:
      any:
      - resources:
          kinds: [ConfigMap]
          namespaceSelector:
            matchLabels: {` + selectorLabel + `: "true"}
    validate:
      failureAction: Audit
      message: a team label is required
      pattern:
        metadata:
          labels:
            team: "?*"
---
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: ` + disallowLatest + `
  annotations:
    pod-policies.kyverno.io/autogen-controllers: none
spec:
  background: true
  rules:
  - name: check-image
    match:
      any:
      - resources:
          kinds: [Pod]
          namespaceSelector:
            matchLabels: {` + selectorLabel + `: "true"}
    validate:
      failureAction: Audit
      message: images must not use the latest tag
      pattern:
        spec:
          containers:
          - image: "!*:latest"
---
apiVersion: policies.kyverno.io/v1
kind: ValidatingPolicy
metadata:
  name: ` + requireOwner + `
spec:
  validationActions: [Audit]
  evaluation:
    background:
      enabled: true
  matchConstraints:
    namespaceSelector:
      matchLabels: {` + selectorLabel + `: "true"}
    resourceRules:
    - apiGroups: [apps]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [deployments]
  validations:
  - expression: "has(object.metadata.annotations) && 'owner' in object.metadata.annotations"
    message: an owner annotation is required
`

// resource is a resource the policies match, and the result each policy should report for it.
type resource struct {
	Kind, Namespace, Name string
	UID                   types.UID
	// Results maps a policy to "pass" or "fail".
	Results map[string]string
}

func (r resource) String() string { return r.Kind + " " + r.Namespace + "/" + r.Name }

// createBatch creates, in namespace, 6 ConfigMaps, 4 Pods and 2 Deployments (each of which gets a
// ReplicaSet and a Pod from kube-controller-manager), half of each kind compliant.
func createBatch(ctx context.Context, t *testing.T, client kubernetes.Interface, namespace, prefix string) {
	t.Helper()
	image := func(i int) string {
		if i%2 == 0 {
			return "registry.invalid/app:1.0"
		}
		return "registry.invalid/app:latest"
	}
	for i := range 6 {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: prefix + "cm-" + strconv.Itoa(i)}}
		if i%2 == 0 {
			cm.Labels = map[string]string{"team": "blue"}
		}
		if _, err := client.CoreV1().ConfigMaps(namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create ConfigMap: %v", err)
		}
	}
	for i := range 4 {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: prefix + "pod-" + strconv.Itoa(i)},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image(i)}}},
		}
		if _, err := client.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create Pod: %v", err)
		}
	}
	for i := range 2 {
		name := prefix + "deploy-" + strconv.Itoa(i)
		labels := map[string]string{"app": name}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image(i)}}},
				},
			},
		}
		if i%2 == 0 {
			d.Annotations = map[string]string{"owner": "team-blue"}
		}
		if _, err := client.AppsV1().Deployments(namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create Deployment: %v", err)
		}
	}
}

// expectedResources lists the resources of the namespaces that the active policies match, as
// they are now, with the result each policy should give.
func expectedResources(ctx context.Context, client kubernetes.Interface, namespaces []string, active map[string]bool) ([]resource, error) {
	var out []resource
	add := func(kind string, m metav1.ObjectMeta, results map[string]string) {
		maps.DeleteFunc(results, func(policy, _ string) bool { return !active[policy] })
		if len(results) > 0 {
			out = append(out, resource{Kind: kind, Namespace: m.Namespace, Name: m.Name, UID: m.UID, Results: results})
		}
	}
	for _, ns := range namespaces {
		cms, err := client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, cm := range cms.Items {
			add("ConfigMap", cm.ObjectMeta, map[string]string{requireTeam: passIf(cm.Labels["team"] != "")})
		}
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, p := range pods.Items {
			ok := !slices.ContainsFunc(p.Spec.Containers, func(c corev1.Container) bool { return strings.HasSuffix(c.Image, ":latest") })
			add("Pod", p.ObjectMeta, map[string]string{disallowLatest: passIf(ok)})
		}
		ds, err := client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, d := range ds.Items {
			_, ok := d.Annotations["owner"]
			add("Deployment", d.ObjectMeta, map[string]string{requireOwner: passIf(ok)})
		}
	}
	return out, nil
}

func passIf(ok bool) string {
	if ok {
		return "pass"
	}
	return "fail"
}

// namespaceNames are the scenario's namespaces.
func namespaceNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("kyverno-e2e-%c", 'a'+i)
	}
	return out
}

func createNamespaces(ctx context.Context, t *testing.T, client kubernetes.Interface, names []string) {
	t.Helper()
	for _, name := range names {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{selectorLabel: "true"}}}
		if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create namespace %s: %v", name, err)
		}
	}
	// Pods need the namespace's default ServiceAccount, which kube-controller-manager creates.
	eventually(t, "the namespaces' default ServiceAccounts", within, func(ctx context.Context) error {
		for _, name := range names {
			if _, err := client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{}); err != nil {
				return err
			}
		}
		return nil
	})
}

// within is a deadline for settling: generous, as the machine may be busy; waits poll and end as
// soon as the state is reached.
const within = 5 * time.Minute
