package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	unionauthn "k8s.io/apiserver/pkg/authentication/request/union"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	unionauthz "k8s.io/apiserver/pkg/authorization/union"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/reports-server/reports-server/internal/apiserver"
)

// Standalone identity: one user, a member of system:masters, like the admin of a kind cluster.
const (
	standaloneUser = "reports-server-admin"
	tokenFile      = "token"
	certPairName   = "apiserver"
	kubeconfigName = "reports-server"
)

// credentials are what standalone clients need: the CA of the serving certificate and the token.
type credentials struct {
	caPEM []byte
	token string
}

// applyStandalone configures serving, authentication and authorization without kube-apiserver.
func (o *Options) applyStandalone(cfg *apiserver.Config, hooks Hooks) (*credentials, error) {
	ss := o.Recommended.SecureServing
	if ss.BindPort == 0 && ss.Listener == nil {
		// Port 0 means "any free port": listen now so the port is known for the kubeconfig.
		ln, err := net.Listen("tcp", net.JoinHostPort(ss.BindAddress.String(), "0"))
		if err != nil {
			return nil, fmt.Errorf("listen on a free port: %w", err)
		}
		ss.Listener = ln
		ss.BindPort = ln.Addr().(*net.TCPAddr).Port
	}
	if ss.ServerCert.PairName == "" {
		ss.ServerCert.PairName = certPairName
	}
	if err := ss.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return nil, fmt.Errorf("create self-signed certificate: %w", err)
	}
	if err := o.Recommended.ApplyTo(cfg.Generic); err != nil {
		return nil, fmt.Errorf("apply server options: %w", err)
	}

	token, err := loadOrCreateToken(filepath.Join(o.DataDir, tokenFile))
	if err != nil {
		return nil, err
	}
	var authn authenticator.Request = bearertoken.New(tokenAuthenticator(token))
	if hooks.Authenticator != nil {
		authn = unionauthn.New(authn, hooks.Authenticator)
	}
	cfg.Generic.Authentication.Authenticator = authn
	// Only system:masters may do anything. The loopback client is added to that group when the
	// configuration is completed, so it keeps working too.
	var authz authorizer.Authorizer = authorizerfactory.NewPrivilegedGroups(user.SystemPrivilegedGroup)
	if hooks.Authorizer != nil {
		authz, err = unionauthz.New(
			unionauthz.NamedAuthorizer{AuthorizerName: "standalone-admin", Authorizer: authz},
			unionauthz.NamedAuthorizer{AuthorizerName: "embedder", Authorizer: hooks.Authorizer},
		)
		if err != nil {
			return nil, fmt.Errorf("combine authorizers: %w", err)
		}
	}
	cfg.Generic.Authorization.Authorizer = authz

	caPEM, err := os.ReadFile(ss.ServerCert.CertKey.CertFile)
	if err != nil {
		return nil, fmt.Errorf("read serving certificate for the kubeconfig: %w", err)
	}
	return &credentials{caPEM: caPEM, token: token}, nil
}

// tokenAuthenticator accepts exactly one token.
func tokenAuthenticator(token string) authenticator.Token {
	want := []byte(token)
	return authenticator.TokenFunc(func(_ context.Context, got string) (*authenticator.Response, bool, error) {
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			return nil, false, nil
		}
		return &authenticator.Response{User: &user.DefaultInfo{
			Name:   standaloneUser,
			Groups: []string{user.SystemPrivilegedGroup, user.AllAuthenticated},
		}}, true, nil
	})
}

// loadOrCreateToken reuses the token in path, so kubeconfigs written earlier stay valid, or
// writes a new random one readable only by the owner.
func loadOrCreateToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if token := strings.TrimSpace(string(data)); token != "" {
			return token, nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	token := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write token: %w", err)
	}
	return token, nil
}

// kubeconfig returns a client configuration for server with these credentials.
func (c *credentials) kubeconfig(server string) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[kubeconfigName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: c.caPEM}
	cfg.AuthInfos[kubeconfigName] = &clientcmdapi.AuthInfo{Token: c.token}
	cfg.Contexts[kubeconfigName] = &clientcmdapi.Context{Cluster: kubeconfigName, AuthInfo: kubeconfigName, Namespace: "default"}
	cfg.CurrentContext = kubeconfigName
	return cfg
}

// writeKubeconfig writes cfg to path (mode 0600: it holds the token), creating parent directories.
func writeKubeconfig(path string, cfg *clientcmdapi.Config) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create kubeconfig directory: %w", err)
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

func restConfig(cfg *clientcmdapi.Config) (*rest.Config, error) {
	rc, err := clientcmd.NewDefaultClientConfig(*cfg, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("build client config: %w", err)
	}
	return rc, nil
}
