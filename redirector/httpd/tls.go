package httpd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// tlsPollInterval is how often the TLS files are stat'ed, in case their
// folder sends no events (NFS, some FUSE and overlay file systems).
const tlsPollInterval = time.Minute

// tlsDebounce is how long a reload waits after a file event for the
// others of the same change (certbot and Kubernetes write several files).
const tlsDebounce = 100 * time.Millisecond

// tlsMaxDelay bounds the time from the first event of a burst to the
// reload.
const tlsMaxDelay = time.Second

// tlsFiles serves the certificate of --tls-cert and --tls-key and the
// client CAs of --tls-client-ca, and reloads them when the files change:
// certificates are rotated (cert-manager, certbot) while heron runs. A
// change is seen through file-system events on the files' folders (files
// are replaced by a rename, or by the swap of a symbolic link as
// Kubernetes does for mounted secrets) and, as a fallback, by a stat of
// the files every pollInterval. A new pair or CA bundle that fails to
// load (a key that does not match, a file half written) is logged, and
// the one loaded before goes on being served.
type tlsFiles struct {
	cert, key, clientCA string
	logger              *slog.Logger
	pollInterval        time.Duration

	current atomic.Pointer[tls.Certificate]
	// perClient is the configuration of a handshake when there is a
	// client CA bundle: base's, with the bundle loaded last.
	perClient atomic.Pointer[tls.Config]
	base      *tls.Config

	mu     sync.Mutex             // serializes reloads
	stamps map[string]os.FileInfo // of each file, when last read
	tried  [sha256.Size]byte      // of the contents last tried
}

// tlsFlagsError is the error of Config's TLS fields that do not go
// together, naming the flags.
func (c Config) tlsFlagsError() error {
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		return errors.New("--tls-cert needs --tls-key (the certificate's private key)")
	case c.TLSKey != "" && c.TLSCert == "":
		return errors.New("--tls-key needs --tls-cert (the certificate of the key)")
	case c.TLSClientCA != "" && c.TLSCert == "":
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key: client certificates are asked for over TLS only")
	}
	return nil
}

// newTLSFiles loads c's TLS files, or returns an error naming the flag at
// fault. It returns nil, nil when c asks for no TLS.
func newTLSFiles(c Config, logger *slog.Logger) (*tlsFiles, error) {
	if err := c.tlsFlagsError(); err != nil {
		return nil, err
	}
	if c.TLSCert == "" {
		return nil, nil
	}
	t := &tlsFiles{
		cert: c.TLSCert, key: c.TLSKey, clientCA: c.TLSClientCA,
		logger:       logger,
		pollInterval: tlsPollInterval,
	}
	t.base = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: t.getCertificate,
	}
	if t.clientCA != "" {
		// Callers without a certificate may still authenticate with a
		// password or a token; a certificate they send must verify.
		t.base.ClientAuth = tls.VerifyClientCertIfGiven
		t.base.GetConfigForClient = t.getConfigForClient
	}
	if _, err := t.load(); err != nil {
		return nil, err
	}
	return t, nil
}

// config is the tls.Config of the registry's listener.
func (t *tlsFiles) config() *tls.Config { return t.base }

func (t *tlsFiles) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return t.current.Load(), nil
}

func (t *tlsFiles) getConfigForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	return t.perClient.Load(), nil
}

// files are the files t reads.
func (t *tlsFiles) files() []string {
	if t.clientCA != "" {
		return []string{t.cert, t.key, t.clientCA}
	}
	return []string{t.cert, t.key}
}

// load reads the files and, when their contents differ from those last
// tried, makes them current. It reports whether it did, and returns an
// error naming the flag at fault when they do not load.
func (t *tlsFiles) load() (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	stamps := make(map[string]os.FileInfo, 3)
	contents := make([][]byte, 0, 3)
	for _, f := range []struct{ flag, name string }{{"--tls-cert", t.cert}, {"--tls-key", t.key}, {"--tls-client-ca", t.clientCA}} {
		if f.name == "" {
			continue
		}
		// Stat before reading: a change after the stat is seen by the next
		// poll at worst.
		if fi, err := os.Stat(f.name); err == nil {
			stamps[f.name] = fi
		}
		b, err := os.ReadFile(f.name)
		if err != nil {
			return false, fmt.Errorf("%s: %w", f.flag, err)
		}
		contents = append(contents, b)
	}
	t.stamps = stamps
	sum := sha256.Sum256(bytes.Join(contents, []byte{0}))
	if sum == t.tried && t.current.Load() != nil {
		return false, nil
	}
	t.tried = sum
	pair, err := tls.X509KeyPair(contents[0], contents[1])
	if err != nil {
		return false, fmt.Errorf("--tls-cert %s and --tls-key %s: %w", t.cert, t.key, err)
	}
	var pool *x509.CertPool
	if t.clientCA != "" {
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(contents[2]) {
			return false, fmt.Errorf("--tls-client-ca %s: no PEM certificate in it", t.clientCA)
		}
	}
	t.current.Store(&pair)
	if pool != nil {
		pc := t.base.Clone()
		pc.GetConfigForClient = nil
		pc.ClientCAs = pool
		t.perClient.Store(pc)
	}
	return true, nil
}

// changed reports whether a file's stat differs from the one of its last
// read (another file, size or modification time).
func (t *tlsFiles) changed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range t.files() {
		fi, err := os.Stat(f)
		old, ok := t.stamps[f]
		if err != nil || !ok {
			if err == nil || ok {
				return true
			}
			continue
		}
		if !os.SameFile(fi, old) || !fi.ModTime().Equal(old.ModTime()) || fi.Size() != old.Size() {
			return true
		}
	}
	return false
}

// reload loads the files and logs what came of it.
func (t *tlsFiles) reload(why string) {
	loaded, err := t.load()
	switch {
	case err != nil:
		t.logger.Error("tls: the new files do not load; still serving the certificate loaded before", "err", err, "seen", why)
	case loaded:
		leaf := t.current.Load().Leaf
		t.logger.Info("tls: reloaded the certificate", "subject", leaf.Subject.String(), "serial", leaf.SerialNumber.String(), "notAfter", leaf.NotAfter, "seen", why)
	}
}

// watch starts watching the files' folders and returns once it does; the
// files are reloaded when they change until ctx ends, and stop waits for
// that.
func (t *tlsFiles) watch(ctx context.Context) (stop func()) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.logger.Warn("tls: cannot watch the certificate's files; they are checked every "+t.pollInterval.String(), "err", err)
	} else {
		for _, dir := range t.dirs() {
			if err := w.Add(dir); err != nil {
				t.logger.Warn("tls: cannot watch a folder; its files are checked every "+t.pollInterval.String(), "dir", dir, "err", err)
			}
		}
		events, errs = w.Events, w.Errors
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if w != nil {
			defer w.Close()
		}
		t.loop(ctx, events, errs)
	}()
	return func() { <-done }
}

// loop reloads the files after events (once they stop for tlsDebounce)
// and when a poll finds them changed, until ctx ends.
func (t *tlsFiles) loop(ctx context.Context, events <-chan fsnotify.Event, errs <-chan error) {
	poll := time.NewTicker(t.pollInterval)
	defer poll.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	var first time.Time // of the events not yet acted on (zero: none)
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			// Each event postpones the reload, but by no more than
			// tlsMaxDelay in all: a folder that never stops changing does
			// not postpone it for ever.
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			if now.Sub(first) < tlsMaxDelay {
				debounce.Reset(tlsDebounce)
			}
		case err := <-errs:
			t.logger.Warn("tls: watching the certificate's files", "err", err)
		case <-debounce.C:
			first = time.Time{}
			t.reload("event")
		case <-poll.C:
			if t.changed() {
				t.reload("poll")
			}
		}
	}
}

// dirs are the folders to watch: each file's, and the folder of what it
// links to (certbot's live/ links to archive/).
func (t *tlsFiles) dirs() []string {
	seen := map[string]bool{}
	var dirs []string
	add := func(p string) {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		if d := filepath.Dir(p); !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	for _, f := range t.files() {
		add(f)
		if real, err := filepath.EvalSymlinks(f); err == nil {
			add(real)
		}
	}
	return dirs
}

// tlsServer serves an http.Server over TLS: net/http answers every
// request, over HTTP/1.1 or HTTP/2 as the client's ALPN chooses, and sets
// r.TLS on each (heron's loop is for plain HTTP only, docs/benchmarks.md
// "TLS").
type tlsServer struct{ *http.Server }

// Serve implements server: the certificate comes from the Server's
// TLSConfig.
func (s tlsServer) Serve(l net.Listener) error { return s.ServeTLS(l, "", "") }

// limitListener is a listener that accepts at most n connections open at
// once (--max-connections over TLS, where the loop, which keeps the limit
// over plain HTTP, does not run and a wrapper hides no sendfile).
type limitListener struct {
	net.Listener
	slots chan struct{}
	done  chan struct{}
	once  sync.Once
}

func newLimitListener(l net.Listener, n int) net.Listener {
	if n <= 0 {
		return l
	}
	return &limitListener{Listener: l, slots: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn frees its slot when it is first closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
