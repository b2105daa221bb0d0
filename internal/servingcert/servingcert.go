// Package servingcert keeps the serving certificate of the aggregated API server in a Secret,
// so every replica serves a certificate signed by one CA and the APIService's caBundle is right
// whichever replica kube-apiserver reaches.
//
// A certificate made by each replica at start (metrics-server's way) forces insecureSkipTLSVerify
// on the APIService: with two replicas there is no single caBundle. Here the first replica
// creates a CA and a serving certificate and stores both in the Secret; the others read them. A
// replica renews the serving certificate when it nears expiry and the CA a year before its own,
// keeping the previous CA in the bundle so replicas still serving the old certificate stay
// trusted until they reload it.
package servingcert

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Keys of the Secret.
const (
	KeyCert       = "tls.crt" // serving certificate
	KeyKey        = "tls.key" // its key
	KeyCA         = "ca.crt"  // the CA that signed it
	KeyCAKey      = "ca.key"  // the CA's key, to renew the serving certificate
	KeyPreviousCA = "ca-previous.crt"
)

// Validity periods.
const (
	caValidity      = 10 * 365 * 24 * time.Hour
	servingValidity = 365 * 24 * time.Hour
	renewServing    = 30 * 24 * time.Hour  // renew the serving certificate this long before expiry
	renewCA         = 365 * 24 * time.Hour // and the CA this long before its expiry
)

// Bundle is what a replica serves with and what the APIService trusts.
type Bundle struct {
	CertPEM, KeyPEM []byte
	// CABundle is the current CA and, during a CA renewal, the previous one.
	CABundle []byte
}

// Ensure returns the serving certificate for hosts (DNS names and IPs) from the Secret
// namespace/name, creating or renewing it when needed. Replicas racing to create or renew it
// settle on one: the loser of the create or of the optimistic-concurrency update re-reads it.
func Ensure(ctx context.Context, client kubernetes.Interface, namespace, name string, hosts []string, now time.Time) (*Bundle, error) {
	secrets := client.CoreV1().Secrets(namespace)
	for attempt := 0; attempt < 5; attempt++ {
		cur, err := secrets.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			data, err := issue(nil, hosts, now)
			if err != nil {
				return nil, err
			}
			s := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{"app.kubernetes.io/managed-by": "reports-server"}},
				Type:       corev1.SecretTypeTLS,
				Data:       data,
			}
			if _, err := secrets.Create(ctx, s, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
				continue // another replica was first: use its certificate
			} else if err != nil {
				return nil, fmt.Errorf("create secret %s/%s: %w", namespace, name, err)
			}
			return bundle(data), nil
		case err != nil:
			return nil, fmt.Errorf("read secret %s/%s: %w", namespace, name, err)
		}
		if !needsRenewal(cur.Data, hosts, now) {
			return bundle(cur.Data), nil
		}
		data, err := issue(cur.Data, hosts, now)
		if err != nil {
			return nil, err
		}
		cur.Data = data
		if _, err := secrets.Update(ctx, cur, metav1.UpdateOptions{}); apierrors.IsConflict(err) {
			continue // another replica renewed it
		} else if err != nil {
			return nil, fmt.Errorf("update secret %s/%s: %w", namespace, name, err)
		}
		return bundle(data), nil
	}
	return nil, fmt.Errorf("secret %s/%s kept changing while reading it", namespace, name)
}

func bundle(data map[string][]byte) *Bundle {
	ca := slices.Clone(data[KeyCA])
	if prev := data[KeyPreviousCA]; len(prev) > 0 && !bytes.Equal(prev, data[KeyCA]) {
		ca = append(append(ca, '\n'), prev...)
	}
	return &Bundle{CertPEM: data[KeyCert], KeyPEM: data[KeyKey], CABundle: ca}
}

// needsRenewal reports whether the stored material is missing, unreadable, near expiry, or does
// not cover hosts.
func needsRenewal(data map[string][]byte, hosts []string, now time.Time) bool {
	ca, caErr := parseCert(data[KeyCA])
	leaf, leafErr := parseCert(data[KeyCert])
	if caErr != nil || leafErr != nil || len(data[KeyKey]) == 0 || len(data[KeyCAKey]) == 0 {
		return true
	}
	if now.Add(renewCA).After(ca.NotAfter) || now.Add(renewServing).After(leaf.NotAfter) {
		return true
	}
	if leaf.CheckSignatureFrom(ca) != nil {
		return true
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return true
		}
	}
	return false
}

// issue makes a serving certificate for hosts, signed by the stored CA when it is still good for
// long enough, else by a new CA (the old one is kept as previous).
func issue(old map[string][]byte, hosts []string, now time.Time) (map[string][]byte, error) {
	data := map[string][]byte{}
	ca, caErr := parseCert(old[KeyCA])
	caKey, keyErr := parseKey(old[KeyCAKey])
	if caErr != nil || keyErr != nil || now.Add(renewCA).After(ca.NotAfter) {
		if caErr == nil {
			data[KeyPreviousCA] = old[KeyCA]
		}
		var err error
		if ca, caKey, data[KeyCA], data[KeyCAKey], err = newCA(now); err != nil {
			return nil, err
		}
	} else {
		data[KeyCA], data[KeyCAKey] = old[KeyCA], old[KeyCAKey]
		if prev := old[KeyPreviousCA]; len(prev) > 0 {
			data[KeyPreviousCA] = prev
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate serving key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: firstOr(hosts, "reports-server")},
		NotBefore:    now.Add(-time.Hour), // tolerate clock skew between replicas and kube-apiserver
		NotAfter:     now.Add(servingValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("sign serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode serving key: %w", err)
	}
	data[KeyCert] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	data[KeyKey] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return data, nil
}

func newCA(now time.Time) (*x509.Certificate, crypto.Signer, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("reports-server-ca@%d", now.Unix())},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("sign CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("parse CA: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("encode CA key: %w", err)
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func parseCert(p []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(p)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

func parseKey(p []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(p)
	if b == nil {
		return nil, errors.New("no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("key cannot sign")
	}
	return s, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return big.NewInt(time.Now().UnixNano()) // crypto/rand does not fail on Linux
	}
	return n
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}
