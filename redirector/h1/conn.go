package h1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// readBufferSize is the read buffer of a connection: a request whose
// header block does not fit is handed to net/http (which allows 1 MiB).
// Pull requests are a few hundred bytes; 4 KiB is net/http's own size.
const readBufferSize = 4 << 10

// Phases of a connection, for Shutdown: only an idle connection (waiting
// for a request) is closed by it.
const (
	phaseIdle int32 = iota
	phaseActive
	phaseClosing
)

// conn is one connection served by the loop.
type conn struct {
	srv        *Server
	rwc        net.Conn
	br         *bufio.Reader
	phase      atomic.Int32
	remoteAddr string
	ctx        context.Context
	out        []byte // the response being written: header, then body or its start
	handedOff  bool
	// header and respHeader are the request's and the response's fields,
	// reused from one request to the next: a handler does not keep them
	// past its return.
	header, respHeader http.Header
}

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}

func (c *conn) setState(state http.ConnState) {
	if hook := c.srv.HTTP.ConnState; hook != nil {
		hook(c.rwc, state)
	}
}

// serve reads and answers requests until the connection closes, fails or
// is handed over.
func (c *conn) serve() {
	c.remoteAddr = c.rwc.RemoteAddr().String()
	ctx, cancel := context.WithCancel(baseContext(c.srv, c.rwc))
	c.ctx = ctx
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(c.rwc)
	defer func() {
		cancel()
		if c.out != nil {
			putOut(c.out)
			c.out = nil
		}
		if !c.handedOff {
			c.br.Reset(nil)
			readerPool.Put(c.br)
			c.rwc.Close()
			c.srv.release()
			c.setState(http.StateClosed)
		}
		c.srv.forget(c)
	}()

	// The deadlines of net/http: the header timeout from the connection's
	// start for the first request; between requests the idle timeout for
	// the next one's first byte, then the header timeout for the rest.
	idle, header := c.srv.idleTimeout(), c.srv.readHeaderTimeout()
	deadline := false // a read deadline is set
	for first := true; ; first = false {
		if !first && c.br.Buffered() == 0 {
			if idle > 0 {
				c.rwc.SetReadDeadline(time.Now().Add(idle))
				deadline = true
			}
			if _, err := c.br.Peek(1); err != nil {
				return
			}
		}
		if header > 0 {
			c.rwc.SetReadDeadline(time.Now().Add(header))
			deadline = true
		} else if deadline {
			c.rwc.SetReadDeadline(time.Time{})
			deadline = false
		}
		if first {
			if _, err := c.br.Peek(1); err != nil {
				return
			}
		}
		if !c.phase.CompareAndSwap(phaseIdle, phaseActive) {
			return // closed by Shutdown
		}
		c.setState(http.StateActive)
		n, err := readHead(c.br)
		if err != nil {
			// A client too slow with its header block gets no answer, as
			// from net/http. One that closed its side in the middle of it
			// gets net/http's (a 400 for what it sent).
			var ne net.Error
			if c.br.Buffered() > 0 && !(errors.As(err, &ne) && ne.Timeout()) {
				c.handOff()
			}
			return
		}
		var req *http.Request
		if n > 0 {
			req = c.parse(c.peekHead(n))
		}
		if req == nil {
			c.handOff()
			return
		}
		c.br.Discard(n)
		if deadline {
			c.rwc.SetReadDeadline(time.Time{})
			deadline = false
		}
		if wt := c.srv.HTTP.WriteTimeout; wt > 0 {
			c.rwc.SetWriteDeadline(time.Now().Add(wt))
		}
		if !c.serveRequest(req) || c.srv.shutting.Load() {
			return
		}
		c.phase.Store(phaseIdle)
		c.setState(http.StateIdle)
	}
}

// peekHead returns the n bytes of the header block, still in the buffer.
func (c *conn) peekHead(n int) []byte {
	b, _ := c.br.Peek(n)
	return b
}

// readHead waits until the buffer holds a whole header block (through the
// empty line) and returns its length, or 0 if it does not fit in the
// buffer or has a line ended by a bare LF (net/http's to parse). The bytes
// stay in the buffer.
func readHead(br *bufio.Reader) (int, error) {
	scanned := 0
	for {
		buf, _ := br.Peek(br.Buffered())
		if n := headEnd(buf, scanned); n != 0 {
			return max(n, 0), nil
		}
		scanned = len(buf)
		if len(buf) >= br.Size() {
			return 0, nil
		}
		if _, err := br.Peek(len(buf) + 1); err != nil && err != bufio.ErrBufferFull {
			return 0, err
		}
	}
}

// headEnd returns the length of the header block ending with the first
// "\r\n\r\n" at or after from, 0 if there is none yet, or -1 if a line
// ends with a bare LF.
func headEnd(b []byte, from int) int {
	for i := from; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if i == 0 || b[i-1] != '\r' {
			return -1
		}
		if i >= 3 && b[i-3] == '\r' && b[i-2] == '\n' {
			return i + 1
		}
	}
	return 0
}

// handOff gives the connection, with the bytes read and not consumed, to
// the net/http Server.
func (c *conn) handOff() {
	buffered, _ := c.br.Peek(c.br.Buffered())
	h := &handedConn{Conn: c.rwc, buffered: append([]byte(nil), buffered...), srv: c.srv}
	c.br.Reset(nil)
	readerPool.Put(c.br)
	c.handedOff = true
	c.rwc.SetReadDeadline(time.Time{})
	c.setState(http.StateHijacked)
	c.srv.handoff.deliver(h)
}

// serveRequest runs the handler and finishes the response. It reports
// whether the connection may serve another request.
func (c *conn) serveRequest(req *http.Request) (keep bool) {
	w := newResponse(c, req)
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.srv.logf("http: panic serving %v: %v\n%s", c.remoteAddr, v, buf)
			}
			keep = false
		}
		w.release()
	}()
	c.srv.HTTP.Handler.ServeHTTP(w, req)
	return w.finish()
}

// baseContext is the context of a connection's requests, with the values
// net/http puts there.
func baseContext(s *Server, rwc net.Conn) context.Context {
	ctx := context.Background()
	if s.HTTP.BaseContext != nil {
		ctx = s.HTTP.BaseContext(s.handoff)
	}
	ctx = context.WithValue(ctx, http.ServerContextKey, s.HTTP)
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, rwc.LocalAddr())
	if s.HTTP.ConnContext != nil {
		ctx = s.HTTP.ConnContext(ctx, rwc)
	}
	return ctx
}

// handedConn is a connection handed to net/http: its reads first return
// what the loop had read and not consumed.
type handedConn struct {
	net.Conn
	buffered []byte
	srv      *Server
	once     sync.Once
}

func (h *handedConn) Read(p []byte) (int, error) {
	if len(h.buffered) > 0 {
		n := copy(p, h.buffered)
		h.buffered = h.buffered[n:]
		return n, nil
	}
	return h.Conn.Read(p)
}

// ReadFrom keeps sendfile for net/http's responses (it looks for
// io.ReaderFrom on the connection).
func (h *handedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := h.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{h.Conn}, r)
}

// CloseWrite lets net/http half-close the connection before it closes it,
// as it does for its own connections.
func (h *handedConn) CloseWrite() error {
	if cw, ok := h.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (h *handedConn) Close() error {
	err := h.Conn.Close()
	h.once.Do(h.srv.release)
	return err
}

// writerOnly hides every method but Write (so that io.Copy does not call
// ReadFrom again).
type writerOnly struct{ io.Writer }
