package apiserver

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/storage"

	"github.com/reports-server/reports-server/internal/apiserver/pgstorage"
	"github.com/reports-server/reports-server/internal/apiserver/registry"
	"github.com/reports-server/reports-server/internal/crdmigrate"
)

// CRDImportTarget is where the migration from CRDs writes: the storage of each served resource,
// below the registry, so objects keep the metadata the CRDs gave them (uid, creationTimestamp,
// generation, managedFields) instead of getting new ones as a create through the API would.
func (s *Server) CRDImportTarget() crdmigrate.Target {
	return &importTarget{stores: s.stores, compactor: s.compactor}
}

type importTarget struct {
	stores    map[schema.GroupVersionResource]*registry.REST
	compactor *pgstorage.Compactor
}

var _ crdmigrate.Target = (*importTarget)(nil)

func (t *importTarget) store(gvr schema.GroupVersionResource) (*registry.REST, error) {
	r, ok := t.stores[gvr]
	if !ok {
		return nil, fmt.Errorf("%s is not served", gvr)
	}
	return r, nil
}

// key is the storage key the registry uses for namespace/name.
func key(ctx context.Context, r *registry.REST, namespace, name string) (string, error) {
	return r.KeyFunc(genericapirequest.WithNamespace(ctx, namespace), name)
}

func (t *importTarget) Import(ctx context.Context, gvr schema.GroupVersionResource, u *unstructured.Unstructured) (bool, error) {
	r, err := t.store(gvr)
	if err != nil {
		return false, err
	}
	obj := r.NewFunc()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, obj); err != nil {
		return false, fmt.Errorf("convert: %w", err)
	}
	k, err := key(ctx, r, u.GetNamespace(), u.GetName())
	if err != nil {
		return false, err
	}
	existing := r.NewFunc()
	if err := r.Storage.Get(ctx, k, storage.GetOptions{IgnoreNotFound: true}, existing); err != nil {
		return false, fmt.Errorf("read stored object: %w", err)
	}
	before, err := resourceVersion(existing)
	if err != nil {
		return false, err
	}
	out := r.NewFunc()
	err = r.Storage.Storage.GuaranteedUpdate(ctx, k, out, true, nil, func(runtime.Object, storage.ResponseMeta) (runtime.Object, *uint64, error) {
		// The etcd resourceVersion means nothing here; the storage gives the object ours.
		cp := obj.DeepCopyObject()
		if err := meta.NewAccessor().SetResourceVersion(cp, ""); err != nil {
			return nil, nil, err
		}
		return cp, nil, nil
	}, nil)
	if err != nil {
		return false, fmt.Errorf("write: %w", err)
	}
	after, err := resourceVersion(out)
	if err != nil {
		return false, err
	}
	return after != before, nil
}

func (t *importTarget) Remove(ctx context.Context, gvr schema.GroupVersionResource, namespace, name string) error {
	r, err := t.store(gvr)
	if err != nil {
		return err
	}
	k, err := key(ctx, r, namespace, name)
	if err != nil {
		return err
	}
	err = r.Storage.Storage.Delete(ctx, k, r.NewFunc(), nil, storage.ValidateAllObjectFunc, nil, storage.DeleteOptions{})
	if err != nil && !storage.IsNotFound(err) {
		return err
	}
	return nil
}

func (t *importTarget) Names(ctx context.Context, gvr schema.GroupVersionResource) ([]string, error) {
	r, err := t.store(gvr)
	if err != nil {
		return nil, err
	}
	prefix := r.KeyRootFunc(ctx)
	var names []string
	pred := storage.Everything
	pred.Limit = 1000
	for {
		list := r.NewListFunc()
		if err := r.Storage.GetList(ctx, prefix, storage.ListOptions{Recursive: true, Predicate: pred}, list); err != nil {
			return nil, fmt.Errorf("list stored objects: %w", err)
		}
		err := meta.EachListItem(list, func(obj runtime.Object) error {
			m, err := meta.Accessor(obj)
			if err != nil {
				return err
			}
			names = append(names, m.GetNamespace()+"/"+m.GetName())
			return nil
		})
		if err != nil {
			return nil, err
		}
		lm, err := meta.ListAccessor(list)
		if err != nil {
			return nil, err
		}
		if lm.GetContinue() == "" {
			return names, nil
		}
		pred.Continue = lm.GetContinue()
	}
}

func (t *importTarget) Expire(ctx context.Context, rv int64) error {
	return t.compactor.ExpireThrough(ctx, rv)
}

func (t *importTarget) Exclusively(ctx context.Context, fn func(context.Context) error) error {
	return t.compactor.Exclusively(ctx, fn)
}

func resourceVersion(obj runtime.Object) (string, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return "", err
	}
	return m.GetResourceVersion(), nil
}
