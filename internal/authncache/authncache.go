// Package authncache remembers, for a few seconds, who a client certificate authenticated as, so
// that a client sending many requests over its connections has its certificate chain verified
// once, not on every request.
//
// The generic API server's delegated authenticators verify the client certificate of every
// request (a chain build and an ECDSA or RSA signature check, x509.Certificate.Verify) against
// the client CA and the front proxy's CA: 13% of the server's CPU for a create sent straight to
// it, and 7–9% for one that kube-apiserver's aggregation proxies (docs/benchmarks.md).
// kube-apiserver's own token authenticators cache their answers for 10 s; certificates get the
// same here.
//
// Requests whose identity comes from the certificate chain, and from the front proxy's identity
// headers when it sends them (requestheader: the user, UID, groups and extra headers that
// kube-apiserver sets on the requests it proxies), are remembered: those without an
// Authorization header or a WebSocket protocol header (which may carry a bearer token). For those
// the authenticators' answer depends on the chain, the identity headers, the CA bundles, the
// front proxy's allowed names and the time. The chain and the identity headers (names and
// values) are the key; an answer is kept for TTL at most and never past the certificates'
// expiry, so a CA bundle or a list of names that changes takes effect within TTL, as a token
// review's answer does. Failures and anonymous answers are never kept, nor answers to requests
// whose identity headers the front proxy's authenticator did not take. The front proxy's
// authenticator removes the identity headers from a request it authenticates; a remembered
// answer removes the same ones.
package authncache

import (
	"crypto/sha256"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/request/headerrequest"
	"k8s.io/apiserver/pkg/authentication/user"
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
	// removed lists the identity headers the authenticator removed from the request.
	removed []string
}

// New returns next with its answers to requests a certificate authenticates (with the front
// proxy's identity headers, if any) remembered for ttl.
func New(next authenticator.Request, headers IdentityHeaders, ttl time.Duration) *Authenticator {
	return &Authenticator{next: next, headers: headers, ttl: ttl, now: time.Now, entries: map[[sha256.Size]byte]entry{}}
}

// AuthenticateRequest implements authenticator.Request.
func (a *Authenticator) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	if !rememberable(req) {
		return a.next.AuthenticateRequest(req)
	}
	identity := a.identityHeaders(req.Header)
	key := requestKey(req, identity)
	now := a.now()
	if e, ok := a.lookup(key, now); ok {
		for _, name := range e.removed {
			delete(req.Header, name)
		}
		return &e.resp, true, nil
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
	e := entry{resp: *resp, expires: expires}
	for _, h := range identity {
		if _, kept := req.Header[h.name]; !kept {
			e.removed = append(e.removed, h.name)
		}
	}
	if rememberAnswer(resp, identity, e.removed) {
		a.store(key, e, now)
	}
	return resp, true, nil
}

// rememberAnswer tells whether an answer may be kept: one that a certificate gave. An anonymous
// answer is not (no authenticator recognised the request: a server that has not loaded its CA
// bundles or the front proxy's settings yet answers so, and would keep answering so for TTL
// after it has). Nor is an answer to a request with identity headers that the front proxy's
// authenticator did not take (it removes those it authenticates from): another authenticator
// answered, whose answer the front proxy's settings, once loaded or changed, would overrule.
func rememberAnswer(resp *authenticator.Response, identity []header, removed []string) bool {
	if resp.User == nil || resp.User.GetName() == user.Anonymous {
		return false
	}
	return len(identity) == 0 || len(removed) > 0
}

// rememberable reports whether req presents a certificate and no credential besides it and the
// front proxy's identity headers.
func rememberable(req *http.Request) bool {
	if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
		return false
	}
	return req.Header.Get("Authorization") == "" && req.Header.Get("Sec-Websocket-Protocol") == ""
}

// header is one request header, as it is in the request's map.
type header struct {
	name   string
	values []string
}

// identityHeaders returns the front proxy's identity headers in h, ordered by name. A name
// matches a configured one, or starts with a configured prefix, in any case: a match more than
// the front proxy's authenticator reads only makes the key more specific.
func (a *Authenticator) identityHeaders(h http.Header) []header {
	var names, prefixes []string
	for _, p := range a.headers.Names {
		names = append(names, p.Value()...)
	}
	for _, p := range a.headers.Prefixes {
		prefixes = append(prefixes, p.Value()...)
	}
	var found []header
	for name, values := range h {
		if isIdentity(name, names, prefixes) {
			found = append(found, header{name, values})
		}
	}
	slices.SortFunc(found, func(x, y header) int { return strings.Compare(x.name, y.name) })
	return found
}

// isIdentity tells whether the header name is one of names or starts with one of prefixes, in
// any case.
func isIdentity(name string, names, prefixes []string) bool {
	for _, n := range names {
		if strings.EqualFold(name, n) {
			return true
		}
	}
	for _, prefix := range prefixes {
		if len(name) >= len(prefix) && strings.EqualFold(name[:len(prefix)], prefix) {
			return true
		}
	}
	return false
}

// requestKey identifies the certificate chain req presents and its identity headers.
func requestKey(req *http.Request, identity []header) [sha256.Size]byte {
	h := sha256.New()
	// Every list and string is length-prefixed, so that two requests never hash the same bytes.
	var n [4]byte
	length := func(l int) {
		n[0], n[1], n[2], n[3] = byte(l>>24), byte(l>>16), byte(l>>8), byte(l)
		h.Write(n[:])
	}
	length(len(req.TLS.PeerCertificates))
	for _, cert := range req.TLS.PeerCertificates {
		length(len(cert.Raw))
		h.Write(cert.Raw)
	}
	length(len(identity))
	for _, x := range identity {
		length(len(x.name))
		io.WriteString(h, x.name)
		length(len(x.values))
		for _, v := range x.values {
			length(len(v))
			io.WriteString(h, v)
		}
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}

// lookup returns a copy of the answer kept for key, if it has not expired: the caller may
// change the response it gets.
func (a *Authenticator) lookup(key [sha256.Size]byte, now time.Time) (entry, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.entries[key]
	if !ok || !now.Before(e.expires) {
		return entry{}, false
	}
	return e, true
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
