package main

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heron-registry/heron/internal/tlstest"
	"github.com/heron-registry/heron/layout"
)

// writeServerCert writes a server certificate of a new CA for 127.0.0.1
// into dir and returns the CA and the files.
func writeServerCert(t *testing.T, dir string) (ca *tlstest.CA, cert, key string) {
	t.Helper()
	ca = tlstest.NewCA(t, "heron test CA")
	c, k, _ := ca.Issue(t, "heron", true)
	cert, key = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	tlstest.ReplaceFile(t, cert, c)
	tlstest.ReplaceFile(t, key, k)
	return ca, cert, key
}

// TestServeTLS serves over HTTPS with the TLS flags, the client CA from
// the environment, and answers a client that sends a certificate.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	writeLayoutFile(t, dir, layout.EncodeLayoutFile())
	ca, cert, key := writeServerCert(t, t.TempDir())
	clients := tlstest.NewCA(t, "clients")
	caFile := filepath.Join(t.TempDir(), "clients.pem")
	tlstest.ReplaceFile(t, caFile, clients.PEM)
	t.Setenv("HERON_TLS_CLIENT_CA", caFile)
	s := startServe(t, "--root", dir, "--addr", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
	if s.URL != "https://"+s.Addr {
		t.Errorf("serving url %q, want https://%s", s.URL, s.Addr)
	}
	cc := clients.ClientCert(t, "ci")
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cc}},
		ForceAttemptHTTP2: true,
	}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(s.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "{}" || resp.ProtoMajor != 2 || len(resp.TLS.PeerCertificates) == 0 {
		t.Errorf("GET /v2/ = %d %q over %s", resp.StatusCode, body, resp.Proto)
	}
	if err := s.Stop(t, 15*time.Second); err != nil {
		t.Errorf("serve ended with %v", err)
	}
}

// TestServeTLSErrors: TLS flags that do not go together, or files that do
// not load, stop heron serve with an error naming the flag.
func TestServeTLSErrors(t *testing.T) {
	good := t.TempDir()
	writeLayoutFile(t, good, layout.EncodeLayoutFile())
	certs := t.TempDir()
	_, cert, key := writeServerCert(t, certs)
	unreadable := filepath.Join(certs, "unreadable.key")
	tlstest.ReplaceFile(t, unreadable, []byte("x"))
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	if f, err := os.Open(unreadable); err == nil {
		f.Close()
		unreadable = filepath.Join(certs, "missing.key") // as root: a file that is not there
	}
	for _, tc := range []struct {
		Description string
		Args        []string
		Want        string
	}{
		{"cert without key", []string{"--tls-cert", cert}, "--tls-cert needs --tls-key"},
		{"key without cert", []string{"--tls-key", key}, "--tls-key needs --tls-cert"},
		{"client CA without cert", []string{"--tls-client-ca", cert}, "--tls-client-ca needs --tls-cert and --tls-key"},
		{"unreadable key", []string{"--tls-cert", cert, "--tls-key", unreadable}, "--tls-key: open " + unreadable},
		{"key for the cert", []string{"--tls-cert", key, "--tls-key", key}, "--tls-cert " + key + " and --tls-key " + key + ": tls:"},
	} {
		t.Run(tc.Description, func(t *testing.T) {
			cmd := newRootCmd()
			cmd.SetArgs(append([]string{"serve", "--root", good, "--addr", "127.0.0.1:0"}, tc.Args...))
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := cmd.ExecuteContext(ctx)
			if err == nil || !strings.HasPrefix(err.Error(), tc.Want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error = %v, want one line starting %q", err, tc.Want)
			}
		})
	}
}
