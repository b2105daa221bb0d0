// Package crdmigrate moves reports from the CRDs they used to be kept in (etcd) into the server's
// PostgreSQL store, before the server takes their group/versions over from kube-apiserver.
//
// A group/version is migrated when kube-apiserver still serves it from a CRD: its APIService is
// local (no spec.service) and the CRD exists. Copying is a paged list through kube-apiserver, so
// the CRD objects are only read, never changed; each object is written with its metadata (uid,
// creationTimestamp, labels, ownerReferences, managedFields) and only if it differs from what is
// stored, so an interrupted migration is resumed by running it again. A watch from the list's
// resourceVersion keeps applying changes until the caller has taken the APIService over and
// writes have settled, so no write that kube-apiserver accepted into a CRD is lost.
//
// resourceVersions are etcd's before and ours after. A client holding an etcd resourceVersion
// must relist, not resume from a number that means something else here: Expire raises the
// store's revision past every etcd revision seen and marks everything before it compacted, so
// such a watch gets 410 Gone and the client relists.
package crdmigrate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/reports-server/reports-server/internal/apiservice"
)

// CRDResource is the CustomResourceDefinition resource of kube-apiserver.
var CRDResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// Target is the store the reports are copied into.
type Target interface {
	// Import stores obj under its namespace and name as it is (creating it or replacing what
	// is stored), keeping its metadata; it reports whether anything was written.
	Import(ctx context.Context, gvr schema.GroupVersionResource, obj *unstructured.Unstructured) (bool, error)
	// Remove deletes the stored object, if any.
	Remove(ctx context.Context, gvr schema.GroupVersionResource, namespace, name string) error
	// Names lists the stored objects' namespace/name keys of gvr.
	Names(ctx context.Context, gvr schema.GroupVersionResource) ([]string, error)
	// Expire makes every resourceVersion up to rv, and every one the store has issued so far,
	// too old (410 Gone for a watch), so clients relist.
	Expire(ctx context.Context, rv int64) error
	// Exclusively runs fn while no other replica runs a migration (nor compacts).
	Exclusively(ctx context.Context, fn func(context.Context) error) error
}

// Config of a migration.
type Config struct {
	Client dynamic.Interface
	Target Target
	// Resources are the served resources; those still served from a CRD are migrated.
	Resources []schema.GroupVersionResource
	// PageSize of the list through kube-apiserver (default 500).
	PageSize int64
	// Settle is how long the watch must be quiet, after the takeover, before it ends (default
	// 5s); MaxSettle bounds the wait (default 1m).
	Settle, MaxSettle time.Duration
	Log               *slog.Logger
}

// Migration is a migration in progress: Copy has run; Finish ends it after the takeover.
type Migration struct {
	cfg     Config
	streams []*stream
	maxRV   int64
	// expired is the resourceVersion Expire last made too old (0: not yet).
	expired int64
	// Migrated are the resources that were copied (served from a CRD when Copy ran).
	Migrated []schema.GroupVersionResource
}

type stream struct {
	gvr schema.GroupVersionResource
	w   watch.Interface
}

// Copy copies every resource still served from a CRD and starts following its changes. Call
// Finish after taking the group/versions over (also when that fails).
func Copy(ctx context.Context, cfg Config) (*Migration, error) {
	if cfg.PageSize <= 0 {
		cfg.PageSize = 500
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 5 * time.Second
	}
	if cfg.MaxSettle <= 0 {
		cfg.MaxSettle = time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	m := &Migration{cfg: cfg}
	for _, gvr := range cfg.Resources {
		crdServed, err := m.servedFromCRD(ctx, gvr)
		if err != nil {
			m.stop()
			return nil, err
		}
		if !crdServed {
			continue
		}
		if err := m.copyResource(ctx, gvr); err != nil {
			m.stop()
			return nil, fmt.Errorf("migrate %s: %w", gvr.GroupResource(), err)
		}
		m.Migrated = append(m.Migrated, gvr)
	}
	return m, nil
}

// servedFromCRD reports whether kube-apiserver serves gvr from a CRD now.
func (m *Migration) servedFromCRD(ctx context.Context, gvr schema.GroupVersionResource) (bool, error) {
	gv := gvr.GroupVersion()
	svc, err := m.cfg.Client.Resource(apiservice.Resource).Get(ctx, apiservice.Name(gv), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read APIService %s: %w", apiservice.Name(gv), err)
	}
	if ref, found, _ := unstructured.NestedMap(svc.Object, "spec", "service"); found && ref != nil {
		return false, nil // already aggregated (ours, or another server's)
	}
	_, err = m.cfg.Client.Resource(CRDResource).Get(ctx, gvr.Resource+"."+gvr.Group, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read CRD %s.%s: %w", gvr.Resource, gvr.Group, err)
	}
	return true, nil
}

// copyResource lists gvr through kube-apiserver, imports every object, removes stored objects
// the CRD does not have (left by an earlier, interrupted migration of objects deleted since),
// and opens a watch from the list's resourceVersion.
func (m *Migration) copyResource(ctx context.Context, gvr schema.GroupVersionResource) error {
	log := m.cfg.Log.With("resource", gvr.GroupResource().String())
	stored, err := m.cfg.Target.Names(ctx, gvr)
	if err != nil {
		return fmt.Errorf("list stored objects: %w", err)
	}
	stale := map[string]bool{}
	for _, k := range stored {
		stale[k] = true
	}
	start := time.Now()
	var listRV string
	var seen, written int
	opts := metav1.ListOptions{Limit: m.cfg.PageSize}
	for {
		page, err := m.cfg.Client.Resource(gvr).List(ctx, opts)
		if err != nil {
			return fmt.Errorf("list from the CRD: %w", err)
		}
		if listRV == "" {
			listRV = page.GetResourceVersion()
		}
		for i := range page.Items {
			obj := &page.Items[i]
			delete(stale, key(obj.GetNamespace(), obj.GetName()))
			changed, err := m.cfg.Target.Import(ctx, gvr, obj)
			if err != nil {
				return fmt.Errorf("import %s: %w", key(obj.GetNamespace(), obj.GetName()), err)
			}
			seen++
			if changed {
				written++
			}
		}
		remaining := page.GetRemainingItemCount()
		rem := "?"
		if remaining != nil {
			rem = strconv.FormatInt(*remaining, 10)
		}
		log.Info("migrating from the CRD", "copied", seen, "written", written, "remaining", rem)
		if page.GetContinue() == "" {
			break
		}
		opts.Continue = page.GetContinue()
	}
	for k := range stale {
		ns, name := splitKey(k)
		if err := m.cfg.Target.Remove(ctx, gvr, ns, name); err != nil {
			return fmt.Errorf("remove %s, which the CRD no longer has: %w", k, err)
		}
	}
	m.observe(listRV)
	w, err := m.cfg.Client.Resource(gvr).Watch(ctx, metav1.ListOptions{ResourceVersion: listRV, AllowWatchBookmarks: true})
	if err != nil {
		return fmt.Errorf("watch the CRD from %s: %w", listRV, err)
	}
	m.streams = append(m.streams, &stream{gvr: gvr, w: w})
	log.Info("copied from the CRD", "objects", seen, "written", written, "removed", len(stale), "resourceVersion", listRV, "duration", time.Since(start))
	return nil
}

// Finish applies the changes the CRDs received since the copy until the watches have been quiet
// for Settle (at most MaxSettle), then expires every resourceVersion clients may hold. Call it
// once the group/versions have been taken over: from then on writes come to this server, and
// the watches only bring what kube-apiserver still accepted into the CRDs before it switched.
// The expiry is retried until it succeeds or ctx ends, even when applying changes failed: once
// the takeover is done a later run finds nothing to migrate, so it is now or never.
func (m *Migration) Finish(ctx context.Context) error {
	defer m.stop()
	if len(m.Migrated) == 0 {
		return nil
	}
	applied, applyErr := m.follow(ctx)
	if applyErr != nil {
		m.cfg.Log.Error("changes to the CRDs after the copy may be missing", "err", applyErr)
	}
	// Writes the CRDs still took after the copy have newer etcd resourceVersions: expire those
	// too (a client may have seen them), unless the first expiry already covered them.
	for m.maxRV > m.expired {
		err := m.expire(ctx)
		if err == nil {
			break
		}
		m.cfg.Log.Warn("cannot expire the CRDs' resourceVersions yet; retrying", "err", err)
		select {
		case <-ctx.Done():
			return errors.Join(applyErr, fmt.Errorf("expire the CRDs' resourceVersions: %w", err))
		case <-time.After(2 * time.Second):
		}
	}
	m.cfg.Log.Info("migration from CRDs finished", "resources", len(m.Migrated), "changesAfterCopy", applied, "expiredUpTo", m.maxRV)
	return applyErr
}

// expire makes every resourceVersion up to the newest etcd one seen too old.
func (m *Migration) expire(ctx context.Context) error {
	rv := m.maxRV
	if err := m.cfg.Target.Expire(ctx, rv); err != nil {
		return err
	}
	m.expired = rv
	return nil
}

// follow applies the watches' events until they have been quiet for Settle (at most MaxSettle).
func (m *Migration) follow(ctx context.Context) (int, error) {
	deadline := time.Now().Add(m.cfg.MaxSettle)
	quietSince := time.Now()
	events := m.merge(ctx)
	applied := 0
	for time.Since(quietSince) < m.cfg.Settle && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return applied, ctx.Err()
		case ev, ok := <-events:
			if !ok {
				return applied, errors.New("the watches of the CRDs ended before the migration settled")
			}
			if err := m.apply(ctx, ev); err != nil {
				return applied, err
			}
			if ev.Type != watch.Bookmark {
				applied++
				quietSince = time.Now()
			}
		case <-time.After(m.cfg.Settle - time.Since(quietSince)):
		}
	}
	return applied, nil
}

// TakeOver migrates every resource still served from a CRD, calls takeover (which points the
// group/versions at this server) and finishes the migration, while no other replica does the
// same. When nothing is served from CRDs it only calls takeover.
func TakeOver(ctx context.Context, cfg Config, takeover func(context.Context) error) error {
	return cfg.Target.Exclusively(ctx, func(ctx context.Context) error {
		m, err := Copy(ctx, cfg)
		if err != nil {
			return err
		}
		// Expire before the takeover: the first request kube-apiserver routes here may already
		// carry a resourceVersion of the CRD era, and must get 410, not our changes after it.
		if len(m.Migrated) > 0 {
			if err := m.expire(ctx); err != nil {
				m.stop()
				return fmt.Errorf("expire the CRDs' resourceVersions: %w", err)
			}
		}
		if err := takeover(ctx); err != nil {
			m.stop()
			return fmt.Errorf("take the group/versions over: %w", err)
		}
		return m.Finish(ctx)
	})
}

type gvrEvent struct {
	gvr schema.GroupVersionResource
	watch.Event
}

func (m *Migration) merge(ctx context.Context) <-chan gvrEvent {
	out := make(chan gvrEvent)
	done := make(chan struct{}, len(m.streams))
	for _, s := range m.streams {
		go func() {
			defer func() { done <- struct{}{} }()
			for ev := range s.w.ResultChan() {
				select {
				case out <- gvrEvent{s.gvr, ev}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		for range m.streams {
			<-done
		}
		close(out)
	}()
	return out
}

func (m *Migration) apply(ctx context.Context, ev gvrEvent) error {
	if ev.Type == watch.Error {
		return fmt.Errorf("watch of %s failed: %v", ev.gvr.GroupResource(), apierrors.FromObject(ev.Object))
	}
	obj, ok := ev.Object.(*unstructured.Unstructured)
	if !ok {
		return fmt.Errorf("watch of %s sent a %T", ev.gvr.GroupResource(), ev.Object)
	}
	m.observe(obj.GetResourceVersion())
	switch ev.Type {
	case watch.Added, watch.Modified:
		if _, err := m.cfg.Target.Import(ctx, ev.gvr, obj); err != nil {
			return fmt.Errorf("import %s: %w", key(obj.GetNamespace(), obj.GetName()), err)
		}
	case watch.Deleted:
		if err := m.cfg.Target.Remove(ctx, ev.gvr, obj.GetNamespace(), obj.GetName()); err != nil {
			return fmt.Errorf("remove %s: %w", key(obj.GetNamespace(), obj.GetName()), err)
		}
	}
	return nil
}

// observe records an etcd resourceVersion the clients of the CRDs may hold.
func (m *Migration) observe(rv string) {
	if n, err := strconv.ParseInt(rv, 10, 64); err == nil && n > m.maxRV {
		m.maxRV = n
	}
}

func (m *Migration) stop() {
	for _, s := range m.streams {
		s.w.Stop()
	}
	m.streams = nil
}

func key(namespace, name string) string { return namespace + "/" + name }

// splitKey undoes key: namespace and name (names contain no "/").
func splitKey(k string) (string, string) {
	ns, name, _ := strings.Cut(k, "/")
	return ns, name
}
