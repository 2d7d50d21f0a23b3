// Package h1 is heron's HTTP/1.1 connection loop: it answers the requests
// a registry is pulled with (GET and HEAD, HTTP/1.1, no body) itself, with
// the same http.Handler, and hands every other connection to a net/http
// Server.
//
// Why it exists: on this kind of machine a net/http server that does
// nothing answers a 307 at about half the rate nginx does, and a loop that
// reads a request and writes an answer with one read and one write answers
// it at nginx's rate (docs/benchmarks.md, "The HTTP layer"). The
// difference is what net/http does per request for the sake of features a
// pull does not use: a goroutine reading in the background to notice a
// closed connection, a request body reader, a pooled buffered writer, a
// header parser for any input.
//
// What it keeps: the Handler (httprouter and heron's handlers, unchanged),
// the *http.Request and http.ResponseWriter types, net/http's answer for
// everything unusual. A request is served by the loop only when it is a
// GET or HEAD of an origin-form target the Server's FastPath accepts,
// with HTTP/1.1, exactly one Host, no body, no Expect, no Upgrade, a
// header block that fits in the read buffer and nothing net/http would
// parse differently (obsolete line folding, bare LF, a control
// character). Any other request, from its first byte, is handed with its
// connection to the net/http Server, which then owns that connection
// until it closes: write methods (405), bodies, HTTP/1.0, HTTP/2's
// preface, malformed or oversized requests get exactly net/http's
// answers.
//
// The responses follow net/http's rules (server.go, chunkWriter.writeHeader):
// a Content-Length computed for a body the handler finished writing, the
// Content-Type sniffed when the handler set none, a Date, no body and no
// length for 1xx, 204 and 304, chunked encoding for a long body of
// unknown length, the connection closed after a body shorter than its
// declared length, after "Connection: close", and on a handler's panic.
// Bodies of declared length are sent with sendfile when the handler copies
// a file (io.ReaderFrom), as net/http does.
//
// One difference a handler can see: the request's context is not canceled
// when the client goes away in the middle of a request (net/http notices
// it with its background read, which the loop does not have); it is
// canceled when the connection closes. A handler learns of a lost client
// from its next write, which fails.
package h1

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves HTTP/1.1 connections with the loop and hands the rest to
// HTTP.
type Server struct {
	// HTTP serves the connections the loop hands over. Its Handler,
	// ReadHeaderTimeout, ReadTimeout, IdleTimeout, WriteTimeout, ConnState
	// and ErrorLog apply to the loop's connections too. The first Serve,
	// Shutdown or Close wraps its Handler and ConnContext (see wrapHTTP).
	HTTP *http.Server
	// FastPath reports whether the loop may serve a request for this
	// target (the path and query as sent). Nil: any origin-form target.
	FastPath func(target string) bool
	// MaxConnections bounds the connections open at once, loop's and
	// net/http's together; Accept waits while it is reached. 0: no bound.
	// (netutil.LimitListener would hide *net.TCPConn's ReadFrom, and with
	// it sendfile, behind its wrapper.)
	MaxConnections int

	initOnce  sync.Once
	handler   http.Handler // HTTP's Handler as given, which the loop calls
	handoff   *handoffListener
	httpDone  chan error
	slots     chan struct{}
	shutting  atomic.Bool
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	connsDone sync.WaitGroup
}

// wrapHTTP wraps HTTP's Handler, for the connections handed to net/http,
// so that a request RFC 9112 says must close its connection (see
// framingScanner) is answered with "Connection: close", and its
// ConnContext, so that the Handler finds the handed connection. The loop
// calls the Handler as given.
func (s *Server) wrapHTTP() {
	s.handler = s.HTTP.Handler
	if s.handler == nil {
		s.handler = http.DefaultServeMux
	}
	inner := s.handler
	s.HTTP.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := r.Context().Value(handedConnKey{}).(*handedConn); ok && !r.Close && h.mustClose() {
			w.Header().Set("Connection", "close")
		}
		inner.ServeHTTP(w, r)
	})
	connContext := s.HTTP.ConnContext
	s.HTTP.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if connContext != nil {
			ctx = connContext(ctx, c)
		}
		if h, ok := c.(*handedConn); ok {
			ctx = context.WithValue(ctx, handedConnKey{}, h)
		}
		return ctx
	}
}

// handedConnKey is the context key of a handed connection.
type handedConnKey struct{}

// NoFastPath is a FastPath that serves nothing on the loop: every
// connection goes to net/http (heron serve --fast-path=false).
func NoFastPath(string) bool { return false }

// ErrServerClosed is what Serve returns after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

func (s *Server) init(addr net.Addr) {
	s.initOnce.Do(func() {
		s.wrapHTTP()
		s.handoff = newHandoffListener(addr)
		s.httpDone = make(chan error, 1)
		if s.MaxConnections > 0 {
			s.slots = make(chan struct{}, s.MaxConnections)
		}
		s.listeners = make(map[net.Listener]struct{})
		s.conns = make(map[*conn]struct{})
		go func() { s.httpDone <- s.HTTP.Serve(s.handoff) }()
	})
}

// Serve accepts connections on l and serves them until Shutdown or Close,
// when it returns ErrServerClosed. It may be called once per listener.
func (s *Server) Serve(l net.Listener) error {
	s.init(l.Addr())
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()

	var delay time.Duration // after a temporary Accept error, as net/http does
	for {
		if s.slots != nil {
			s.slots <- struct{}{}
		}
		rwc, err := l.Accept()
		if err != nil {
			if s.slots != nil {
				<-s.slots
			}
			if s.shutting.Load() {
				return ErrServerClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logf("http: Accept error: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := s.newConn(rwc)
		if c == nil {
			continue
		}
		go c.serve()
	}
}

// newConn registers a new connection, or closes it if the server is
// shutting down.
func (s *Server) newConn(rwc net.Conn) *conn {
	c := &conn{srv: s, rwc: rwc}
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		rwc.Close()
		s.release()
		return nil
	}
	s.conns[c] = struct{}{}
	s.connsDone.Add(1)
	s.mu.Unlock()
	c.setState(http.StateNew)
	return c
}

// forget unregisters c once its connection is closed or handed over.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.connsDone.Done()
}

// release frees a connection slot.
func (s *Server) release() {
	if s.slots != nil {
		<-s.slots
	}
}

// Shutdown stops accepting, closes the loop's idle connections, waits for
// its requests in flight to be answered, and shuts HTTP down (which does
// the same for the connections it was handed), all within ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init(nil)
	s.stopAccepting()
	httpErr := make(chan error, 1)
	go func() { httpErr <- s.HTTP.Shutdown(ctx) }()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !s.closeIdle() {
		select {
		case <-ctx.Done():
			<-httpErr
			return ctx.Err()
		case <-tick.C:
		}
	}
	s.connsDone.Wait()
	return <-httpErr
}

// Close closes every listener and connection at once.
func (s *Server) Close() error {
	s.init(nil)
	s.stopAccepting()
	s.mu.Lock()
	for c := range s.conns {
		c.rwc.Close()
	}
	s.mu.Unlock()
	return s.HTTP.Close()
}

func (s *Server) stopAccepting() {
	s.mu.Lock()
	s.shutting.Store(true)
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
}

// closeIdle closes the connections waiting for a request and reports
// whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.phase.CompareAndSwap(phaseIdle, phaseClosing) {
			c.rwc.Close()
		}
	}
	return len(s.conns) == 0
}

func (s *Server) logf(format string, args ...any) {
	if s.HTTP.ErrorLog != nil {
		s.HTTP.ErrorLog.Printf(format, args...)
	} else {
		log.Printf(format, args...)
	}
}

// Timeouts as net/http reads them: the idle and header timeouts default
// to ReadTimeout.
func (s *Server) idleTimeout() time.Duration {
	if s.HTTP.IdleTimeout != 0 {
		return s.HTTP.IdleTimeout
	}
	return s.HTTP.ReadTimeout
}

func (s *Server) readHeaderTimeout() time.Duration {
	if s.HTTP.ReadHeaderTimeout > 0 {
		return s.HTTP.ReadHeaderTimeout
	}
	return s.HTTP.ReadTimeout
}

// handoffListener is the listener HTTP serves: it yields the connections
// the loop hands over.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr {
	if l.addr == nil {
		return &net.TCPAddr{}
	}
	return l.addr
}

// deliver hands c to HTTP, or closes it if HTTP no longer accepts.
func (l *handoffListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}
