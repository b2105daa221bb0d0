package deploy

import (
	"fmt"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	chartv2util "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
)

// RenderChart renders c for a cluster of version kube as `helm template` does (no cluster access:
// lookup finds nothing), after checking the chart's kubeVersion constraint and the values against
// values.schema.json, as `helm install` does. It returns the rendered templates by name, partials
// and NOTES.txt included. The tests of this module use it; the end-to-end tests run the helm
// command itself (built from this module's go.mod, see the tool directive there).
func RenderChart(c *chart.Chart, kube *common.KubeVersion, releaseName, namespace string, values map[string]any) (map[string]string, error) {
	// String is the version without vendor suffixes, which is what Helm checks the constraint with.
	if c.Metadata.KubeVersion != "" && !chartv2util.IsCompatibleRange(c.Metadata.KubeVersion, kube.String()) {
		return nil, fmt.Errorf("chart requires kubeVersion %s, not %s", c.Metadata.KubeVersion, kube.Version)
	}
	caps := common.DefaultCapabilities.Copy()
	caps.KubeVersion = *kube
	opts := common.ReleaseOptions{Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true}
	renderValues, err := chartutil.ToRenderValues(c, values, opts, caps)
	if err != nil {
		return nil, err
	}
	return engine.Render(c, renderValues)
}
