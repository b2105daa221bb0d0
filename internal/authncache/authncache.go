// Package authncache remembers, for a few seconds, who a client certificate authenticated as, so
// that a client sending many requests over its connections has its certificate chain verified
// once, not on every request.
//
// The generic API server's delegated authenticators verify the client certificate of every
// request (a chain build and an ECDSA or RSA signature check, x509.Certificate.Verify) against
// the client CA and the front proxy's CA: 13% of the server's CPU for a create sent straight to
// it (docs/benchmarks.md). kube-apiserver's own token authenticators cache their answers for
// 10 s; certificates get the same here.
//
// Only requests whose identity comes from the certificate chain alone are remembered: those
// without an Authorization header, a WebSocket protocol header (which may carry a bearer token),
// or any of the front proxy's identity headers (requestheader: the user, UID, groups and extra
// headers that kube-apiserver sets on the requests it proxies). For those the authenticators'
// answer depends on the chain, the CA bundles and the time; the chain is the key, an answer is
// kept for TTL at most and never past the certificates' expiry, so a CA bundle that changes
// takes effect within TTL, as a token review's answer does. Failures are never kept.
package authncache

import (
	"crypto/sha256"
	"net/http"
	"strings"
	"sync"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/request/headerrequest"
)

// TTL is how long an answer is kept: as long as the delegated token authenticator keeps a token
// review's (genericoptions.DelegatingAuthenticationOptions.CacheTTL's default).
const TTL = 10 * time.Second

// maxEntries bounds the cache: a server has few distinct clients, but a client that presents a
// new certificate on every connection must not grow it without end.
const maxEntries = 4096

// IdentityHeaders lists the request headers that carry an identity besides the certificate: the
// front proxy's (requestheader) header names and extra-header prefixes, which can change at run
// time (they come from a ConfigMap). Any of them in a request makes it uncacheable.
type IdentityHeaders struct {
	Names    []headerrequest.StringSliceProvider
	Prefixes []headerrequest.StringSliceProvider
}

// Authenticator is an authenticator.Request that remembers next's successful answers to
// certificate-only requests.
type Authenticator struct {
	next    authenticator.Request
	headers IdentityHeaders
	ttl     time.Duration
	now     func() time.Time

	mu      sync.Mutex
	entries map[[sha256.Size]byte]entry
}

type entry struct {
	resp    authenticator.Response
	expires time.Time
}

// New returns next with its answers to certificate-only requests remembered for ttl.
func New(next authenticator.Request, headers IdentityHeaders, ttl time.Duration) *Authenticator {
	return &Authenticator{next: next, headers: headers, ttl: ttl, now: time.Now, entries: map[[sha256.Size]byte]entry{}}
}

// AuthenticateRequest implements authenticator.Request.
func (a *Authenticator) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	if !a.certificateOnly(req) {
		return a.next.AuthenticateRequest(req)
	}
	key := chainKey(req)
	now := a.now()
	if resp, ok := a.lookup(key, now); ok {
		return resp, true, nil
	}
	resp, ok, err := a.next.AuthenticateRequest(req)
	if err != nil || !ok || resp == nil {
		return resp, ok, err
	}
	expires := now.Add(a.ttl)
	for _, cert := range req.TLS.PeerCertificates {
		if cert.NotAfter.Before(expires) {
			expires = cert.NotAfter
		}
	}
	a.store(key, entry{resp: *resp, expires: expires}, now)
	return resp, true, nil
}

// certificateOnly reports whether req presents a certificate and nothing else that could name a
// user.
func (a *Authenticator) certificateOnly(req *http.Request) bool {
	if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
		return false
	}
	if req.Header.Get("Authorization") != "" || req.Header.Get("Sec-Websocket-Protocol") != "" {
		return false
	}
	for _, names := range a.headers.Names {
		for _, name := range names.Value() {
			if len(req.Header.Values(name)) > 0 {
				return false
			}
		}
	}
	for _, p := range a.headers.Prefixes {
		for _, prefix := range p.Value() {
			for name := range req.Header {
				if len(name) >= len(prefix) && strings.EqualFold(name[:len(prefix)], prefix) {
					return false
				}
			}
		}
	}
	return true
}

// chainKey identifies the certificate chain req presents.
func chainKey(req *http.Request) [sha256.Size]byte {
	h := sha256.New()
	var n [4]byte
	for _, cert := range req.TLS.PeerCertificates {
		// Length-prefixed, so that two chains never hash the same bytes.
		l := len(cert.Raw)
		n[0], n[1], n[2], n[3] = byte(l>>24), byte(l>>16), byte(l>>8), byte(l)
		h.Write(n[:])
		h.Write(cert.Raw)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}

// lookup returns a copy of the answer kept for key, if it has not expired: the caller may
// change the response it gets.
func (a *Authenticator) lookup(key [sha256.Size]byte, now time.Time) (*authenticator.Response, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.entries[key]
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	resp := e.resp
	return &resp, true
}

// store keeps e for key, first dropping expired answers when the cache is full (and all of them
// when none has expired: they would be made again on the next request of each client).
func (a *Authenticator) store(key [sha256.Size]byte, e entry, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.entries) >= maxEntries {
		for k, old := range a.entries {
			if !now.Before(old.expires) {
				delete(a.entries, k)
			}
		}
		if len(a.entries) >= maxEntries {
			clear(a.entries)
		}
	}
	a.entries[key] = e
}
