package findings

import (
	"k8s.io/apiserver/pkg/registry/rest"
)

// NewStorage returns the storage of every resource of the group version, by resource name.
func NewStorage(cfg Config) (map[string]rest.Storage, error) {
	src, err := newSource(cfg)
	if err != nil {
		return nil, err
	}
	return map[string]rest.Storage{
		"findings":         newFindingREST(src, true),
		"clusterfindings":  newFindingREST(src, false),
		"findingsummaries": newSummaryREST(src),
	}, nil
}
