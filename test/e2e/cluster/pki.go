package cluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// validity of every certificate: long enough for any test run, short enough to be obviously
// throw-away.
const validity = 48 * time.Hour

// CA is a certificate authority of the test cluster.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
}

func newKey() (*ecdsa.PrivateKey, error) {
	// P-256: fast to generate, accepted by every component (serving, client certs, service
	// account signing as ES256).
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func newCA(commonName string) (*CA, error) {
	key, err := newKey()
	if err != nil {
		return nil, fmt.Errorf("generate key of CA %s: %w", commonName, err)
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA %s: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// certSpec is what a leaf certificate says.
type certSpec struct {
	commonName    string
	organizations []string // groups, for client certificates
	server        bool
	client        bool
	dnsNames      []string
	ips           []net.IP
}

// KeyPair is a PEM certificate and key.
type KeyPair struct {
	CertPEM, KeyPEM []byte
}

// Issue signs a leaf certificate with a new key.
func (ca *CA) issue(spec certSpec) (KeyPair, error) {
	key, err := newKey()
	if err != nil {
		return KeyPair{}, fmt.Errorf("generate key for %s: %w", spec.commonName, err)
	}
	sn, err := serial()
	if err != nil {
		return KeyPair{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: spec.commonName, Organization: spec.organizations},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		DNSNames:              spec.dnsNames,
		IPAddresses:           spec.ips,
	}
	if spec.server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if spec.client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("sign certificate for %s: %w", spec.commonName, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: keyPEM}, nil
}

// IssueClient signs a client certificate for user in groups: kube-apiserver's x509 authenticator
// takes the user from the common name and the groups from the organizations.
func (ca *CA) IssueClient(user string, groups ...string) (KeyPair, error) {
	return ca.issue(certSpec{commonName: user, organizations: groups, client: true})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// write stores the pair as dir/name.crt and dir/name.key and returns their paths.
func (kp KeyPair) write(dir, name string) (certPath, keyPath string, err error) {
	certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certPath, kp.CertPEM, 0o644); err != nil {
		return "", "", fmt.Errorf("write %s: %w", certPath, err)
	}
	if err := os.WriteFile(keyPath, kp.KeyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("write %s: %w", keyPath, err)
	}
	return certPath, keyPath, nil
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
	if p.ca, err = newCA("reports-server-e2e-ca"); err != nil {
		return nil, err
	}
	if p.frontProxyCA, err = newCA("reports-server-e2e-front-proxy-ca"); err != nil {
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

	serving, err := p.ca.issue(certSpec{
		commonName: "kube-apiserver",
		server:     true,
		dnsNames:   []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		ips:        append([]net.IP{net.ParseIP(firstServiceIP)}, apiserverIPs...),
	})
	if err != nil {
		return nil, err
	}
	if p.apiserverCert, p.apiserverKey, err = serving.write(dir, "apiserver"); err != nil {
		return nil, err
	}
	proxyClient, err := p.frontProxyCA.issue(certSpec{commonName: frontProxyClientName, client: true})
	if err != nil {
		return nil, err
	}
	if p.frontProxyClientCert, p.frontProxyClientKey, err = proxyClient.write(dir, "front-proxy-client"); err != nil {
		return nil, err
	}

	saKey, err := newKey()
	if err != nil {
		return nil, fmt.Errorf("generate service-account key: %w", err)
	}
	saPEM, err := encodeKey(saKey)
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

	if p.admin, err = p.ca.IssueClient("reports-server-e2e-admin", "system:masters"); err != nil {
		return nil, err
	}
	// The identity kubeadm gives kube-controller-manager; the bootstrap RBAC policy binds it.
	if p.controllerManager, err = p.ca.IssueClient("system:kube-controller-manager"); err != nil {
		return nil, err
	}
	return p, nil
}
