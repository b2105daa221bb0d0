package analytics_test

import (
	"fmt"
)

// Generated reports, shaped like what the producers write (docs/sql.md's examples query them):
// per pod a Kyverno policy report with a scope and four policies, and a Trivy vulnerability
// report linked to the pod only through its controller ownerReference, with CVSS scores in
// "score" and "<vendor>.v3_score" (some not numbers) and negative timestamp nanos; per namespace
// an ephemeral report (results under spec, subject from spec.owner) and an openreports Report
// (top-level source, results naming two resources); per cluster a ClusterPolicyReport about a
// node and a ClusterEphemeralReport.

// clusterLayout is how many pods each namespace of a generated cluster has.
var clusterLayout = map[string][]nsPods{
	"prod":    {{"team-a", 6}, {"team-b", 4}, {"team-c", 5}},
	"staging": {{"team-a", 3}},
}

type nsPods struct {
	ns   string
	pods int
}

type kyvernoPolicy struct {
	name, rule, severity string
	outcome              func(ns string, i int) string
}

var kyvernoPolicies = []kyvernoPolicy{
	{"disallow-privileged", "privileged-containers", "critical", func(ns string, i int) string {
		if ns == "team-b" || i%3 == 0 {
			return "fail"
		}
		return "pass"
	}},
	{"require-labels", "check-team", "medium", func(_ string, i int) string {
		if i%2 == 0 {
			return "fail"
		}
		return "pass"
	}},
	{"require-requests", "check-resources", "high", func(_ string, i int) string {
		if i%4 == 1 {
			return "warn"
		}
		return "pass"
	}},
	{"disallow-latest-tag", "validate-image-tag", "low", func(_ string, i int) string {
		switch i % 5 {
		case 2:
			return "error"
		case 3:
			return "skip"
		}
		return "pass"
	}},
}

type cve struct {
	id, pkg, severity string
	props             map[string]any
	onlyEven          bool
}

var cves = []cve{
	{"CVE-2024-1001", "openssl", "critical", map[string]any{"score": "9.8", "nvd.v3_score": "9.8", "InstalledVersion": "3.0.1", "FixedVersion": "3.0.14"}, false},
	{"CVE-2024-1002", "zlib", "high", map[string]any{"nvd.v3_score": "8.1", "redhat.v3_score": "7.5", "InstalledVersion": "1.2.3", "FixedVersion": "1.2.4"}, false},
	{"CVE-2024-1003", "busybox", "medium", map[string]any{"score": "5.3", "InstalledVersion": "1.36.0", "FixedVersion": ""}, false},
	{"CVE-2024-1004", "curl", "low", map[string]any{"score": "n/a", "nvd.v3_score": "3.1", "InstalledVersion": "8.0.0", "FixedVersion": "8.0.1"}, false},
	{"CVE-2024-1005", "glibc", "critical", map[string]any{"score": " 10.0 ", "InstalledVersion": "2.36", "FixedVersion": "2.36-9"}, true},
}

func podName(i int) string { return fmt.Sprintf("web-%d", i) }

// generated returns the generated reports of cluster.
func generated(cluster string) []map[string]any {
	var out []map[string]any
	for _, np := range clusterLayout[cluster] {
		for i := range np.pods {
			out = append(out, kyvernoReport(np.ns, i, 0), trivyReport(np.ns, i))
		}
		out = append(out, ephemeralReport(np.ns, 0), openReport(np.ns), backgroundScanReport(np.ns, 1, true))
	}
	out = append(out, nodeReport(), clusterEphemeralReport(), clusterBackgroundScanReport(), backgroundScanReport("team-a", 2, false))
	return out
}

// backgroundScanReport is an EphemeralReport of pod i as Kyverno's background scan writes it
// (pkg/utils/report: NewBackgroundScanReport, SetResourceUid, SetResourceGVR…): spec.owner is the
// zero value, the pod is named by an ownerReference that is not the controller (when withRef),
// by the audit.kyverno.io/resource.* labels and by the name and namespace annotations.
func backgroundScanReport(ns string, i int, withRef bool) map[string]any {
	pod := podName(i)
	uid := "pod-uid-" + ns + "-" + pod
	md := map[string]any{
		"name": uid, "namespace": ns,
		"labels": map[string]any{
			"app.kubernetes.io/managed-by": "kyverno", "audit.kyverno.io/source": "background-scan",
			"audit.kyverno.io/resource.uid": uid, "audit.kyverno.io/resource.group": "",
			"audit.kyverno.io/resource.version": "v1", "audit.kyverno.io/resource.kind": "Pod",
		},
		"annotations": map[string]any{"audit.kyverno.io/resource.name": pod, "audit.kyverno.io/resource.namespace": ns},
	}
	if withRef {
		md["ownerReferences"] = []any{map[string]any{"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": uid}}
	}
	return map[string]any{
		"apiVersion": "reports.kyverno.io/v1", "kind": "EphemeralReport",
		"metadata": md,
		"spec": map[string]any{
			"owner":   map[string]any{"apiVersion": "", "kind": "", "name": "", "uid": ""},
			"summary": map[string]any{"fail": int64(1)},
			"results": []any{map[string]any{
				"policy": "disallow-privileged", "rule": "privileged-containers", "result": "fail", "severity": "critical",
				"source": "kyverno", "scored": true, "message": "privileged mode is not allowed",
			}},
		},
	}
}

// clusterBackgroundScanReport is a ClusterEphemeralReport of a namespace from Kyverno's
// background scan: no namespace annotation, an ownerReference to the Namespace.
func clusterBackgroundScanReport() map[string]any {
	return map[string]any{
		"apiVersion": "reports.kyverno.io/v1", "kind": "ClusterEphemeralReport",
		"metadata": map[string]any{
			"name": "ns-uid-team-b",
			"labels": map[string]any{
				"audit.kyverno.io/resource.uid": "ns-uid-team-b", "audit.kyverno.io/resource.group": "",
				"audit.kyverno.io/resource.version": "v1", "audit.kyverno.io/resource.kind": "Namespace",
			},
			"annotations":     map[string]any{"audit.kyverno.io/resource.name": "team-b"},
			"ownerReferences": []any{map[string]any{"apiVersion": "v1", "kind": "Namespace", "name": "team-b", "uid": "ns-uid-team-b"}},
		},
		"spec": map[string]any{
			"owner": map[string]any{"apiVersion": "", "kind": "", "name": "", "uid": ""},
			"results": []any{map[string]any{
				"policy": "require-ns-labels", "rule": "check-team", "result": "fail", "severity": "high", "source": "kyverno",
			}},
		},
	}
}

// kyvernoReport is the policy report of pod i; round shifts the outcomes (updates use it).
func kyvernoReport(ns string, i, round int) map[string]any {
	pod := podName(i)
	var results []any
	sum := map[string]any{}
	for _, p := range kyvernoPolicies {
		outcome := p.outcome(ns, i+round)
		sum[outcome] = toInt(sum[outcome]) + 1
		results = append(results, map[string]any{
			"policy": p.name, "rule": p.rule, "result": outcome, "severity": p.severity,
			"scored": true, "source": "kyverno", "category": "Pod Security",
			"message":   fmt.Sprintf("validation rule '%s' %s", p.rule, outcome),
			"timestamp": map[string]any{"seconds": int64(1700000000 + i), "nanos": int64(0)},
		})
	}
	return map[string]any{
		"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
		"metadata": map[string]any{
			"name": "pol-" + pod, "namespace": ns,
			"labels": map[string]any{"app.kubernetes.io/managed-by": "kyverno"},
		},
		"scope": map[string]any{
			"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": ns, "uid": "pod-uid-" + ns + "-" + pod,
		},
		"summary": sum,
		"results": results,
	}
}

func trivyReport(ns string, i int) map[string]any {
	pod := podName(i)
	var results []any
	for _, c := range cves {
		if c.onlyEven && i%2 == 1 {
			continue
		}
		props := map[string]any{"VulnerabilityID": c.id, "PrimaryURL": "https://avd.aquasec.com/nvd/" + c.id}
		for k, v := range c.props {
			props[k] = v
		}
		results = append(results, map[string]any{
			"policy": c.id, "category": c.pkg, "severity": c.severity, "scored": true, "source": "Trivy",
			"properties": props,
			"timestamp":  map[string]any{"seconds": int64(1700000100), "nanos": int64(-250000000)},
		})
	}
	return map[string]any{
		"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
		"metadata": map[string]any{
			"name": "trivy-" + pod, "namespace": ns,
			"labels": map[string]any{"trivy-operator.resource.kind": "Pod", "trivy-operator.resource.name": pod},
			"ownerReferences": []any{map[string]any{
				"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": "pod-uid-" + ns + "-" + pod, "controller": true,
			}},
		},
		"summary": map[string]any{"fail": int64(len(results))},
		"results": results,
	}
}

func ephemeralReport(ns string, i int) map[string]any {
	pod := podName(i)
	return map[string]any{
		"apiVersion": "reports.kyverno.io/v1", "kind": "EphemeralReport",
		"metadata": map[string]any{"name": "ephr-" + pod, "namespace": ns},
		"spec": map[string]any{
			"owner":   map[string]any{"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": "pod-uid-" + ns + "-" + pod},
			"summary": map[string]any{"fail": int64(1)},
			"results": []any{map[string]any{
				"policy": "require-labels", "rule": "check-owner", "result": "fail", "severity": "medium",
				"source": "kyverno", "scored": true, "message": "label 'owner' is required",
				"timestamp": map[string]any{"seconds": int64(1700000200), "nanos": int64(5000)},
			}},
		},
	}
}

func openReport(ns string) map[string]any {
	return map[string]any{
		"apiVersion": "openreports.io/v1alpha1", "kind": "Report",
		"metadata": map[string]any{"name": "kube-bench-" + ns, "namespace": ns},
		"source":   "kube-bench",
		"summary":  map[string]any{"fail": int64(1), "pass": int64(1)},
		"results": []any{
			map[string]any{
				"policy": "cis-5.2.1", "rule": "minimize-privileged", "result": "fail", "severity": "high",
				"message": "privileged containers run in " + ns,
				"resources": []any{
					map[string]any{"apiVersion": "v1", "kind": "Pod", "name": podName(1), "namespace": ns, "uid": "pod-uid-" + ns + "-" + podName(1)},
					map[string]any{"apiVersion": "v1", "kind": "Pod", "name": podName(2), "namespace": ns},
				},
			},
			map[string]any{"policy": "cis-5.1.1", "rule": "cluster-admin", "result": "pass", "severity": "info"},
		},
	}
}

func nodeReport() map[string]any {
	return map[string]any{
		"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "ClusterPolicyReport",
		"metadata": map[string]any{"name": "node-node-1"},
		"scope":    map[string]any{"apiVersion": "v1", "kind": "Node", "name": "node-1", "uid": "node-uid-1"},
		"summary":  map[string]any{"fail": int64(1), "error": int64(1)},
		"results": []any{
			map[string]any{"policy": "node-hardening", "rule": "kubelet-anonymous-auth", "result": "fail", "severity": "high", "source": "kube-bench"},
			map[string]any{"policy": "node-hardening", "rule": "kubelet-read-only-port", "result": "error", "source": "kube-bench",
				"properties": map[string]any{"severity": "Medium", "index": "4.2.4"}},
		},
	}
}

func clusterEphemeralReport() map[string]any {
	return map[string]any{
		"apiVersion": "reports.kyverno.io/v1", "kind": "ClusterEphemeralReport",
		"metadata": map[string]any{"name": "cephr-team-a"},
		"spec": map[string]any{
			"owner": map[string]any{"apiVersion": "v1", "kind": "Namespace", "name": "team-a", "uid": "ns-uid-team-a"},
			"results": []any{map[string]any{
				"policy": "require-ns-labels", "rule": "check-team", "result": "pass", "severity": "low", "source": "kyverno",
			}},
		},
	}
}

func toInt(v any) int64 {
	n, _ := v.(int64)
	return n
}
