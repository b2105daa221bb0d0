package authncache

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/group"
	"k8s.io/apiserver/pkg/authentication/request/anonymous"
	"k8s.io/apiserver/pkg/authentication/request/headerrequest"
	"k8s.io/apiserver/pkg/authentication/request/union"
	x509request "k8s.io/apiserver/pkg/authentication/request/x509"

	"github.com/reports-server/reports-server/internal/testpki"
)

// ca is a certificate authority that issues client certificates.
type ca struct{ *testpki.CA }

func newCA(t *testing.T) ca {
	t.Helper()
	c, err := testpki.NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	return ca{c}
}

// verifyOptions is an x509request.VerifyOptionFunc that trusts c alone.
func (c ca) verifyOptions() (x509.VerifyOptions, bool) {
	roots := x509.NewCertPool()
	roots.AddCert(c.Cert)
	opts := x509request.DefaultVerifyOptions()
	opts.Roots = roots
	return opts, true
}

// issue returns a client certificate for user in the group "team", valid until notAfter.
func (c ca) issue(t *testing.T, user string, notAfter time.Time) *x509.Certificate {
	t.Helper()
	kp, err := c.Issue(testpki.Spec{CommonName: user, Organizations: []string{"team"}, Client: true, NotAfter: notAfter})
	if err != nil {
		t.Fatal(err)
	}
	return kp.Cert
}

// counting counts the requests that reach the authenticator it wraps.
type counting struct {
	next  authenticator.Request
	calls atomic.Int32
}

func (c *counting) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	c.calls.Add(1)
	return c.next.AuthenticateRequest(req)
}

// want checks that n requests reached the authenticator.
func (c *counting) want(t *testing.T, n int32, what string) {
	t.Helper()
	if got := c.calls.Load(); got != n {
		t.Fatalf("%s: %d requests reached the authenticator, want %d", what, got, n)
	}
}

func request(cert *x509.Certificate, header http.Header) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, "https://127.0.0.1/apis", nil)
	req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	for k, v := range header {
		req.Header[k] = v
	}
	return req
}

// setup returns the cache around k8s.io/apiserver's client-certificate authenticator, trusting
// authority, with the front proxy's default identity headers, and a clock the test moves.
func setup(t *testing.T, authority ca) (*Authenticator, *counting, *time.Time) {
	t.Helper()
	next := &counting{next: x509request.NewDynamic(authority.verifyOptions, x509request.CommonNameUserConversion)}
	a := New(next, IdentityHeaders{
		Names:    []headerrequest.StringSliceProvider{headerrequest.StaticStringSlice{"X-Remote-User"}, headerrequest.StaticStringSlice{"X-Remote-Group"}},
		Prefixes: []headerrequest.StringSliceProvider{headerrequest.StaticStringSlice{"X-Remote-Extra-"}},
	}, TTL)
	now := time.Now()
	a.now = func() time.Time { return now }
	return a, next, &now
}

func authenticate(t *testing.T, a *Authenticator, req *http.Request, wantUser string) {
	t.Helper()
	resp, ok, err := a.AuthenticateRequest(req)
	if err != nil || !ok || resp.User.GetName() != wantUser {
		t.Fatalf("got %+v, %v, %v; want user %s", resp, ok, err, wantUser)
	}
	if groups := resp.User.GetGroups(); len(groups) != 1 || groups[0] != "team" {
		t.Fatalf("groups %v, want [team]", groups)
	}
}

// TestRemembersCertificates: a certificate's identity is verified once per TTL, per chain; each
// answer is the authenticator's (user and groups) and may be changed by its caller.
func TestRemembersCertificates(t *testing.T) {
	authority := newCA(t)
	a, next, now := setup(t, authority)
	alice := authority.issue(t, "alice", time.Now().Add(time.Hour))
	bob := authority.issue(t, "bob", time.Now().Add(time.Hour))

	for range 3 {
		authenticate(t, a, request(alice, nil), "alice")
	}
	next.want(t, 1, "one certificate, three requests in one TTL")
	resp, _, _ := a.AuthenticateRequest(request(alice, nil))
	resp.User = nil // a caller's change stays its own
	authenticate(t, a, request(bob, nil), "bob")
	authenticate(t, a, request(alice, nil), "alice")
	next.want(t, 2, "two certificates")

	*now = now.Add(TTL)
	authenticate(t, a, request(alice, nil), "alice")
	next.want(t, 3, "after TTL")
}

// TestCertificateExpiry: an answer is not kept past the certificate's expiry, even within TTL.
func TestCertificateExpiry(t *testing.T) {
	authority := newCA(t)
	a, next, now := setup(t, authority)
	short := authority.issue(t, "short", time.Now().Add(TTL/2))
	authenticate(t, a, request(short, nil), "short")
	// The cache's clock passes the expiry; x509 verifies with the real time, so the certificate
	// is still valid when the request reaches it again: what matters is that it does.
	*now = short.NotAfter
	authenticate(t, a, request(short, nil), "short")
	next.want(t, 2, "past the certificate's expiry")
}

// TestNotRemembered: failures, and requests that carry another credential than the certificate
// (a bearer token, a WebSocket protocol), always reach the authenticator.
func TestNotRemembered(t *testing.T) {
	authority := newCA(t)
	a, next, _ := setup(t, authority)
	stranger := newCA(t).issue(t, "mallory", time.Now().Add(time.Hour))
	for range 2 {
		if _, ok, err := a.AuthenticateRequest(request(stranger, nil)); ok || err == nil {
			t.Fatalf("a certificate of an unknown CA: ok=%v err=%v, want an error", ok, err)
		}
	}
	next.want(t, 2, "two failures")

	alice := authority.issue(t, "alice", time.Now().Add(time.Hour))
	for _, header := range []http.Header{
		{"Authorization": {"Bearer abc"}},
		{"Sec-Websocket-Protocol": {"base64url.bearer.authorization.k8s.io.YWJj"}},
	} {
		next.calls.Store(0)
		for range 2 {
			authenticate(t, a, request(alice, header), "alice")
		}
		next.want(t, 2, fmt.Sprintf("two requests with %v", header))
	}
	// No certificate: nothing to remember.
	req, _ := http.NewRequest(http.MethodGet, "https://127.0.0.1/apis", nil)
	next.calls.Store(0)
	a.AuthenticateRequest(req)
	a.AuthenticateRequest(req)
	next.want(t, 2, "two requests without a certificate")
}

// TestRemembersFrontProxy: behind kube-apiserver's aggregation, the answer to the front proxy's
// certificate with its identity headers is remembered per chain and headers (names and values),
// and a remembered answer removes the identity headers from the request as the front proxy's
// authenticator does. A client certificate that sends identity headers is still its own user,
// and its headers stay.
func TestRemembersFrontProxy(t *testing.T) {
	clients, proxies := newCA(t), newCA(t)
	proxy := proxies.issue(t, "front-proxy-client", time.Now().Add(time.Hour))
	alice := clients.issue(t, "alice", time.Now().Add(time.Hour))
	a, next := setupDelegated(t, clients, proxies)

	proxied := func(user string) http.Header {
		return http.Header{"X-Remote-User": {user}, "X-Remote-Group": {"admins", "ops"}, "X-Remote-Extra-Scopes": {"a", "b"}}
	}
	for i := range 3 {
		req := request(proxy, proxied("bob"))
		resp, ok, err := a.AuthenticateRequest(req)
		if err != nil || !ok {
			t.Fatalf("request %d: ok=%v err=%v", i, ok, err)
		}
		u := resp.User
		if u.GetName() != "bob" || !slices.Equal(u.GetGroups(), []string{"admins", "ops", "system:authenticated"}) ||
			!slices.Equal(u.GetExtra()["scopes"], []string{"a", "b"}) {
			t.Fatalf("request %d: user %q, groups %v, extra %v", i, u.GetName(), u.GetGroups(), u.GetExtra())
		}
		if len(req.Header) != 0 {
			t.Fatalf("request %d: headers %v left, want the identity headers removed", i, req.Header)
		}
	}
	next.want(t, 1, "one front proxy, one identity, three requests")

	for _, h := range []http.Header{
		proxied("carol"),
		{"X-Remote-User": {"bob"}, "X-Remote-Group": {"admins"}, "X-Remote-Extra-Scopes": {"a", "b"}},
		{"X-Remote-User": {"bob"}, "X-Remote-Group": {"admins", "ops"}, "X-Remote-Extra-Scopes": {"a", "b"}, "X-Remote-Extra-Team": {"x"}},
		{"X-Remote-User": {"bob"}, "X-Remote-Group": {"admins", "ops"}, "X-Remote-Extra-Scope": {"a", "b"}},
	} {
		next.calls.Store(0)
		resp, ok, err := a.AuthenticateRequest(request(proxy, h))
		if err != nil || !ok || resp.User.GetName() != h.Get("X-Remote-User") {
			t.Fatalf("%v: %+v, %v, %v", h, resp, ok, err)
		}
		next.want(t, 1, fmt.Sprintf("other identity headers %v", h))
	}

	// A client's own certificate with a front proxy's headers: the front proxy's authenticator
	// refuses the chain, the certificate's user is the answer, not remembered (the front
	// proxy's settings decide who sends identity headers), and the headers stay.
	next.calls.Store(0)
	for range 2 {
		req := request(alice, proxied("root"))
		resp, ok, err := a.AuthenticateRequest(req)
		if err != nil || !ok || resp.User.GetName() != "alice" {
			t.Fatalf("alice with a front proxy's headers: %+v, %v, %v", resp, ok, err)
		}
		if req.Header.Get("X-Remote-User") != "root" {
			t.Fatalf("headers %v, want them kept", req.Header)
		}
	}
	next.want(t, 2, "a client's certificate with identity headers, twice")
}

// TestAnonymousNotRemembered: a server that has not loaded the front proxy's settings or its CA
// bundles yet answers proxied requests as anonymous (the last of its authenticators); that
// answer is not kept, so the next request, once the settings are there, is authenticated.
func TestAnonymousNotRemembered(t *testing.T) {
	proxies := newCA(t)
	proxy := proxies.issue(t, "front-proxy-client", time.Now().Add(time.Hour))
	loaded := atomic.Bool{}
	names := headerrequest.StringSliceProviderFunc(func() []string {
		if loaded.Load() {
			return []string{"X-Remote-User"}
		}
		return nil
	})
	next := &counting{next: union.New(
		headerrequest.NewDynamicVerifyOptionsSecure(proxies.verifyOptions,
			headerrequest.StaticStringSlice{"front-proxy-client"}, names, headerrequest.StaticStringSlice{},
			headerrequest.StaticStringSlice{"X-Remote-Group"}, headerrequest.StaticStringSlice{"X-Remote-Extra-"}),
		anonymous.NewAuthenticator(nil),
	)}
	a := New(next, IdentityHeaders{
		Names:    []headerrequest.StringSliceProvider{names, headerrequest.StaticStringSlice{"X-Remote-Group"}},
		Prefixes: []headerrequest.StringSliceProvider{headerrequest.StaticStringSlice{"X-Remote-Extra-"}},
	}, TTL)
	proxied := http.Header{"X-Remote-User": {"bob"}, "X-Remote-Group": {"admins"}}
	for _, want := range []string{"system:anonymous", "system:anonymous", "bob", "bob"} {
		if want == "bob" {
			loaded.Store(true)
		}
		resp, ok, err := a.AuthenticateRequest(request(proxy, proxied))
		if err != nil || !ok || resp.User.GetName() != want {
			t.Fatalf("got %+v, %v, %v; want %s", resp, ok, err, want)
		}
	}
	next.want(t, 3, "two anonymous answers, then bob's, remembered")
}

// setupDelegated returns the cache around the authenticators a delegating server builds: the
// front proxy's (requestheader), whose certificates proxies issues to front-proxy-client, then
// client certificates issued by clients, both adding system:authenticated.
func setupDelegated(t *testing.T, clients, proxies ca) (*Authenticator, *counting) {
	t.Helper()
	names := headerrequest.StaticStringSlice{"X-Remote-User"}
	uids := headerrequest.StaticStringSlice{"X-Remote-Uid"}
	groups := headerrequest.StaticStringSlice{"X-Remote-Group"}
	prefixes := headerrequest.StaticStringSlice{"X-Remote-Extra-"}
	next := &counting{next: group.NewAuthenticatedGroupAdder(union.New(
		headerrequest.NewDynamicVerifyOptionsSecure(proxies.verifyOptions, headerrequest.StaticStringSlice{"front-proxy-client"}, names, uids, groups, prefixes),
		x509request.NewDynamic(clients.verifyOptions, x509request.CommonNameUserConversion),
	))}
	return New(next, IdentityHeaders{
		Names:    []headerrequest.StringSliceProvider{names, uids, groups},
		Prefixes: []headerrequest.StringSliceProvider{prefixes},
	}, TTL), next
}

// TestBounded: the cache never holds more than maxEntries answers.
func TestBounded(t *testing.T) {
	authority := newCA(t)
	a, _, _ := setup(t, authority)
	cert := authority.issue(t, "many", time.Now().Add(time.Hour))
	for i := range maxEntries + 10 {
		// Distinct chains: the same leaf with a different (unused) intermediate.
		req := request(cert, nil)
		extra := *authority.Cert
		extra.Raw = append([]byte{byte(i), byte(i >> 8)}, authority.Cert.Raw...)
		req.TLS.PeerCertificates = append(req.TLS.PeerCertificates, &extra)
		a.AuthenticateRequest(req)
	}
	if n := len(a.entries); n > maxEntries {
		t.Fatalf("%d entries, want at most %d", n, maxEntries)
	}
}
