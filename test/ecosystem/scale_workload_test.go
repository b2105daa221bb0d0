package ecosystem

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// The policies of TestKyvernoAtScale: Audit ClusterPolicies of several rules each, modelled on
// Kyverno's Pod Security Standards policies (charts/kyverno-policies: baseline and restricted)
// and written so that every rule's result follows from the resource alone. The Pod policies are
// also generated for Deployments (autogen, rules named autogen-<rule>). All are limited to the
// namespaces labelled selectorLabel, as TestKyverno's.
const (
	scaleConfigMapPolicy  = "scale-configmap-metadata"
	scaleBaselinePolicy   = "scale-pss-baseline"
	scaleRestrictedPolicy = "scale-pss-restricted"
)

// scaleRules are the rules of each policy, by policy, in the order the policies declare them.
var scaleRules = map[string][]string{
	scaleConfigMapPolicy:  {"require-team-label", "require-owner-annotation"},
	scaleBaselinePolicy:   {"disallow-privileged-containers", "disallow-host-namespaces", "disallow-host-path"},
	scaleRestrictedPolicy: {"require-run-as-non-root", "disallow-latest-tag"},
}

var scalePolicies = `apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: ` + scaleConfigMapPolicy + `
spec:
  background: true
  rules:
  - name: require-team-label
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
  - name: require-owner-annotation
    match:
      any:
      - resources:
          kinds: [ConfigMap]
          namespaceSelector:
            matchLabels: {` + selectorLabel + `: "true"}
    validate:
      failureAction: Audit
      message: an owner annotation is required
      pattern:
        metadata:
          annotations:
            owner: "?*"
---
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: ` + scaleBaselinePolicy + `
  annotations:
    pod-policies.kyverno.io/autogen-controllers: Deployment
spec:
  background: true
  rules:
  - name: disallow-privileged-containers
    match:
      any:
      - resources:
          kinds: [Pod]
          namespaceSelector:
            matchLabels: {` + selectorLabel + `: "true"}
    validate:
      failureAction: Audit
      message: privileged mode is disallowed
      pattern:
        spec:
          containers:
          - =(securityContext):
              =(privileged): "false"
  - name: disallow-host-namespaces
    match:
      any:
      - resources:
          kinds: [Pod]
          namespaceSelector:
            matchLabels: {` + selectorLabel + `: "true"}
    validate:
      failureAction: Audit
      message: sharing the host namespaces is disallowed
      pattern:
        spec:
          =(hostPID): "false"
          =(hostIPC): "false"
          =(hostNetwork): "false"
  - name: disallow-host-path
    match:
      any:
      - resources:
          kinds: [Pod]
          namespaceSelector:
            matchLabels: {` + selectorLabel + `: "true"}
    validate:
      failureAction: Audit
      message: hostPath volumes are forbidden
      pattern:
        spec:
          =(volumes):
          - X(hostPath): "null"
---
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: ` + scaleRestrictedPolicy + `
  annotations:
    pod-policies.kyverno.io/autogen-controllers: Deployment
spec:
  background: true
  rules:
  - name: require-run-as-non-root
    match:
      any:
      - resources:
          kinds: [Pod]
          namespaceSelector:
            matchLabels: {` + selectorLabel + `: "true"}
    validate:
      failureAction: Audit
      message: runAsNonRoot must be true
      pattern:
        spec:
          securityContext:
            runAsNonRoot: true
  - name: disallow-latest-tag
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
`

// variantLabel carries a Pod's or Deployment's variant (podVariants) on the object and on a
// Deployment's Pod template, so the Pods of a Deployment carry it too.
const variantLabel = "scale.reports-server.io/variant"

// podVariants are the pod specs of the workload: 0 complies with every rule; each other breaks
// some (podVariantFails).
const podVariants = 4

// podVariantFails are the Pod rules variant v fails; every other Pod rule passes.
func podVariantFails(v int) map[string]bool {
	switch v {
	case 1:
		return map[string]bool{"disallow-latest-tag": true}
	case 2:
		return map[string]bool{"disallow-host-namespaces": true, "require-run-as-non-root": true}
	case 3:
		return map[string]bool{"disallow-host-path": true}
	}
	return nil
}

func podSpec(v int) corev1.PodSpec {
	spec := corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)},
		Containers:      []corev1.Container{{Name: "app", Image: "registry.invalid/app:1.0"}},
	}
	switch v {
	case 1:
		spec.Containers[0].Image = "registry.invalid/app:latest"
	case 2:
		spec.SecurityContext = nil
		spec.HostNetwork = true
	case 3:
		spec.Volumes = []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/log"}}}}
	}
	return spec
}

// scaleWorkload is what TestKyvernoAtScale creates: n objects, in tenths, 5 ConfigMaps, 3 Pods
// and 2 Deployments (of one replica, whose Pod kube-controller-manager creates), spread over the
// namespaces in turn. Object i's variant is (i/10) mod podVariants for Pods and Deployments; a
// ConfigMap has a team label when i/10 is even and an owner annotation when it is a multiple of
// three.
type scaleWorkload struct {
	n          int
	namespaces []string
}

type scaleKind int

const (
	scaleConfigMap scaleKind = iota
	scalePod
	scaleDeployment
)

func (w scaleWorkload) kind(i int) scaleKind {
	switch r := i % 10; {
	case r < 5:
		return scaleConfigMap
	case r < 8:
		return scalePod
	default:
		return scaleDeployment
	}
}

// counts are the numbers of ConfigMaps, Pods and Deployments created.
func (w scaleWorkload) counts() (configMaps, pods, deployments int) {
	for i := range w.n {
		switch w.kind(i) {
		case scaleConfigMap:
			configMaps++
		case scalePod:
			pods++
		default:
			deployments++
		}
	}
	return configMaps, pods, deployments
}

// wantReports is how many PolicyReports the settled namespaces hold: one per object created, one
// per Deployment's Pod, one per namespace's kube-root-ca.crt ConfigMap.
func (w scaleWorkload) wantReports() int {
	_, _, deployments := w.counts()
	return w.n + deployments + len(w.namespaces)
}

// create creates the workload with writers concurrent clients. Kyverno's admission webhooks
// see every create; one that fails (a webhook call timing out on a loaded machine) is retried.
func (w scaleWorkload) create(ctx context.Context, client kubernetes.Interface, writers int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= w.n || ctx.Err() != nil {
					return
				}
				if err := w.createOne(ctx, client, i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (w scaleWorkload) createOne(ctx context.Context, client kubernetes.Interface, i int) error {
	ns := w.namespaces[i%len(w.namespaces)]
	v := (i / 10) % podVariants
	labels := map[string]string{variantLabel: strconv.Itoa(v)}
	var create func() error
	switch w.kind(i) {
	case scaleConfigMap:
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "cm-" + strconv.Itoa(i), Labels: map[string]string{}},
			Data:       map[string]string{"settings.yaml": "replicas: 3\nlogLevel: info\n"},
		}
		if (i/10)%2 == 0 {
			cm.Labels["team"] = "blue"
		}
		if (i/10)%3 == 0 {
			cm.Annotations = map[string]string{"owner": "team-blue"}
		}
		create = func() error {
			_, err := client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
			return err
		}
	case scalePod:
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pod-" + strconv.Itoa(i), Labels: labels}, Spec: podSpec(v)}
		create = func() error { _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); return err }
	default:
		name := "deploy-" + strconv.Itoa(i)
		selector := map[string]string{"app": name}
		template := map[string]string{"app": name, variantLabel: strconv.Itoa(v)}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: selector},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: template}, Spec: podSpec(v)},
			},
		}
		create = func() error {
			_, err := client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
			return err
		}
	}
	var err error
	for attempt := range 5 {
		if err = create(); err == nil || apierrors.IsAlreadyExists(err) {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(attempt+1) * time.Second)
	}
	return fmt.Errorf("create object %d in %s: %w", i, ns, err)
}

// scaleExpected maps the UID of every resource the policies match in the namespaces to its
// expected results ("policy/rule" → pass or fail), from the resources as they are: ConfigMaps
// by their labels and annotations, Pods and Deployments by their variant label.
func scaleExpected(ctx context.Context, client kubernetes.Interface, namespaces []string) (map[string]scaleResource, error) {
	out := map[string]scaleResource{}
	for _, ns := range namespaces {
		cms, err := client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, cm := range cms.Items {
			out[string(cm.UID)] = scaleResource{
				what: "ConfigMap " + ns + "/" + cm.Name, kind: "ConfigMap",
				results: map[string]string{
					scaleConfigMapPolicy + "/require-team-label":       passIf(cm.Labels["team"] != ""),
					scaleConfigMapPolicy + "/require-owner-annotation": passIf(cm.Annotations["owner"] != ""),
				},
			}
		}
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, p := range pods.Items {
			r, err := podResults(p.Labels, "")
			if err != nil {
				return nil, fmt.Errorf("Pod %s/%s: %w", ns, p.Name, err)
			}
			out[string(p.UID)] = scaleResource{what: "Pod " + ns + "/" + p.Name, kind: "Pod", results: r}
		}
		ds, err := client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, d := range ds.Items {
			r, err := podResults(d.Labels, "autogen-")
			if err != nil {
				return nil, fmt.Errorf("Deployment %s/%s: %w", ns, d.Name, err)
			}
			out[string(d.UID)] = scaleResource{what: "Deployment " + ns + "/" + d.Name, kind: "Deployment", results: r}
		}
	}
	return out, nil
}

// scaleResource is a resource's expected report.
type scaleResource struct {
	what, kind string
	results    map[string]string
}

// podResults are the expected results of the Pod rules for a Pod or (with the autogen prefix)
// Deployment of the variant in labels.
func podResults(labels map[string]string, rulePrefix string) (map[string]string, error) {
	v, err := strconv.Atoi(labels[variantLabel])
	if err != nil {
		return nil, fmt.Errorf("no variant label: %w", err)
	}
	fails := podVariantFails(v)
	out := map[string]string{}
	for _, policy := range []string{scaleBaselinePolicy, scaleRestrictedPolicy} {
		for _, rule := range scaleRules[policy] {
			out[policy+"/"+rulePrefix+rule] = passIf(!fails[rule])
		}
	}
	return out, nil
}

// scaleNamespaces are the namespaces of TestKyvernoAtScale.
func scaleNamespaces(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("kyverno-scale-%c", 'a'+i)
	}
	return out
}
