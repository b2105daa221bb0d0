package cluster

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/reports-server/reports-server/internal/testpki"
)

// CA is a certificate authority of the test cluster.
type CA = testpki.CA

// KeyPair is a PEM certificate and key.
type KeyPair = testpki.KeyPair

// issueClient signs a client certificate for user in groups: kube-apiserver's x509 authenticator
// takes the user from the common name and the groups from the organizations.
func issueClient(ca *CA, user string, groups ...string) (KeyPair, error) {
	return ca.Issue(testpki.Spec{CommonName: user, Organizations: groups, Client: true})
}

// pki is every file the components are started with.
type pki struct {
	ca, frontProxyCA *CA

	caFile, frontProxyCAFile                  string
	apiserverCert, apiserverKey               string
	frontProxyClientCert, frontProxyClientKey string
	serviceAccountKey, serviceAccountPub      string

	admin, controllerManager KeyPair
}

// frontProxyClientName is the common name of the certificate kube-apiserver proxies with; it is
// the only name --requestheader-allowed-names accepts.
const frontProxyClientName = "front-proxy-client"

// newPKI generates the cluster CA, the front-proxy CA (kept separate, as kubeadm does, so a client
// certificate of the cluster CA can never pass as the front proxy), kube-apiserver's serving
// certificate, the front-proxy client certificate, the service-account signing key and the client
// certificates of the admin and of kube-controller-manager.
func newPKI(dir string, apiserverIPs []net.IP) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	p := &pki{}
	var err error
	if p.ca, err = testpki.NewCA("reports-server-e2e-ca"); err != nil {
		return nil, err
	}
	if p.frontProxyCA, err = testpki.NewCA("reports-server-e2e-front-proxy-ca"); err != nil {
		return nil, err
	}
	p.caFile = filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(p.caFile, p.ca.CertPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write CA: %w", err)
	}
	p.frontProxyCAFile = filepath.Join(dir, "front-proxy-ca.crt")
	if err := os.WriteFile(p.frontProxyCAFile, p.frontProxyCA.CertPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write front-proxy CA: %w", err)
	}

	serving, err := p.ca.Issue(testpki.Spec{
		CommonName: "kube-apiserver",
		Server:     true,
		DNSNames:   []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPs:        append([]net.IP{net.ParseIP(firstServiceIP)}, apiserverIPs...),
	})
	if err != nil {
		return nil, err
	}
	if p.apiserverCert, p.apiserverKey, err = serving.Write(dir, "apiserver"); err != nil {
		return nil, err
	}
	proxyClient, err := p.frontProxyCA.Issue(testpki.Spec{CommonName: frontProxyClientName, Client: true})
	if err != nil {
		return nil, err
	}
	if p.frontProxyClientCert, p.frontProxyClientKey, err = proxyClient.Write(dir, "front-proxy-client"); err != nil {
		return nil, err
	}

	saKey, err := testpki.NewKey()
	if err != nil {
		return nil, fmt.Errorf("generate service-account key: %w", err)
	}
	saPEM, err := testpki.EncodeKey(saKey)
	if err != nil {
		return nil, err
	}
	p.serviceAccountKey = filepath.Join(dir, "sa.key")
	if err := os.WriteFile(p.serviceAccountKey, saPEM, 0o600); err != nil {
		return nil, fmt.Errorf("write service-account key: %w", err)
	}
	// kube-apiserver verifies tokens with public keys (--service-account-key-file), which it does
	// not extract from a PKCS #8 private key.
	pubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, fmt.Errorf("encode service-account public key: %w", err)
	}
	p.serviceAccountPub = filepath.Join(dir, "sa.pub")
	if err := os.WriteFile(p.serviceAccountPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return nil, fmt.Errorf("write service-account public key: %w", err)
	}

	if p.admin, err = issueClient(p.ca, "reports-server-e2e-admin", "system:masters"); err != nil {
		return nil, err
	}
	// The identity kubeadm gives kube-controller-manager; the bootstrap RBAC policy binds it.
	if p.controllerManager, err = issueClient(p.ca, "system:kube-controller-manager"); err != nil {
		return nil, err
	}
	return p, nil
}
