package pgstorage

import (
	"fmt"
	"math"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/storage"
)

// versioner is the etcd store's versioner, with the client's mistakes reported as the client's.
// Revisions are PostgreSQL bigints: a resourceVersion that does not parse ("abc", "-1") or lies
// beyond 2^63-1 can name no revision. The generic registry reads an update's resourceVersion
// through Versioner().ObjectResourceVersion and returns its error as it is, which made a PUT or
// patch with such a value a 500; and a list or watch at 9223372036854775808 wrapped to a negative
// revision. Both are 400 Bad Request now, naming the value.
type versioner struct {
	storage.APIObjectVersioner
}

// ObjectResourceVersion implements storage.Versioner.
func (v versioner) ObjectResourceVersion(obj runtime.Object) (uint64, error) {
	rv, err := v.APIObjectVersioner.ObjectResourceVersion(obj)
	if err != nil {
		return 0, apierrors.NewBadRequest(fmt.Sprintf("metadata.resourceVersion: %v: use the resourceVersion the server returned, or leave it empty", err))
	}
	if rv > math.MaxInt64 {
		return 0, apierrors.NewBadRequest(fmt.Sprintf("metadata.resourceVersion: %d is larger than any resourceVersion this server issues: use the one it returned", rv))
	}
	return rv, nil
}

// ParseResourceVersion implements storage.Versioner.
func (v versioner) ParseResourceVersion(resourceVersion string) (uint64, error) {
	rv, err := v.APIObjectVersioner.ParseResourceVersion(resourceVersion)
	if err != nil {
		return 0, err
	}
	if rv > math.MaxInt64 {
		return 0, apierrors.NewBadRequest(fmt.Sprintf("resourceVersion %s is larger than any resourceVersion this server issues", resourceVersion))
	}
	return rv, nil
}

// rvSetOnCreate is storage.ErrResourceVersionSetOnCreate (which errors.Is still finds, as the
// storage tests expect) as a 400 that tells the client what to do, instead of a 500.
func rvSetOnCreate() error {
	return statusWithCause{
		StatusError: apierrors.NewBadRequest("metadata.resourceVersion must not be set when creating an object: " +
			"remove it (objects read from a server carry one)"),
		cause: storage.ErrResourceVersionSetOnCreate,
	}
}

// statusWithCause is an API status that also unwraps to the storage error it stands for.
type statusWithCause struct {
	*apierrors.StatusError
	cause error
}

func (e statusWithCause) Unwrap() error { return e.cause }
