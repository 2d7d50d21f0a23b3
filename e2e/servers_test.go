//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// exchange is one HTTP request and its response as they crossed the tap.
type exchange struct {
	Conn          int64
	Method        string
	URI           string
	Status        int
	Location      string
	Link          string // the Link header (a tags/list page with more after it)
	ContentType   string
	ContentDigest string
	ContentLength string
	BodyBytes     int64
	Err           string // a response that could not be read
	// NotHTTP marks a connection on which the client spoke something else
	// (skopeo and podman try HTTPS first with --tls-verify=false); heron's
	// answer was passed on unparsed.
	NotHTTP bool
}

func (e exchange) String() string {
	if e.NotHTTP {
		return fmt.Sprintf("#%d (not HTTP: a TLS handshake?) -> heron's answer passed on unparsed", e.Conn)
	}
	s := fmt.Sprintf("#%d %s %s -> %d", e.Conn, e.Method, e.URI, e.Status)
	if e.ContentType != "" {
		s += " type=" + e.ContentType
	}
	if e.ContentDigest != "" {
		s += " digest=" + e.ContentDigest
	}
	if e.ContentLength != "" {
		s += " length=" + e.ContentLength
	}
	s += fmt.Sprintf(" body=%dB", e.BodyBytes)
	if e.Location != "" {
		s += " location=" + e.Location
	}
	if e.Link != "" {
		s += " link=" + e.Link
	}
	if e.Err != "" {
		s += " error=" + e.Err
	}
	return s
}

// tap is a transparent TCP proxy in front of heron serve: clients talk to
// it, it passes every byte through unchanged, and it reads a copy of both
// directions as HTTP/1.1 to record each exchange. That lets the suite see
// exactly what heron answered (a 307 or the bytes of a blob) without
// altering a single header the clients receive.
type tap struct {
	ln      net.Listener
	backend string
	conns   atomic.Int64
	active  atomic.Int64
	mu      sync.Mutex
	log     []exchange
}

func startTap(backend string) (*tap, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tp := &tap{ln: ln, backend: backend}
	go tp.serve()
	return tp, nil
}

func (tp *tap) addr() string { return tp.ln.Addr().String() }

func (tp *tap) close() error { return tp.ln.Close() }

func (tp *tap) serve() {
	for {
		c, err := tp.ln.Accept()
		if err != nil {
			return
		}
		tp.active.Add(1)
		go tp.handle(c.(*net.TCPConn))
	}
}

func (tp *tap) record(e exchange) {
	tp.mu.Lock()
	tp.log = append(tp.log, e)
	tp.mu.Unlock()
}

func (tp *tap) handle(client *net.TCPConn) {
	defer tp.active.Add(-1)
	id := tp.conns.Add(1)
	c, err := net.DialTimeout("tcp", tp.backend, 5*time.Second)
	if err != nil {
		client.Close()
		tp.record(exchange{Conn: id, Err: "tap: dial heron: " + err.Error()})
		return
	}
	server := c.(*net.TCPConn)
	reqR, reqW := io.Pipe()
	respR, respW := io.Pipe()
	reqs := make(chan *http.Request, 4096)
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { // client → heron
		defer wg.Done()
		_, _ = io.Copy(server, io.TeeReader(client, reqW))
		reqW.Close()
		_ = server.CloseWrite()
	}()
	go func() { // heron → client
		defer wg.Done()
		_, _ = io.Copy(client, io.TeeReader(server, respW))
		respW.Close()
		_ = client.CloseWrite()
	}()
	go func() { // parse requests
		defer wg.Done()
		defer close(reqs)
		br := bufio.NewReader(reqR)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				_, _ = io.Copy(io.Discard, br) // never block the proxy
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			req.Body.Close()
			reqs <- req
		}
	}()
	go func() { // parse responses, in request order
		defer wg.Done()
		br := bufio.NewReader(respR)
		drain := func() {
			go func() {
				for range reqs {
				}
			}()
			_, _ = io.Copy(io.Discard, br)
		}
		for {
			// Wait for heron to send something (or close), then for the
			// request it answers. The request is parsed before heron
			// receives its last byte, so it is there at once, unless the
			// client sent something that is not HTTP (a TLS ClientHello,
			// when a client tries HTTPS first): then pass the answer on
			// unparsed, never holding it back.
			if _, err := br.Peek(1); err != nil {
				drain()
				return
			}
			var req *http.Request
			select {
			case r, ok := <-reqs:
				if !ok {
					drain()
					return
				}
				req = r
			case <-time.After(2 * time.Second):
				tp.record(exchange{Conn: id, NotHTTP: true})
				drain()
				return
			}
			e := exchange{Conn: id, Method: req.Method, URI: req.RequestURI}
			resp, err := http.ReadResponse(br, req)
			for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 {
				resp, err = http.ReadResponse(br, req) // skip 100 Continue
			}
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					e.Err = err.Error()
				} else {
					e.Err = "no response (connection closed)"
				}
				tp.record(e)
				drain()
				return
			}
			e.Status = resp.StatusCode
			e.Location = resp.Header.Get("Location")
			e.Link = resp.Header.Get("Link")
			e.ContentType = resp.Header.Get("Content-Type")
			e.ContentDigest = resp.Header.Get("Docker-Content-Digest")
			e.ContentLength = resp.Header.Get("Content-Length")
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			e.BodyBytes = n
			if err != nil {
				e.Err = "body: " + err.Error()
			}
			tp.record(e)
			if err != nil {
				drain()
				return
			}
		}
	}()
	wg.Wait()
	client.Close()
	server.Close()
}

// quiet waits (at most 10 s) until no connection is open through the tap,
// so that every exchange of the client that just exited is recorded.
func (tp *tap) quiet() bool {
	deadline := time.Now().Add(10 * time.Second)
	for tp.active.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// mark returns the position of the next exchange to be recorded.
func (tp *tap) mark() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.log)
}

// since returns the exchanges recorded from mark on.
func (tp *tap) since(mark int) []exchange {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]exchange(nil), tp.log[mark:]...)
}

// hit is one request the CDN answered.
type hit struct {
	Method string
	Path   string
	Status int
	Bytes  int64
}

// cdn is the plain static file server of the redirect mode: it serves the
// tree's blobs/ folder (GET /blobs/<alg>/<hex>, with Range support, as
// http.FileServer does) and nothing else, like a CDN or a bucket would, and
// records every request so that the suite can check that blobs really came
// through the redirect.
type cdn struct {
	srv *http.Server
	ln  net.Listener
	mu  sync.Mutex
	log []hit
}

func startCDN(tree string) (*cdn, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &cdn{ln: ln}
	files := http.FileServer(http.Dir(tree))
	c.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
			if !strings.HasPrefix(r.URL.Path, "/blobs/") || strings.HasSuffix(r.URL.Path, "/") {
				http.NotFound(cw, r)
			} else {
				files.ServeHTTP(cw, r)
			}
			c.mu.Lock()
			c.log = append(c.log, hit{Method: r.Method, Path: r.URL.Path, Status: cw.status, Bytes: cw.n})
			c.mu.Unlock()
		}),
	}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

// base is the URL heron serve is told to redirect blobs to.
func (c *cdn) base() string { return "http://" + c.ln.Addr().String() }

func (c *cdn) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.srv.Shutdown(ctx)
}

func (c *cdn) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.log)
}

func (c *cdn) since(mark int) []hit {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]hit(nil), c.log[mark:]...)
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *countingWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// ReadFrom hides the ResponseWriter's io.ReaderFrom, so that every byte
// goes through Write and is counted.
func (w *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{w}, r)
}
