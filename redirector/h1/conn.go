package h1

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
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
	// req, url and values the request, its URL and the values of its
	// fields, reused from one request to the next: a handler does not
	// keep them past its return. base is the request every one starts
	// from: empty, with the connection's context.
	header, respHeader http.Header
	req, base          *http.Request
	url                url.URL
	values             []string
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
	c.base = (&http.Request{}).WithContext(ctx)
	c.req = new(http.Request)
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
	// A deadline costs a timer's update in the runtime, so it is set on
	// the socket only when a read may wait for it: the header deadline
	// only when the header block is not in the buffer whole; the idle
	// one only when the one set is older than a tenth of the timeout (an
	// idle connection is closed between nine tenths of the idle timeout
	// and the whole of it after its last answer); neither is cleared
	// while a handler runs, which reads nothing.
	idle, header := c.srv.idleTimeout(), c.srv.readHeaderTimeout()
	var set time.Time // the read deadline on the socket (zero: none)
	setDeadline := func(t time.Time) {
		if !t.Equal(set) {
			c.rwc.SetReadDeadline(t)
			set = t
		}
	}
	for first := true; ; first = false {
		var headerDeadline time.Time
		switch {
		case first:
			if header > 0 {
				headerDeadline = time.Now().Add(header)
			}
			setDeadline(headerDeadline)
			if _, err := c.br.Peek(1); err != nil {
				return
			}
		case c.br.Buffered() == 0:
			if idle <= 0 {
				setDeadline(time.Time{})
			} else if now := time.Now(); set.IsZero() || set.Before(now.Add(idle-idle/10)) {
				setDeadline(now.Add(idle))
			}
			if _, err := c.br.Peek(1); err != nil {
				return
			}
			fallthrough
		default:
			if header > 0 {
				headerDeadline = time.Now().Add(header)
			}
		}
		if !c.phase.CompareAndSwap(phaseIdle, phaseActive) {
			return // closed by Shutdown
		}
		c.setState(http.StateActive)
		n, err := 0, error(nil)
		if buf, _ := c.br.Peek(c.br.Buffered()); headEnd(buf, 0) > 0 {
			n = headEnd(buf, 0) // whole: no read, no deadline
		} else {
			setDeadline(headerDeadline)
			n, err = readHead(c.br)
		}
		if err != nil {
			// A client that closed its side, or was too slow, in the
			// middle of its header block gets net/http's answer for what
			// it sent (a 400, or nothing): net/http reads the bytes the
			// loop has, then the end of the stream or, its first deadline
			// being the passed headerDeadline, a timeout. Nothing sent:
			// nothing to answer.
			if c.br.Buffered() > 0 {
				c.handOff(headerDeadline)
			}
			return
		}
		var req *http.Request
		if n > 0 {
			req = c.parse(c.peekHead(n))
		}
		if req == nil {
			c.handOff(headerDeadline)
			return
		}
		c.br.Discard(n)
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
// empty line) and returns its length. It returns 0 as soon as the request
// is net/http's to parse: a line ended by a bare LF, a block that does not
// fit in the buffer, or a whole line (of a block not whole yet) that the
// loop would refuse, such as a request line that is not a GET or HEAD of
// HTTP/1.1 or a malformed field line: net/http then answers at once, as it
// does alone, rather than after the header timeout. The bytes stay in the
// buffer.
func readHead(br *bufio.Reader) (int, error) {
	scanned, checked := 0, 0
	for {
		buf, _ := br.Peek(br.Buffered())
		if n := headEnd(buf, scanned); n != 0 {
			return max(n, 0), nil
		}
		scanned = len(buf)
		var ok bool
		if checked, ok = checkLines(buf, checked); !ok {
			return 0, nil
		}
		if len(buf) >= br.Size() {
			return 0, nil
		}
		if _, err := br.Peek(len(buf) + 1); err != nil && err != bufio.ErrBufferFull {
			return 0, err
		}
	}
}

// checkLines checks the whole lines of an unfinished header block b from
// offset from (the start of a line) as parse does, and returns the offset
// after the last one checked, and false if one would be refused. Lines end
// with CRLF (headEnd has refused bare LFs).
func checkLines(b []byte, from int) (int, bool) {
	for {
		i := bytes.IndexByte(b[from:], '\n')
		if i < 0 {
			return from, true
		}
		line := b[from : from+i-1]
		if bytes.IndexByte(line, '\r') >= 0 {
			return from, false
		}
		if from == 0 {
			if _, _, ok := requestLine(line); !ok {
				return from, false
			}
		} else if _, _, ok := fieldLine(line); !ok {
			return from, false
		}
		from += i + 1
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
// the net/http Server. headerDeadline is when the header block of the
// request being read is due (zero: no header timeout): net/http's own
// header deadline for that request is capped to it, so that the header
// timeout runs from the connection's start (or the request's first byte)
// whoever reads the header block, as with net/http alone.
func (c *conn) handOff(headerDeadline time.Time) {
	buffered, _ := c.br.Peek(c.br.Buffered())
	h := &handedConn{Conn: c.rwc, buffered: append([]byte(nil), buffered...), srv: c.srv, deadline: headerDeadline}
	c.br.Reset(nil)
	readerPool.Put(c.br)
	c.handedOff = true
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
	c.srv.handler.ServeHTTP(w, req)
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
// what the loop had read and not consumed. It caps net/http's first read
// deadline to the loop's header deadline (see handOff), and watches the
// bytes net/http reads for requests it must close after (see framing).
type handedConn struct {
	net.Conn
	buffered []byte
	srv      *Server
	once     sync.Once

	mu       sync.Mutex
	deadline time.Time // the loop's header deadline; zero once applied
	capped   bool      // SetReadDeadline has been called

	framing framingScanner
}

func (h *handedConn) Read(p []byte) (n int, err error) {
	if len(h.buffered) > 0 {
		n = copy(p, h.buffered)
		h.buffered = h.buffered[n:]
	} else {
		n, err = h.Conn.Read(p)
	}
	h.framing.feed(p[:n])
	return n, err
}

// SetReadDeadline is the connection's, but for net/http's first call (the
// header deadline of the request the loop handed over), which is capped to
// the loop's header deadline.
func (h *handedConn) SetReadDeadline(t time.Time) error {
	h.mu.Lock()
	if !h.capped {
		h.capped = true
		if d := h.deadline; !d.IsZero() && (t.IsZero() || t.After(d)) {
			t = d
		}
	}
	h.mu.Unlock()
	return h.Conn.SetReadDeadline(t)
}

// mustClose reports whether a request net/http read on this connection
// must be answered with "Connection: close" (see framingScanner).
func (h *handedConn) mustClose() bool { return h.framing.found.Load() }

// framingScanner watches the bytes of a connection for a request that
// RFC 9112 (section 6.1) says the server MUST close the connection after
// answering, which net/http answers and keeps the connection open after:
// one with both Content-Length and Transfer-Encoding (which may smuggle
// another request), and an HTTP/1.0 one with Transfer-Encoding (whose
// framing is faulty). The scanner sees every line as it passes, bodies
// included: a body that looks like such a header block only makes the
// connection close after the response in progress, which a server may
// always do, and pipelined requests read ahead may close it after an
// earlier response, which is as safe.
type framingScanner struct {
	line   [len("transfer-encoding:")]byte // the start of the line, in lower case
	n      int                             // bytes of the line so far, at most len(line)+1
	tail   [len("HTTP/1.0\r")]byte         // the end of the line
	first  bool                            // the line is a block's first (the request line)
	http10 bool                            // the block's request line ends with HTTP/1.0
	cl, te bool                            // seen in the current block
	found  atomic.Bool
}

// feed scans p, the next bytes of the connection. It looks at each line's
// first len(line) bytes and last len(tail) bytes only, and finds the ends
// of lines with bytes.IndexByte, so that a large body (a blob pushed)
// costs little more than a search for '\n'.
func (s *framingScanner) feed(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.scan(p)
			return
		}
		s.scan(p[:i])
		s.endLine()
		p = p[i+1:]
	}
}

// scan takes in seg, a part of a line without its '\n'.
func (s *framingScanner) scan(seg []byte) {
	j := 0
	for ; j < len(seg) && s.n < len(s.line); j++ {
		b := seg[j]
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		s.line[s.n] = b
		s.n++
		switch {
		case s.n == len("content-length:") && string(s.line[:s.n]) == "content-length:":
			s.cl = true
		case s.n == len("transfer-encoding:") && string(s.line[:s.n]) == "transfer-encoding:":
			s.te = true
		}
	}
	if j < len(seg) && s.n == len(s.line) {
		s.n++ // the line is longer than its start
	}
	if len(seg) >= len(s.tail) {
		copy(s.tail[:], seg[len(seg)-len(s.tail):])
	} else {
		copy(s.tail[:], s.tail[len(seg):])
		copy(s.tail[len(s.tail)-len(seg):], seg)
	}
}

// endLine takes in a '\n'.
func (s *framingScanner) endLine() {
	switch {
	case s.n == 0 || (s.n == 1 && s.line[0] == '\r'):
		// An empty line: the end of a header block, or a line before
		// the request line.
		if s.te && (s.cl || s.http10) {
			s.found.Store(true)
		}
		s.cl, s.te, s.http10 = false, false, false
		s.first = true
	case s.first:
		end := s.tail[:]
		if end[len(end)-1] == '\r' {
			end = end[1:]
		} else {
			end = end[:len(end)-1]
		}
		s.http10 = string(end) == "HTTP/1.0"
		s.first = false
	}
	s.n = 0
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
