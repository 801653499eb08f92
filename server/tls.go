package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"

	"evident.dev/evident/api"
	"evident.dev/evident/ingest"
	"evident.dev/evident/query"
)

// clientAuth turns on client certificates (mTLS) when tls.clientCAFile is
// set.
func (c *Config) clientAuth(tc *tls.Config) error {
	if c.TLS.ClientCAFile == "" {
		if c.TLS.RequireClientCert {
			return errors.New("tls.requireClientCert needs tls.clientCAFile")
		}
		return nil
	}
	b, err := os.ReadFile(c.path(c.TLS.ClientCAFile))
	if err != nil {
		return fmt.Errorf("tls.clientCAFile: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return fmt.Errorf("tls.clientCAFile %s: no PEM certificate in it", c.TLS.ClientCAFile)
	}
	tc.ClientCAs = pool
	tc.ClientAuth = tls.VerifyClientCertIfGiven
	if c.TLS.RequireClientCert {
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return nil
}

// certRunners maps client certificate names to runners, or is nil when no
// runner names a client certificate and no client CA is configured.
func (c *Config) certRunners() ingest.TransportIdentity {
	if c.TLS.ClientCAFile == "" {
		return nil
	}
	m := certRunners{}
	for _, r := range c.Trust.Runners {
		if r.ClientCertificate != "" {
			m[r.ClientCertificate] = r.Name
		}
	}
	return m
}

// certRunners is certificate name (subject CN or SAN) to runner name.
type certRunners map[string]string

// Runner implements ingest.TransportIdentity. The TLS stack has verified the
// chain against the client CAs; this only maps the leaf's names.
func (m certRunners) Runner(r *http.Request) (string, bool, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", false, nil
	}
	leaf := r.TLS.PeerCertificates[0]
	names := append([]string{leaf.Subject.CommonName}, leaf.DNSNames...)
	names = append(names, leaf.EmailAddresses...)
	for _, u := range leaf.URIs {
		names = append(names, u.String())
	}
	for _, n := range names {
		if name, ok := m[n]; ok && n != "" {
			return name, true, nil
		}
	}
	return "", false, fmt.Errorf("the client certificate %q is not mapped to a runner (trust.runners[].clientCertificate)", leaf.Subject.CommonName)
}

// gateAuth guards the apply gate: its answer names approvers and every call
// writes a gate.decided entry, so once access is configured only runners and
// auditors (by bearer token), or a runner's mTLS client certificate, reach
// it. With no access configured it stays open, as the read side does.
func gateAuth(auth *query.Authenticator, certs ingest.TransportIdentity, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if certs != nil {
			if _, ok, err := certs.Runner(r); err == nil && ok {
				h.ServeHTTP(w, r)
				return
			}
		}
		id, err := auth.Authenticate(r)
		if err != nil {
			writeGateRefusal(w, http.StatusUnauthorized, "unauthenticated", "the apply gate needs a runner's bearer token or client certificate")
			return
		}
		if id.Role != query.RoleRunner && id.Role != query.RoleAuditor {
			writeGateRefusal(w, http.StatusForbidden, "forbidden", "only runners and auditors may ask the apply gate")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeGateRefusal(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(api.ErrorBody{Error: msg, Code: code})
	w.Write(append(b, '\n'))
}
