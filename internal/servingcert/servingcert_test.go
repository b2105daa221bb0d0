package servingcert

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"
)

var hosts = []string{"reports-server.reports-server.svc", "10.0.0.7"} // netcheck: a name in a certificate, never dialled

// verify checks that the certificate of data is valid for hosts at now under the bundle's CAs.
func verify(t *testing.T, b *Bundle, now time.Time) {
	t.Helper()
	pair, err := tls.X509KeyPair(b.CertPEM, b.KeyPEM)
	if err != nil {
		t.Fatalf("certificate and key do not match: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(b.CABundle) {
		t.Fatal("CA bundle holds no certificate")
	}
	for _, h := range hosts {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: roots, CurrentTime: now}); err != nil {
			t.Errorf("certificate not valid for %s at %s: %v", h, now.Format(time.DateOnly), err)
		}
	}
}

// TestLifecycle: a new certificate is valid for every host; it is kept while good; the serving
// certificate is renewed under the same CA a month before expiry; the CA is renewed a year before
// its own, and the bundle then trusts both CAs, so a replica still serving a certificate of the
// old CA stays trusted until it reloads.
func TestLifecycle(t *testing.T) {
	now := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	data, err := issue(nil, hosts, now)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, bundle(data), now)
	if needsRenewal(data, hosts, now.Add(300*24*time.Hour)) {
		t.Error("renewal wanted after 300 days of a one-year certificate")
	}
	if !needsRenewal(data, append(hosts, "other.example"), now) {
		t.Error("no renewal wanted for a host the certificate does not cover")
	}

	later := now.Add(340 * 24 * time.Hour)
	if !needsRenewal(data, hosts, later) {
		t.Fatal("no renewal wanted 25 days before expiry")
	}
	renewed, err := issue(data, hosts, later)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(renewed[KeyCA], data[KeyCA]) || len(renewed[KeyPreviousCA]) != 0 {
		t.Error("renewing the serving certificate changed the CA")
	}
	verify(t, bundle(renewed), later)

	nearCAExpiry := now.Add(9*365*24*time.Hour + 24*time.Hour)
	if !needsRenewal(renewed, hosts, nearCAExpiry) {
		t.Fatal("no renewal wanted less than a year before the CA expires")
	}
	rotated, err := issue(renewed, hosts, nearCAExpiry)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(rotated[KeyCA], renewed[KeyCA]) || !bytes.Equal(rotated[KeyPreviousCA], renewed[KeyCA]) {
		t.Fatal("CA renewal did not keep the old CA as previous")
	}
	b := bundle(rotated)
	verify(t, b, nearCAExpiry)
	// A replica that has not reloaded yet still serves a certificate of the old CA.
	old, err := issue(renewed, hosts, nearCAExpiry.Add(-10*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(old[KeyCA], renewed[KeyCA]) {
		t.Fatal("the CA was renewed early")
	}
	verify(t, &Bundle{CertPEM: old[KeyCert], KeyPEM: old[KeyKey], CABundle: b.CABundle}, nearCAExpiry)
}

// TestNeedsRenewalOnGarbage: unreadable material is replaced, not served.
func TestNeedsRenewalOnGarbage(t *testing.T) {
	if !needsRenewal(map[string][]byte{KeyCert: []byte("x"), KeyKey: []byte("y"), KeyCA: []byte("z"), KeyCAKey: []byte("w")}, hosts, time.Now()) {
		t.Error("garbage accepted")
	}
	data, err := issue(map[string][]byte{KeyCA: []byte("garbage")}, hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(data[KeyPreviousCA]) != 0 {
		t.Error("an unreadable CA was kept as previous")
	}
	verify(t, bundle(data), time.Now())
}
