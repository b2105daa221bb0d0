package integration

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/reports-server/reports-server/internal/apis/reports"
)

// TestInformer checks what controllers do first: a client-go informer (which starts with a
// WatchList request and waits for its initial-events bookmark) syncs, and then sees objects
// created, updated and deleted afterwards.
func TestInformer(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	client := srv.dynamicClient(t)
	kind := reports.All()[0]
	res := resourceFor(client, kind, "informed")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := res.Create(ctx, sample(kind, "informed", "before", nil, "Pod", "pass"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	factory := dynamicinformer.NewDynamicSharedInformerFactory(client, 0)
	informer := factory.ForResource(kind.GroupVersionResource()).Informer()
	events := make(chan string, 16)
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { events <- "add " + obj.(*unstructured.Unstructured).GetName() },
		UpdateFunc: func(_, obj any) { events <- "update " + obj.(*unstructured.Unstructured).GetName() },
		DeleteFunc: func(obj any) {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				events <- "delete " + u.GetName()
			} else {
				events <- "delete"
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	// Shutdown waits for the informers, which stop when ctx ends.
	defer func() { cancel(); factory.Shutdown() }()
	syncCtx, syncCancel := context.WithTimeout(ctx, 20*time.Second)
	defer syncCancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), informer.HasSynced) {
		t.Fatal("informer did not sync within 20s")
	}

	expectEvent := func(want string) {
		t.Helper()
		select {
		case got := <-events:
			if got != want {
				t.Errorf("event %q, want %q", got, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no %q event within 20s", want)
		}
	}
	expectEvent("add before")
	created, err := res.Create(ctx, sample(kind, "informed", "after", nil, "Pod", "fail"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	expectEvent("add after")
	created.SetLabels(map[string]string{"changed": "yes"})
	if _, err := res.Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expectEvent("update after")
	if err := res.Delete(ctx, "after", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expectEvent("delete after")
}
