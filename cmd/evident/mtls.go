package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"evident.dev/evident/client"
	"evident.dev/evident/internal/secret"
)

// clientTLS is the TLS a command uses to reach the server: a CA to trust
// (the server's certificate issuer, when not a public one) and the runner's
// client certificate for mTLS.
type clientTLS struct {
	ca, cert, key *string
}

func addClientTLSFlags(fs *flag.FlagSet) *clientTLS {
	return &clientTLS{
		ca:   fs.String("tls-ca", "", "PEM CA certificate(s) the server's certificate is checked against (default: the system's)"),
		cert: fs.String("tls-cert", "", "PEM client certificate for mTLS (with --tls-key)"),
		key:  fs.String("tls-key", "", "PEM private key of --tls-cert (a file only its owner may read, or env:VAR)"),
	}
}

// apply sets c's HTTP client for the flags; without them c keeps its own.
func (f *clientTLS) apply(c *client.Client) error {
	if *f.ca == "" && *f.cert == "" && *f.key == "" {
		return nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if *f.ca != "" {
		b, err := os.ReadFile(*f.ca)
		if err != nil {
			return fmt.Errorf("--tls-ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(b) {
			return fmt.Errorf("--tls-ca %s: no PEM certificate in it", *f.ca)
		}
	}
	if (*f.cert == "") != (*f.key == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if *f.cert != "" {
		certPEM, err := os.ReadFile(*f.cert)
		if err != nil {
			return fmt.Errorf("--tls-cert: %w", err)
		}
		keyPEM, err := secret.ReadPrivateKey(*f.key)
		if err != nil {
			return fmt.Errorf("--tls-key: %w", err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	c.HTTP = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tc, TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout: 90 * time.Second, Proxy: http.ProxyFromEnvironment,
	}}
	return nil
}
