package h1

import (
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// bufferLimit is how much of a body of unknown length is kept to compute
// its Content-Length; past it, the body is sent chunked. (net/http's
// limit is 2 KiB with a 4 KiB writer; a larger one sends more JSON
// answers, such as a tags list of a few hundred tags, with a length.)
const bufferLimit = 64 << 10

// flushAt is the size of output at which a response in progress is
// written out.
const flushAt = 32 << 10

var outPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func getOut() []byte { return (*outPool.Get().(*[]byte))[:0] }

func putOut(b []byte) {
	if cap(b) > bufferLimit+flushAt {
		return // a rare large answer: let it go
	}
	b = b[:0]
	outPool.Put(&b)
}

// response is the http.ResponseWriter of a request the loop serves.
//
// Its output (c.out) is: the status line and the handler's header fields
// once WriteHeader is called, then at the commit the fields computed from
// the body (length, type, date, connection, transfer encoding) and the
// empty line, then the body. Until the commit, a body of unknown length
// is kept in body.
type response struct {
	c      *conn
	req    *http.Request
	header http.Header
	head   bool // a HEAD request: no body is sent

	status      int
	wroteHeader bool
	committed   bool
	declared    int64 // the handler's Content-Length, or -1
	written     int64 // body bytes the handler wrote
	body        []byte
	haveType    bool
	haveDate    bool
	encoded     bool // a Content-Encoding is set: no sniffing
	chunked     bool
	closeAfter  bool
	err         error // the first write error: the connection is lost
}

var responsePool = sync.Pool{New: func() any { return new(response) }}

func newResponse(c *conn, req *http.Request) *response {
	w := responsePool.Get().(*response)
	if c.respHeader == nil {
		c.respHeader = make(http.Header, 8)
	}
	clear(c.respHeader)
	*w = response{c: c, req: req, header: c.respHeader, head: req.Method == http.MethodHead, declared: -1, closeAfter: req.Close}
	if c.out == nil {
		c.out = getOut()
	}
	c.out = c.out[:0]
	return w
}

func (w *response) release() {
	if w.body != nil {
		putOut(w.body)
	}
	*w = response{}
	responsePool.Put(w)
}

var (
	_ http.ResponseWriter = (*response)(nil)
	_ http.Flusher        = (*response)(nil)
	_ io.ReaderFrom       = (*response)(nil)
	_ io.StringWriter     = (*response)(nil)
)

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if w.wroteHeader {
		w.c.srv.logf("http: superfluous response.WriteHeader call with status %d", code)
		return
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		// An interim answer: sent now, the real one comes later.
		out := appendStatusLine(w.c.out[:0], code)
		out = appendFields(out, w.header, nil)
		out = append(out, "\r\n"...)
		w.c.out = out[:0]
		w.send(out)
		return
	}
	w.wroteHeader = true
	w.status = code
	// The fields are read by their canonical names, as net/http's
	// response does (a handler's Header().Set canonicalizes them).
	if cl := headerValue(w.header["Content-Length"]); cl != "" {
		if v, err := strconv.ParseInt(strings.TrimSpace(cl), 10, 64); err == nil && v >= 0 {
			w.declared = v
		} else {
			w.c.srv.logf("http: invalid Content-Length of %q", cl)
			w.header.Del("Content-Length")
		}
	}
	if strings.EqualFold(headerValue(w.header["Connection"]), "close") {
		w.closeAfter = true
	}
	_, w.haveType = w.header["Content-Type"]
	_, w.haveDate = w.header["Date"]
	w.encoded = headerValue(w.header["Content-Encoding"]) != ""
	out := appendStatusLine(w.c.out, code)
	w.c.out = appendFields(out, w.header, suppressed(code))
}

func (w *response) bodyAllowed() bool { return bodyAllowed(w.status) }

func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !w.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	// Counted even when refused, as net/http counts it: the body is then
	// short of its length and the connection is closed after it.
	w.written += int64(len(p))
	if w.declared >= 0 && w.written > w.declared {
		return 0, http.ErrContentLength
	}
	if w.err != nil {
		return 0, w.err
	}
	if !w.committed {
		if w.declared < 0 && len(w.body)+len(p) <= bufferLimit {
			if !w.head || !w.haveType {
				if w.body == nil {
					w.body = getOut()
				}
				w.body = append(w.body, p...)
			}
			return len(p), nil
		}
		w.commit(false, p)
	}
	if w.head {
		return len(p), nil
	}
	w.appendBody(p)
	if len(w.c.out) >= flushAt {
		w.flushOut()
	}
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

func (w *response) WriteString(s string) (int, error) {
	// Handlers write JSON bytes; a string is rare enough to copy.
	return w.Write([]byte(s))
}

// appendBody appends p to the output, framed if the body is chunked.
func (w *response) appendBody(p []byte) {
	if w.chunked {
		w.c.out = strconv.AppendInt(w.c.out, int64(len(p)), 16)
		w.c.out = append(w.c.out, "\r\n"...)
		w.c.out = append(w.c.out, p...)
		w.c.out = append(w.c.out, "\r\n"...)
		return
	}
	w.c.out = append(w.c.out, p...)
}

// commit ends the header: the fields net/http computes, then the empty
// line, then what was kept of the body. done is true when the handler has
// returned, so that a kept body's length is its Content-Length. first is
// the body's first write when nothing was kept (for sniffing its type).
func (w *response) commit(done bool, first []byte) {
	w.committed = true
	out := w.c.out
	allowed := w.bodyAllowed()
	kept := w.body
	if done && allowed && w.declared < 0 && (!w.head || w.written > 0) {
		w.declared = w.written
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, w.written, 10)
		out = append(out, "\r\n"...)
	}
	sniff := kept
	if len(sniff) == 0 {
		sniff = first
	}
	if allowed && !w.haveType && !w.encoded && len(sniff) > 0 {
		out = append(out, "Content-Type: "...)
		out = append(out, http.DetectContentType(sniff)...)
		out = append(out, "\r\n"...)
	}
	if !w.haveDate {
		out = append(out, "Date: "...)
		out = append(out, httpDate()...)
		out = append(out, "\r\n"...)
	}
	if !w.head && allowed && w.status != http.StatusNoContent && w.declared < 0 {
		w.chunked = true
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	}
	if w.closeAfter || w.c.srv.shutting.Load() {
		w.closeAfter = true
		if !strings.EqualFold(headerValue(w.header["Connection"]), "close") {
			out = append(out, "Connection: close\r\n"...)
		}
	}
	out = append(out, "\r\n"...)
	w.c.out = out
	if len(kept) > 0 && !w.head {
		w.appendBody(kept)
	}
	if w.body != nil {
		putOut(w.body)
		w.body = nil
	}
}

// ReadFrom sends a body of declared length with the connection's ReadFrom
// (sendfile for a file), as net/http does.
func (w *response) ReadFrom(src io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	rf, ok := w.c.rwc.(io.ReaderFrom)
	if !ok || w.head || !w.bodyAllowed() || w.declared < 0 || !w.haveType || (w.committed && w.chunked) {
		return io.Copy(writerOnly{w}, src)
	}
	if !w.committed {
		w.commit(false, nil)
	}
	w.flushOut()
	if w.err != nil {
		return 0, w.err
	}
	left := w.declared - w.written
	// A *io.LimitedReader of an *os.File is what sendfile takes (io.CopyN
	// makes one); another one around it would hide the file.
	limited, ok := src.(*io.LimitedReader)
	if !ok || limited.N > left {
		limited = &io.LimitedReader{R: src, N: left}
	}
	n, err := rf.ReadFrom(limited)
	w.written += n
	if err != nil {
		w.err = err
		return n, err
	}
	if n == left {
		// What is left past the declared length is an error, as a Write
		// of it would be.
		var one [1]byte
		if m, _ := io.ReadFull(src, one[:]); m > 0 {
			return n, http.ErrContentLength
		}
	}
	return n, nil
}

// Flush sends what is written so far.
func (w *response) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(false, nil)
	}
	w.flushOut()
}

// flushOut writes the output to the connection.
func (w *response) flushOut() {
	if len(w.c.out) > 0 {
		w.send(w.c.out)
		w.c.out = w.c.out[:0]
	}
}

func (w *response) send(b []byte) {
	if w.err != nil {
		return
	}
	if _, err := w.c.rwc.Write(b); err != nil {
		w.err = err
	}
}

// finish completes the response after the handler returned and reports
// whether the connection may serve another request.
func (w *response) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(true, nil)
	}
	if w.chunked {
		w.c.out = append(w.c.out, "0\r\n\r\n"...)
	}
	w.flushOut()
	if !w.head && w.bodyAllowed() && w.declared >= 0 && w.written != w.declared {
		// A body shorter than its length: the client would wait for the
		// rest, or take the next answer for it.
		return false
	}
	return w.err == nil && !w.closeAfter
}

func bodyAllowed(status int) bool {
	switch {
	case status >= 100 && status <= 199:
		return false
	case status == http.StatusNoContent, status == http.StatusNotModified:
		return false
	}
	return true
}

// suppressed returns the fields not sent with a status that has no body.
func suppressed(status int) map[string]bool {
	switch {
	case status == http.StatusNotModified:
		return suppressed304
	case !bodyAllowed(status):
		return suppressedNoBody
	}
	return suppressedTE
}

var (
	suppressed304    = map[string]bool{"Content-Type": true, "Content-Length": true, "Transfer-Encoding": true}
	suppressedNoBody = map[string]bool{"Content-Length": true, "Transfer-Encoding": true}
	// The loop frames bodies itself: a handler's Transfer-Encoding is
	// dropped (net/http drops it too when a length is known, and chunks
	// otherwise).
	suppressedTE = map[string]bool{"Transfer-Encoding": true}
)

func appendStatusLine(b []byte, code int) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	return append(b, "\r\n"...)
}

// appendFields appends the header's fields as net/http writes them:
// sorted by name, names that are not tokens left out, line breaks in
// values made spaces, values trimmed.
func appendFields(b []byte, h http.Header, skip map[string]bool) []byte {
	var small [16]string
	keys := small[:0]
	for k := range h {
		if !skip[k] && validName(k) {
			keys = append(keys, k)
		}
	}
	sortStrings(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendValue(b, v)
			b = append(b, "\r\n"...)
		}
	}
	return b
}

func appendValue(b []byte, v string) []byte {
	v = textproto.TrimString(v)
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return b
}

func validName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isToken(k[i]) {
			return false
		}
	}
	return true
}

// sortStrings is an insertion sort: headers have a few fields.
func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// httpDate is the Date of an answer, formatted once a second.
func httpDate() []byte {
	now := time.Now()
	sec := now.Unix()
	if d := cachedDate.Load(); d != nil && d.sec == sec {
		return d.text
	}
	d := &dateText{sec: sec, text: now.UTC().AppendFormat(nil, http.TimeFormat)}
	cachedDate.Store(d)
	return d.text
}

type dateText struct {
	sec  int64
	text []byte
}

var cachedDate atomic.Pointer[dateText]

// headerValue is http.Header.Get of a canonical key's values.
func headerValue(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}
