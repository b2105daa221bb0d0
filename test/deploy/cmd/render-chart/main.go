// Command render-chart prints the objects of the Helm chart in deploy/helm rendered as
// `helm template` would, for the end-to-end tests, which validate them against a real
// kube-apiserver (kubectl apply --dry-run=server). It keeps Helm out of the e2e module.
//
//	go run ./cmd/render-chart -kube-version v1.37.0 -namespace reports-server -values 'database: {url: ...}'
package main

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"sigs.k8s.io/yaml"

	"github.com/reports-server/reports-server/test/deploy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "render-chart:", err)
		os.Exit(1)
	}
}

func run() error {
	chartDir := flag.String("chart", filepath.Join("..", "..", "deploy", "helm", "reports-server"), "chart directory")
	kubeVersion := flag.String("kube-version", "v1.37.0", "Kubernetes version the chart is rendered for (.Capabilities.KubeVersion)")
	release := flag.String("release", "reports-server", "release name")
	namespace := flag.String("namespace", "reports-server", "release namespace")
	values := flag.String("values", "", "values, as YAML")
	flag.Parse()

	c, err := loader.Load(*chartDir)
	if err != nil {
		return fmt.Errorf("load chart: %w", err)
	}
	kube, err := common.ParseKubeVersion(*kubeVersion)
	if err != nil {
		return err
	}
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte(*values), &vals); err != nil {
		return fmt.Errorf("values: %w", err)
	}
	files, err := deploy.RenderChart(c, kube, *release, *namespace, vals)
	if err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		base := filepath.Base(name)
		if base == "NOTES.txt" || strings.HasPrefix(base, "_") || strings.TrimSpace(files[name]) == "" {
			continue
		}
		fmt.Printf("---\n# Source: %s\n%s\n", name, strings.TrimSpace(files[name]))
	}
	return nil
}
