package main

import (
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/fluxforge/fluxforge/net/tlsconf"
)

// useTLS makes c's client use --cacert (the CA the cp's certificate must
// chain to; default the system's roots) and --cert/--key (a client
// certificate, for a cp that asks for one), once the flags are parsed.
// Without any of them the client is left as it is (https URLs still work
// with the system's roots).
func (c *cli) useTLS() error {
	if c.tlsDone {
		return nil
	}
	c.tlsDone = true
	if c.cacert == "" && c.cert == "" && c.key == "" {
		return nil
	}
	cfg, err := c.tlsConfig()
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	c.http.Transport = tr
	return nil
}

// tlsConfig is the client config of the TLS flags.
func (c *cli) tlsConfig() (*tls.Config, error) {
	if c.cacert == "" && c.cert == "" && c.key == "" {
		return nil, nil
	}
	cl, err := tlsconf.NewClient(c.cacert, c.cert, c.key)
	if err != nil {
		return nil, fmt.Errorf("%w (--cacert %q, --cert %q, --key %q)", err, c.cacert, c.cert, c.key)
	}
	return cl.Config(), nil
}
