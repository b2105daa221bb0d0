package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// Replica is one pod of the Deployment: a reports-server process listening on the cluster's
// NodeIP at a port of its own, with the same database and ServiceAccount credentials as the
// others, and an EndpointSlice of the Service that lists it.
//
// Each replica has its own slice because a slice's ports apply to all of its endpoints, and the
// replicas share one address. kube-apiserver (--enable-aggregator-routing) resolves every
// proxied request anew: it takes the Service's slices in random order and, in the first that
// has the port and any endpoint, a random ready endpoint, moving on to the next slice if that
// one has none ready. So requests spread over the ready replicas, and a replica whose endpoint is
// not ready gets none.
type Replica struct {
	*Process
	// Index is the replica's number; the process and its slice are named after it.
	Index int
	// Port is where it listens on the cluster's NodeIP.
	Port int

	c *Cluster
}

// Address is the replica's host:port.
func (r *Replica) Address() string {
	return net.JoinHostPort(r.c.NodeIP.String(), strconv.Itoa(r.Port))
}

func (r *Replica) sliceName() string { return endpointSlicePrefix + strconv.Itoa(r.Index) }

func (c *Cluster) replicaProcesses() processes {
	ps := make(processes, 0, len(c.ReportsServers))
	for _, r := range c.ReportsServers {
		ps = append(ps, r.Process)
	}
	return ps
}

// Deploy runs the Deployment of the installation m, whose objects are in kube-apiserver, as the
// kubelet would run its pods (the harness has no kubelet): as many replicas as the Deployment
// has (or Options.Replicas), each added to the Service's endpoints once it passes the
// Deployment's probes. It returns once the APIServices the server registers are available.
func (c *Cluster) Deploy(ctx context.Context, m *Manifests) error {
	n := c.replicas
	if n <= 0 {
		n = int(ptr.Deref(m.Deployment.Spec.Replicas, 1))
	}
	c.Manifests = m
	rs, err := c.newReplicas(ctx, m, n)
	if err != nil {
		return err
	}
	c.ReportsServers = append(c.ReportsServers, rs...)
	if err := c.StartReplicas(ctx, rs...); err != nil {
		return err
	}
	return c.WaitAPIServices(ctx, true, 3*time.Minute)
}

// RollOut replaces the running replicas by those of m, an updated Deployment of the same
// installation (Service and ServiceAccount unchanged), as the Deployment controller rolls out a
// changed pod template with the chart's strategy (maxSurge 1, maxUnavailable 0): new replicas
// are started, no more than one beyond the desired count at a time, and an old one is stopped
// only once a new one is ready, so kube-apiserver always has as many ready replicas to proxy to
// as the Deployment wants.
func (c *Cluster) RollOut(ctx context.Context, m *Manifests) error {
	if m.Service.Namespace != c.Manifests.Service.Namespace || m.Service.Name != c.Manifests.Service.Name {
		return fmt.Errorf("the new Deployment is behind Service %s/%s, the running one behind %s/%s",
			m.Service.Namespace, m.Service.Name, c.Manifests.Service.Namespace, c.Manifests.Service.Name)
	}
	desired := int(ptr.Deref(m.Deployment.Spec.Replicas, 1))
	if d := m.Deployment.Spec.Strategy.RollingUpdate; d == nil || d.MaxSurge == nil || d.MaxSurge.IntValue() != 1 || d.MaxUnavailable == nil || d.MaxUnavailable.IntValue() != 0 {
		return errors.New("the harness rolls out maxSurge 1, maxUnavailable 0 only")
	}
	old := slices.Clone(c.ReportsServers)
	c.Manifests = m // the new replicas' probes
	var started []*Replica
	for len(old) > 0 || len(started) < desired {
		// Surge: at most desired+1 replicas at once.
		if add := min(desired-len(started), desired+1-len(old)-len(started)); add > 0 {
			rs, err := c.newReplicas(ctx, m, add)
			if err != nil {
				return err
			}
			if err := c.StartReplicas(ctx, rs...); err != nil {
				return err
			}
			started = append(started, rs...)
			c.ReportsServers = append(c.ReportsServers, rs...)
		}
		// Every started replica is ready: stop old ones down to the desired count.
		remove := min(len(old), len(old)+len(started)-desired)
		if remove <= 0 {
			return fmt.Errorf("rollout stuck with %d old and %d new replicas, %d wanted", len(old), len(started), desired)
		}
		if err := c.RemoveReplicas(ctx, old[:remove]...); err != nil {
			return err
		}
		old = old[remove:]
	}
	return nil
}

// RemoveReplicas stops the replicas rs as their pods are deleted (StopReplicas), removes their
// EndpointSlices and forgets them.
func (c *Cluster) RemoveReplicas(ctx context.Context, rs ...*Replica) error {
	rs = slices.Clone(rs) // it may share its array with c.ReportsServers, which changes below
	if err := c.StopReplicas(ctx, rs...); err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(c.AdminConfig)
	if err != nil {
		return err
	}
	for _, r := range rs {
		err := client.DiscoveryV1().EndpointSlices(c.Manifests.Service.Namespace).Delete(ctx, r.sliceName(), metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete EndpointSlice of %s: %w", r.Name, err)
		}
		c.ReportsServers = slices.DeleteFunc(c.ReportsServers, func(x *Replica) bool { return x == r })
	}
	return nil
}

// newReplicas makes n replicas of m's Deployment (not started), each with a not-ready endpoint
// of its own. They run as its ServiceAccount: outside a pod the server cannot use the in-cluster
// configuration, so they get a kubeconfig with a token of that ServiceAccount.
func (c *Cluster) newReplicas(ctx context.Context, m *Manifests, n int) ([]*Replica, error) {
	client, err := kubernetes.NewForConfig(c.AdminConfig)
	if err != nil {
		return nil, err
	}
	tr, err := client.CoreV1().ServiceAccounts(m.ServiceAccount.Namespace).CreateToken(ctx, m.ServiceAccount.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)}},
		metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create a token for ServiceAccount %s/%s: %w", m.ServiceAccount.Namespace, m.ServiceAccount.Name, err)
	}
	user := "system:serviceaccount:" + m.ServiceAccount.Namespace + ":" + m.ServiceAccount.Name
	// A file per token: running replicas keep the one they started with.
	kubeconfig := filepath.Join(c.Dir, fmt.Sprintf("reports-server-%d.kubeconfig", c.nextReplica))
	if err := c.writeKubeconfig(kubeconfig, user, &clientcmdapi.AuthInfo{Token: tr.Status.Token}); err != nil {
		return nil, err
	}
	// As the kubelet resolves a secretKeyRef: from kube-apiserver, when the pod starts.
	secret := func(name, key string) (string, error) {
		s, err := client.CoreV1().Secrets(m.Deployment.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		v, ok := s.Data[key]
		if !ok {
			return "", fmt.Errorf("Secret %s/%s has no key %s", s.Namespace, name, key)
		}
		return string(v), nil
	}

	var rs []*Replica
	for range n {
		i := c.nextReplica
		c.nextReplica++
		name := "reports-server-" + strconv.Itoa(i)
		port, err := freePort(c.NodeIP.String())
		if err != nil {
			return nil, err
		}
		// A pod's own /tmp: the server writes the serving certificate from the Secret there.
		podDir := filepath.Join(c.Dir, "pods", name)
		tmp := filepath.Join(podDir, "tmp")
		if err := os.MkdirAll(tmp, 0o700); err != nil {
			return nil, err
		}
		args, env, err := m.serverCommand(serverOverrides{
			port:    port,
			certDir: filepath.Join(podDir, "certs"),
			secret:  secret,
			podName: name,
			extraArgs: append([]string{
				"--bind-address=" + c.NodeIP.String(),
				"--kubeconfig=" + kubeconfig,
				"--authentication-kubeconfig=" + kubeconfig,
				"--authorization-kubeconfig=" + kubeconfig,
			}, c.serverArgs...),
		})
		if err != nil {
			return nil, err
		}
		env = append([]string{"HOME=" + podDir, "PATH=/usr/bin:/bin", "TMPDIR=" + tmp}, env...)
		p := newProcess(name, filepath.Join(c.Dir, "logs", name+".log"), podDir, c.ReportsServerBin, args, env)
		r := &Replica{Process: p, Index: i, Port: port, c: c}
		if err := c.createEndpointSlice(ctx, client, r); err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// createEndpointSlice creates r's slice, with its endpoint not ready (the pod has not passed its
// readiness probe yet): one endpoint at NodeIP, under the name of the Service port the
// APIServices use, which is how kube-apiserver maps that port to the endpoint's.
func (c *Cluster) createEndpointSlice(ctx context.Context, client kubernetes.Interface, r *Replica) error {
	m := c.Manifests
	family := discoveryv1.AddressTypeIPv4
	if c.NodeIP.To4() == nil {
		family = discoveryv1.AddressTypeIPv6
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      r.sliceName(),
			Namespace: m.Service.Namespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: m.Service.Name,
				discoveryv1.LabelManagedBy:   managedBy,
			},
		},
		AddressType: family,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{c.NodeIP.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: m.Service.Namespace, Name: r.Name},
		}},
		Ports: []discoveryv1.EndpointPort{{
			Name:     ptr.To(m.ServicePortName),
			Port:     ptr.To(int32(r.Port)),
			Protocol: ptr.To(corev1.ProtocolTCP),
		}},
	}
	if _, err := client.DiscoveryV1().EndpointSlices(slice.Namespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create EndpointSlice %s/%s: %w", slice.Namespace, slice.Name, err)
	}
	return nil
}

// SetReady sets the Ready condition of r's endpoint, as the endpointslice controller does when
// the kubelet's readiness probe of the pod passes or fails: kube-apiserver proxies to ready
// endpoints only.
func (c *Cluster) SetReady(ctx context.Context, r *Replica, ready bool) error {
	client, err := kubernetes.NewForConfig(c.AdminConfig)
	if err != nil {
		return err
	}
	slices := client.DiscoveryV1().EndpointSlices(c.Manifests.Service.Namespace)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := slices.Get(ctx, r.sliceName(), metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range s.Endpoints {
			s.Endpoints[i].Conditions.Ready = ptr.To(ready)
			s.Endpoints[i].Conditions.Serving = ptr.To(ready)
		}
		_, err = slices.Update(ctx, s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("set the endpoint of %s ready=%v: %w", r.Name, ready, err)
	}
	return nil
}

// StartReplicas starts the (stopped) replicas rs all at once, as pods created together, waits
// until each passes the Deployment's probes and then marks its endpoint ready.
func (c *Cluster) StartReplicas(ctx context.Context, rs ...*Replica) error {
	for _, r := range rs {
		if err := r.start(); err != nil {
			return err
		}
	}
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() {
			if errs[i] = c.WaitProbes(ctx, r); errs[i] == nil {
				errs[i] = c.SetReady(ctx, r, true)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// StopReplicas stops the replicas rs as a Deployment scales pods down: each endpoint is marked
// not ready first, then the process gets SIGTERM (SIGKILL after 10 s).
func (c *Cluster) StopReplicas(ctx context.Context, rs ...*Replica) error {
	var errs []error
	for _, r := range rs {
		errs = append(errs, c.SetReady(ctx, r, false))
	}
	var wg sync.WaitGroup
	stopErrs := make([]error, len(rs))
	for i, r := range rs {
		wg.Go(func() { stopErrs[i] = r.Stop(10 * time.Second) })
	}
	wg.Wait()
	return errors.Join(append(errs, stopErrs...)...)
}

// WaitProbes waits until r passes the Deployment's HTTP probes (startup, liveness, readiness) on
// its own port, without credentials, as the kubelet probes it.
func (c *Cluster) WaitProbes(ctx context.Context, r *Replica) error {
	probes, err := c.Manifests.httpProbes()
	if err != nil {
		return err
	}
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
	return waitFor(ctx, r.Process, "the Deployment's probes to pass", 2*time.Minute, func(ctx context.Context) error {
		var errs []error
		for _, p := range probes {
			if err := httpGetOK(ctx, insecure, p.scheme+"://"+r.Address()+p.path); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p.what, err))
			}
		}
		return errors.Join(errs...)
	})
}

// ReplicaConfig is a client configuration for r itself, bypassing kube-apiserver, as the admin
// (a client certificate of the cluster CA, which the server accepts through delegated
// authentication). With caBundle it verifies the serving certificate as kube-apiserver does: for
// the Service's DNS name, with that CA; without, it does not verify.
func (c *Cluster) ReplicaConfig(r *Replica, caBundle []byte) *rest.Config {
	cfg := rest.CopyConfig(c.AdminConfig)
	cfg.Host = "https://" + r.Address()
	cfg.TLSClientConfig.CAData, cfg.TLSClientConfig.CAFile = nil, ""
	if len(caBundle) > 0 {
		cfg.TLSClientConfig.CAData = caBundle
		cfg.TLSClientConfig.ServerName = c.Manifests.Service.Name + "." + c.Manifests.Service.Namespace + ".svc"
	} else {
		cfg.TLSClientConfig.Insecure = true
	}
	return cfg
}
