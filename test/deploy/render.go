package deploy

import (
	"fmt"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
)

// RenderChart renders c for a cluster of version kube as `helm template` does (no cluster access:
// lookup finds nothing), after checking the chart's kubeVersion constraint and the values against
// values.schema.json, as `helm install` does. It returns the rendered templates by name, partials
// and NOTES.txt included. The tests of this module and cmd/render-chart (which the end-to-end
// tests use to give the chart to a real kube-apiserver) share it.
func RenderChart(c *chart.Chart, kube *chartutil.KubeVersion, releaseName, namespace string, values map[string]any) (map[string]string, error) {
	if c.Metadata.KubeVersion != "" && !chartutil.IsCompatibleRange(c.Metadata.KubeVersion, kube.Version) {
		return nil, fmt.Errorf("chart requires kubeVersion %s, not %s", c.Metadata.KubeVersion, kube.Version)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = *kube
	opts := chartutil.ReleaseOptions{Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true}
	renderValues, err := chartutil.ToRenderValues(c, values, opts, caps)
	if err != nil {
		return nil, err
	}
	return engine.Render(c, renderValues)
}
