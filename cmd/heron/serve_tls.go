package main

import (
	"github.com/heron-registry/heron/redirector/httpd"
	"github.com/spf13/pflag"
)

// addTLSFlags adds heron serve's TLS flags, which set c's TLS fields
// (docs/operating.md, "TLS"). httpd.Run checks that they go together and
// that the files load, naming the flag at fault.
func addTLSFlags(f *pflag.FlagSet, c *httpd.Config) {
	f.StringVar(&c.TLSCert, "tls-cert", "", "serve HTTPS on --addr with the certificate in this PEM file (the chain after it), reloaded when it changes; needs --tls-key (--metrics-addr stays plain HTTP)")
	f.StringVar(&c.TLSKey, "tls-key", "", "the private key of --tls-cert, a PEM file, reloaded with it")
	f.StringVar(&c.TLSClientCA, "tls-client-ca", "", "verify the certificates clients send with the CAs of this PEM file (reloaded when it changes); clients may send none")
}
