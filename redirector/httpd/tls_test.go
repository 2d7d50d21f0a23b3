package httpd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heron-registry/heron/internal/heronproc"
	"github.com/heron-registry/heron/internal/tlstest"
)

// tlsSetup writes a server certificate of a new CA into a folder and
// returns the Config fields for it.
type tlsSetup struct {
	ca               *tlstest.CA
	dir              string
	cert, key        string
	serial           int64
	clientCA, caFile string
}

func newTLSSetup(t testing.TB) *tlsSetup {
	t.Helper()
	s := &tlsSetup{ca: tlstest.NewCA(t, "heron test CA"), dir: t.TempDir()}
	s.cert, s.key = filepath.Join(s.dir, "tls.crt"), filepath.Join(s.dir, "tls.key")
	var c, k []byte
	c, k, s.serial = s.ca.Issue(t, "heron", true)
	tlstest.ReplaceFile(t, s.cert, c)
	tlstest.ReplaceFile(t, s.key, k)
	return s
}

// client returns a client that trusts s's CA, over HTTP/2 if h2, else
// HTTP/1.1 only, sending cert when given (even when the server's
// acceptable CAs do not list its issuer).
func (s *tlsSetup) client(h2 bool, cert ...tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(s.ca.Cert)
	tc := &tls.Config{RootCAs: pool}
	if len(cert) > 0 {
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert[0], nil }
	}
	tr := &http.Transport{
		TLSClientConfig:   tc,
		ForceAttemptHTTP2: h2,
		DisableKeepAlives: !h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// servedSerial returns the serial of the certificate addr serves.
func (s *tlsSetup) servedSerial(t testing.TB, addr string) int64 {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(s.ca.Cert)
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// waitSerial waits up to 10 s for addr to serve the certificate serial.
func (s *tlsSetup) waitSerial(t testing.TB, addr string, serial int64) {
	t.Helper()
	var got int64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = s.servedSerial(t, addr); got == serial {
			return
		}
	}
	t.Fatalf("serving the certificate of serial %d, want %d", got, serial)
}

// TestRunTLS serves a tree over HTTPS, HTTP/1.1 and HTTP/2, its
// operations endpoints beside it, counts the connections, and logs an
// https:// url.
func TestRunTLS(t *testing.T) {
	s := newTLSSetup(t)
	cfg := flagDefaults()
	cfg.TLSCert, cfg.TLSKey = s.cert, s.key
	r := start(t, emptyTree(t), cfg)
	if !strings.HasPrefix(r.URL, "https://") || r.OpsURL != r.URL {
		t.Errorf("serving line's url %q and ops %q, want one https:// url", r.URL, r.OpsURL)
	}
	for _, h2 := range []bool{false, true} {
		c := s.client(h2)
		resp, err := c.Get(r.URL + "/v2/")
		if err != nil {
			t.Fatalf("h2 %v: %v", h2, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := map[bool]int{false: 1, true: 2}[h2]; resp.StatusCode != 200 || string(body) != "{}" || resp.ProtoMajor != want || resp.TLS == nil {
			t.Errorf("GET /v2/ over HTTP/%d = %d %q, %s", want, resp.StatusCode, body, resp.Proto)
		}
		if h2 {
			// The HTTP/2 connection stays open: the gauge counts it.
			resp, err := c.Get(r.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), "heron_http_connections 1\n") {
				t.Errorf("over HTTP/2, /metrics has no heron_http_connections 1:\n%s", body)
			}
			c.CloseIdleConnections()
		}
	}
	// Plain HTTP on the TLS port gets no answer but net/http's 400.
	if resp, err := http.Get("http://" + r.Addr + "/v2/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP on the TLS port: %s", resp.Status)
		}
	}
	// TLS 1.1 is refused.
	if c, err := tls.Dial("tcp", r.Addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}
	if err := r.Stop(t, 15*time.Second); err != nil {
		t.Errorf("Run returned %v", err)
	}
}

// TestRunTLSMetricsAddrPlain keeps --metrics-addr on plain HTTP.
func TestRunTLSMetricsAddrPlain(t *testing.T) {
	s := newTLSSetup(t)
	cfg := flagDefaults()
	cfg.TLSCert, cfg.TLSKey = s.cert, s.key
	cfg.MetricsAddr = "127.0.0.1:0"
	r := start(t, emptyTree(t), cfg)
	if !strings.HasPrefix(r.URL, "https://") || !strings.HasPrefix(r.OpsURL, "http://") {
		t.Errorf("url %q, ops %q: want https:// and http://", r.URL, r.OpsURL)
	}
	resp, err := http.Get(r.OpsURL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /healthz on --metrics-addr: %s", resp.Status)
	}
}

// TestRunTLSReload replaces the certificate's files while Run serves:
// by a rename over them, then by the swap of a symbolic link to their
// folder as Kubernetes does; a pair that does not load is logged and the
// one before served on.
func TestRunTLSReload(t *testing.T) {
	s := newTLSSetup(t)
	// Kubernetes' layout: tls.crt -> ..data/tls.crt, ..data -> ..v1.
	k8s := t.TempDir()
	v1 := filepath.Join(k8s, "..v1")
	if err := os.Mkdir(v1, 0o700); err != nil {
		t.Fatal(err)
	}
	c, k, k8sSerial := s.ca.Issue(t, "heron", true)
	tlstest.ReplaceFile(t, filepath.Join(v1, "tls.crt"), c)
	tlstest.ReplaceFile(t, filepath.Join(v1, "tls.key"), k)
	for _, link := range [][2]string{{"..v1", "..data"}, {"..data/tls.crt", "tls.crt"}, {"..data/tls.key", "tls.key"}} {
		if err := os.Symlink(link[0], filepath.Join(k8s, link[1])); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name      string
		cert, key string
		serial    int64
		replace   func(t *testing.T, cert, key []byte)
	}{
		{"rename", s.cert, s.key, s.serial, func(t *testing.T, cert, key []byte) {
			// The key first: in between, the pair does not match.
			tlstest.ReplaceFile(t, s.key, key)
			tlstest.ReplaceFile(t, s.cert, cert)
		}},
		{"symlink swap", filepath.Join(k8s, "tls.crt"), filepath.Join(k8s, "tls.key"), k8sSerial, func(t *testing.T, cert, key []byte) {
			dir, err := os.MkdirTemp(k8s, "..v")
			if err != nil {
				t.Fatal(err)
			}
			tlstest.ReplaceFile(t, filepath.Join(dir, "tls.crt"), cert)
			tlstest.ReplaceFile(t, filepath.Join(dir, "tls.key"), key)
			tmp := filepath.Join(k8s, "..data_tmp")
			if err := os.Symlink(filepath.Base(dir), tmp); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(k8s, "..data")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := flagDefaults()
			cfg.TLSCert, cfg.TLSKey = tc.cert, tc.key
			r := start(t, emptyTree(t), cfg)
			if got := s.servedSerial(t, r.Addr); got != tc.serial {
				t.Fatalf("serving serial %d, want %d", got, tc.serial)
			}
			c, k, serial := s.ca.Issue(t, "heron", true)
			tc.replace(t, c, k)
			s.waitSerial(t, r.Addr, serial)
			if lines := r.Log.Lines(t, "tls: reloaded the certificate"); len(lines) == 0 || lines[len(lines)-1]["serial"] != fmt.Sprint(serial) {
				t.Errorf("reload log lines %v, want the last of serial %d", lines, serial)
			}

			// A certificate whose key is not there: logged, the old one
			// served on.
			bad, _, _ := s.ca.Issue(t, "heron", true)
			tc.replace(t, bad, k)
			deadline := time.Now().Add(10 * time.Second)
			for len(r.Log.Lines(t, "tls: the new files do not load; still serving the certificate loaded before")) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("no error logged for a mismatched pair:\n%s", r.Log)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if got := s.servedSerial(t, r.Addr); got != serial {
				t.Errorf("after a bad pair, serving serial %d, want the previous %d", got, serial)
			}
			resp, err := s.client(false).Get(r.URL + "/v2/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("GET /v2/ after a bad pair: %s", resp.Status)
			}
		})
	}
}

// TestTLSPoll reloads the files by their stat alone, as on a file system
// that sends no events.
func TestTLSPoll(t *testing.T) {
	s := newTLSSetup(t)
	cfg := Config{TLSCert: s.cert, TLSKey: s.key}
	log := &heronproc.LockedBuffer{}
	f, err := newTLSFiles(cfg, slog.New(slog.NewJSONHandler(log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if f.changed() {
		t.Error("changed right after the load")
	}
	f.pollInterval = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.loop(ctx, nil, nil) }()
	defer func() { cancel(); <-done }()
	c, k, serial := s.ca.Issue(t, "heron", true)
	tlstest.ReplaceFile(t, s.cert, c)
	tlstest.ReplaceFile(t, s.key, k)
	for deadline := time.Now().Add(10 * time.Second); f.current.Load().Leaf.SerialNumber.Int64() != serial; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not reloaded by the poll:\n%s", log)
		}
	}
}

// TestTLSClientCert serves a handler over TLS with --tls-client-ca and
// checks what reaches it: the verified chain of a client certificate,
// none without one; a certificate of another CA fails the handshake; a
// new CA file is read when it replaces the old one.
func TestTLSClientCert(t *testing.T) {
	s := newTLSSetup(t)
	clients := tlstest.NewCA(t, "clients")
	s.caFile = filepath.Join(s.dir, "clients.pem")
	tlstest.ReplaceFile(t, s.caFile, clients.PEM)
	cfg := flagDefaults()
	cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA = s.cert, s.key, s.caFile

	log := &heronproc.LockedBuffer{}
	logger := slog.New(slog.NewJSONHandler(log, nil))
	files, err := newTLSFiles(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer files.watch(ctx)()
	defer cancel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.TLS == nil:
			fmt.Fprint(w, "no TLS")
		case len(r.TLS.VerifiedChains) == 0:
			fmt.Fprint(w, "anonymous")
		default:
			fmt.Fprint(w, "user "+r.TLS.VerifiedChains[0][0].Subject.CommonName)
		}
	})
	var open atomic.Int64
	servers, err := cfg.listen(ctx, h, h, files, slog.NewLogLogger(logger.Handler(), slog.LevelWarn), &open)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- serveUntilDone(ctx, logger, time.Second, servers) }()
	defer func() { cancel(); <-served }()
	url := servers[0].url + "/v2/"

	get := func(c *http.Client) (string, error) {
		resp, err := c.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	for _, tc := range []struct {
		name  string
		h2    bool
		certs []tls.Certificate
		want  string
	}{
		{"no certificate", false, nil, "anonymous"},
		{"certificate, HTTP/1.1", false, []tls.Certificate{clients.ClientCert(t, "ci-bot")}, "user ci-bot"},
		{"certificate, HTTP/2", true, []tls.Certificate{clients.ClientCert(t, "alice")}, "user alice"},
		{"certificate of another CA", false, []tls.Certificate{tlstest.NewCA(t, "other").ClientCert(t, "mallory")}, ""},
		{"the server's CA is not the clients'", false, []tls.Certificate{s.ca.ClientCert(t, "eve")}, ""},
	} {
		got, err := get(s.client(tc.h2, tc.certs...))
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: answered %q, want a failed handshake", tc.name, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}

	// A client that resumes its TLS sessions (a new connection per
	// request).
	resuming := s.client(false, clients.ClientCert(t, "carol"))
	resuming.Transport.(*http.Transport).TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	for i := range 2 {
		resp, err := resuming.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if i == 1 && !resp.TLS.DidResume {
			t.Error("the session was not resumed; the test below tests nothing")
		}
	}

	// A new CA bundle replaces the old one.
	next := tlstest.NewCA(t, "clients 2")
	tlstest.ReplaceFile(t, s.caFile, next.PEM)
	c := s.client(false, next.ClientCert(t, "bob"))
	var got string
	for deadline := time.Now().Add(10 * time.Second); got != "user bob"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the new CA is not used: %q, %v\n%s", got, err, log)
		}
		got, err = get(c)
	}
	if _, err := get(s.client(false, clients.ClientCert(t, "ci-bot"))); err == nil {
		t.Error("a certificate of the replaced CA is still accepted")
	}
	// Nor by resuming a session of before.
	if got, err := get(resuming); err == nil {
		t.Errorf("a session resumed with a certificate of the replaced CA: %q", got)
	}
}

// TestTLSMaxConnections keeps --max-connections over TLS: a connection
// beyond the limit is not accepted (its handshake waits) until one closes.
func TestTLSMaxConnections(t *testing.T) {
	s := newTLSSetup(t)
	cfg := flagDefaults()
	cfg.TLSCert, cfg.TLSKey = s.cert, s.key
	cfg.MaxConnections = 1
	r := start(t, emptyTree(t), cfg)
	pool := x509.NewCertPool()
	pool.AddCert(s.ca.Cert)
	first, err := tls.Dial("tcp", r.Addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	second := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	raw.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if err := second.Handshake(); err == nil {
		t.Fatal("a second connection was accepted beyond --max-connections 1")
	}
	raw.Close()
	first.Close()
	raw2, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw2.Close()
	third := tls.Client(raw2, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	raw2.SetDeadline(time.Now().Add(10 * time.Second))
	if err := third.Handshake(); err != nil {
		t.Errorf("after the first connection closed: %v", err)
	}
}

// TestTLSErrors: a Config whose TLS files do not go together or do not
// load does not start, with an error naming the flag.
func TestTLSErrors(t *testing.T) {
	s := newTLSSetup(t)
	other, _, _ := s.ca.Issue(t, "other", true)
	mismatched := filepath.Join(s.dir, "other.crt")
	tlstest.ReplaceFile(t, mismatched, other)
	notPEM := filepath.Join(s.dir, "empty.pem")
	tlstest.ReplaceFile(t, notPEM, []byte("not a certificate\n"))
	missing := filepath.Join(s.dir, "missing.pem")
	for _, tc := range []struct {
		name              string
		cert, key, client string
		want              string
	}{
		{"cert alone", s.cert, "", "", "--tls-cert needs --tls-key"},
		{"key alone", "", s.key, "", "--tls-key needs --tls-cert"},
		{"client CA alone", "", "", s.cert, "--tls-client-ca needs --tls-cert and --tls-key"},
		{"missing cert", missing, s.key, "", "--tls-cert: open " + missing},
		{"missing key", s.cert, missing, "", "--tls-key: open " + missing},
		{"mismatched", mismatched, s.key, "", "--tls-cert " + mismatched + " and --tls-key " + s.key + ": tls: private key does not match public key"},
		{"not PEM", notPEM, s.key, "", "--tls-cert " + notPEM},
		{"client CA not PEM", s.cert, s.key, notPEM, "--tls-client-ca " + notPEM + ": no PEM certificate in it"},
		{"client CA missing", s.cert, s.key, missing, "--tls-client-ca: open " + missing},
	} {
		cfg := flagDefaults()
		cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA = tc.cert, tc.key, tc.client
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		err := Run(context.Background(), emptyTree(t), cfg)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want %q...", tc.name, err, tc.want)
		}
	}
}
