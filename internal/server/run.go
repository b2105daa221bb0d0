package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/request/headerrequest"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/reports-server/reports-server/internal/apiserver"
	"github.com/reports-server/reports-server/internal/authncache"
	"github.com/reports-server/reports-server/internal/db"
	"github.com/reports-server/reports-server/internal/metrics"
	"github.com/reports-server/reports-server/internal/pglocal"
)

// localDatabase is the database the managed PostgreSQL serves reports from.
const localDatabase = "reports"

// Hooks let an embedding program (the integration tests) observe the server. All are optional.
type Hooks struct {
	// Out receives the human- and script-facing lines of standalone mode ("kubeconfig: <path>",
	// then "ready"). Default os.Stdout.
	Out io.Writer
	// Ready is called once the server answers /readyz with its own credentials, with a client
	// configuration for it (standalone mode only).
	Ready func(*rest.Config)

	// Authenticator and Authorizer widen standalone mode's access control for an embedding program,
	// which can then act as users with less than the standalone admin's rights (the integration
	// tests check per-namespace access this way): a request is authenticated by the standalone
	// token or else by Authenticator, and allowed when the admin's system:masters membership or
	// else Authorizer allows it. Standalone mode only: in aggregated mode kube-apiserver decides.
	Authenticator authenticator.Request
	Authorizer    authorizer.Authorizer
}

// Run serves until ctx ends, then shuts down the API server, the pool and a managed PostgreSQL,
// in that order. Call Complete and Validate first.
func (o *Options) Run(ctx context.Context, hooks Hooks) error {
	if hooks.Out == nil {
		hooks.Out = os.Stdout
	}
	m := metrics.New()
	pool, closeDB, err := o.openDatabase(ctx, m)
	if err != nil {
		return err
	}
	defer closeDB()
	readPool, err := o.openReadReplica(ctx, m)
	if err != nil {
		return err
	}
	if readPool != nil {
		defer readPool.Close()
	}

	cfg, err := apiserver.NewConfig()
	if err != nil {
		return err
	}
	creds, kube, err := o.applyServing(ctx, cfg, hooks)
	if err != nil {
		return err
	}
	o.applyExtra(cfg, pool)
	cfg.Extra.ReadPool = readPool
	cfg.Extra.Metrics = m
	completed, err := cfg.Complete()
	if err != nil {
		return err
	}
	srv, err := completed.New()
	if err != nil {
		return err
	}
	return o.serve(ctx, srv, creds, kube, hooks)
}

// openDatabase is step 1: the database (a local PostgreSQL in standalone mode without a URL),
// migrated, and a pool on it whose queries m times. closeDB closes the pool and stops the local PostgreSQL.
func (o *Options) openDatabase(ctx context.Context, m *metrics.Metrics) (*pgxpool.Pool, func(), error) {
	if o.Standalone {
		if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("create data dir: %w", err)
		}
	}
	stopLocal := func() {}
	databaseURL := o.DatabaseURL
	if databaseURL == "" {
		local, url, err := startLocalPostgres(ctx, filepath.Join(o.DataDir, "postgres"))
		if err != nil {
			return nil, nil, err
		}
		stopLocal = func() {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := local.Stop(stopCtx); err != nil {
				klog.ErrorS(err, "Stopping local PostgreSQL")
			}
		}
		databaseURL = url
	}
	// Migrations take an advisory lock, so replicas starting together apply them once.
	if o.Migrate || o.DatabaseURL == "" {
		if err := db.Migrate(ctx, databaseURL); err != nil {
			stopLocal()
			return nil, nil, fmt.Errorf("migrate database: %w", err)
		}
	} else if err := db.CheckMigrated(ctx, databaseURL); err != nil {
		stopLocal()
		return nil, nil, err
	}
	pool, err := db.OpenTraced(ctx, databaseURL, m.QueryTracer())
	if err != nil {
		stopLocal()
		return nil, nil, err
	}
	// Settings that cost speed, not correctness: the server starts anyway, and says so.
	problems, err := db.CheckSettings(ctx, pool)
	if err != nil {
		klog.ErrorS(err, "Cannot check PostgreSQL's settings")
	}
	for _, p := range problems {
		klog.Warning(p)
	}
	return pool, func() { pool.Close(); stopLocal() }, nil
}

// openReadReplica opens the pool of the read replica, if one is configured. It does not connect:
// a replica that is away at start (or later) only sends reads to the primary.
func (o *Options) openReadReplica(ctx context.Context, m *metrics.Metrics) (*pgxpool.Pool, error) {
	if o.DatabaseReadURL == "" {
		return nil, nil
	}
	cfg, err := db.ParseConfig(o.DatabaseReadURL)
	if err != nil {
		return nil, fmt.Errorf("--database-read-url: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// A replica that does not answer should cost a read little before it goes to the primary.
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	cfg.ConnConfig.Tracer = m.QueryTracer()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create the read replica's pool: %w", err)
	}
	return pool, nil
}

// applyServing is step 2: serving, authentication and authorization. Standalone mode gets its
// certificate, token and kubeconfig (creds); aggregated mode its kube-apiserver clients (kube,
// nil unless the APIServices are managed) and the serving certificate the replicas share.
func (o *Options) applyServing(ctx context.Context, cfg *apiserver.Config, hooks Hooks) (*credentials, *kubeClients, error) {
	if o.Standalone {
		creds, err := o.applyStandalone(cfg, hooks)
		return creds, nil, err
	}
	var kube *kubeClients
	if o.Kube.ManageAPIServices {
		var err error
		if kube, err = o.kubeClients(ctx); err != nil {
			return nil, nil, err
		}
	}
	// Without --tls-cert-file: the certificate all replicas share, from a Secret, whose CA
	// the managed APIServices trust; or, without one, a self-signed certificate made at
	// start (in memory unless --cert-dir is set), as metrics-server does, which the
	// APIServices cannot verify.
	ck := o.Recommended.SecureServing.ServerCert.CertKey
	if kube != nil && o.Kube.ServingCertSecret != "" && ck.CertFile == "" && ck.KeyFile == "" {
		var err error
		if kube.caBundle, err = o.applyServingCert(ctx, kube.core); err != nil {
			return nil, nil, err
		}
	}
	if err := o.Recommended.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return nil, nil, fmt.Errorf("create self-signed certificate: %w", err)
	}
	if err := o.Recommended.ApplyTo(cfg.Generic); err != nil {
		return nil, nil, fmt.Errorf("apply server options: %w", err)
	}
	cacheClientCertificates(&cfg.Generic.Authentication)
	return nil, kube, nil
}

// cacheClientCertificates has the delegated authenticators' answers to requests that a client
// certificate authenticates, alone or as the front proxy's with its identity headers, remembered
// for a few seconds (package authncache): verifying the certificate on every request was 13% of a
// create's CPU, and 7–9% of one proxied by kube-apiserver.
func cacheClientCertificates(info *genericapiserver.AuthenticationInfo) {
	if info.Authenticator == nil {
		return
	}
	var headers authncache.IdentityHeaders
	if rh := info.RequestHeaderConfig; rh != nil {
		for _, p := range []headerrequest.StringSliceProvider{rh.UsernameHeaders, rh.UIDHeaders, rh.GroupHeaders} {
			if p != nil {
				headers.Names = append(headers.Names, p)
			}
		}
		if rh.ExtraHeaderPrefixes != nil {
			headers.Prefixes = append(headers.Prefixes, rh.ExtraHeaderPrefixes)
		}
	}
	info.Authenticator = authncache.New(info.Authenticator, headers, authncache.TTL)
}

// applyExtra is step 3: what the reports server needs beyond the generic server.
func (o *Options) applyExtra(cfg *apiserver.Config, pool *pgxpool.Pool) {
	cfg.Extra.Pool = pool
	cfg.Extra.Cluster = o.ClusterName
	cfg.Extra.MaxUnpagedListBytes = o.MaxUnpagedListBytes
	cfg.Extra.ObjectCacheBytes = o.ObjectCacheBytes
	cfg.Generic.MaxRequestBodyBytes = o.MaxRequestBodyBytes
	cfg.Generic.RequestTimeout = o.RequestTimeout
	o.Shutdown.ApplyTo(&cfg.Generic.Config)
	cfg.Extra.Kinds = o.Kube.Kinds()
	cfg.Extra.Analytics = o.Analytics.Config()
	cfg.Extra.CoreNamespaces = o.Standalone
	o.Watch.ApplyTo(&cfg.Extra)
}

// serve is step 4: run the server until ctx ends, with the APIServices reconciled beside it in
// aggregated mode, and, in standalone mode, announce the kubeconfig once it is ready.
func (o *Options) serve(ctx context.Context, srv *apiserver.Server, creds *credentials, kube *kubeClients, hooks Hooks) error {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.GenericAPIServer.PrepareRun().RunWithContext(runCtx) }()
	if kube != nil {
		go o.runAPIServices(runCtx, kube.dynamic, srv, kube.caBundle)
	}
	if creds != nil {
		clientConfig, err := o.announce(runCtx, creds, hooks, done)
		if err != nil {
			stop()
			if runErr := <-done; runErr != nil {
				return errors.Join(err, runErr)
			}
			return err
		}
		if hooks.Ready != nil {
			hooks.Ready(clientConfig)
		}
	}
	if err := <-done; err != nil {
		return fmt.Errorf("run API server: %w", err)
	}
	return nil
}

// startLocalPostgres starts (initialising on first use) a PostgreSQL owned by this process.
func startLocalPostgres(ctx context.Context, dataDir string) (*pglocal.Server, string, error) {
	local, err := pglocal.Start(ctx, pglocal.Options{DataDir: dataDir, Logger: slog.Default()})
	if err != nil {
		return nil, "", fmt.Errorf("start local PostgreSQL in %s: %w", dataDir, err)
	}
	if err := local.CreateDatabase(ctx, localDatabase); err != nil {
		_ = local.Stop(context.WithoutCancel(ctx))
		return nil, "", fmt.Errorf("create database %q: %w", localDatabase, err)
	}
	klog.InfoS("Started local PostgreSQL", "dataDir", dataDir, "port", local.Port())
	return local, local.URL(localDatabase), nil
}

// announce writes the kubeconfig, waits until the server is ready as its clients see it (TLS with
// the written CA, the token, /readyz including the database) and then prints "ready".
func (o *Options) announce(ctx context.Context, creds *credentials, hooks Hooks, done <-chan error) (*rest.Config, error) {
	port := o.Recommended.SecureServing.BindPort
	host := o.Recommended.SecureServing.BindAddress.String()
	if ip := o.Recommended.SecureServing.BindAddress; ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	server := "https://" + net.JoinHostPort(host, strconv.Itoa(port))
	kubeconfig := creds.kubeconfig(server)
	if err := writeKubeconfig(o.WriteKubeconfig, kubeconfig); err != nil {
		return nil, err
	}
	clientConfig, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, clientConfig, done); err != nil {
		return nil, err
	}
	klog.InfoS("Serving", "url", server, "kubeconfig", o.WriteKubeconfig)
	fmt.Fprintf(hooks.Out, "kubeconfig: %s\n", o.WriteKubeconfig)
	fmt.Fprintln(hooks.Out, "ready")
	return clientConfig, nil
}

// waitReady polls /readyz until it answers ok, the server stops, or ctx ends.
func waitReady(ctx context.Context, cfg *rest.Config, done <-chan error) error {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	var lastErr error
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-done:
			if err == nil {
				err = errors.New("server stopped")
			}
			return false, fmt.Errorf("API server exited before it was ready: %w", err)
		default:
		}
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			lastErr = fmt.Errorf("%w: %s", err, body)
			return false, nil
		}
		return true, nil
	})
	if err != nil && lastErr != nil {
		return fmt.Errorf("wait for /readyz: %w (last: %v)", err, lastErr)
	}
	return err
}
