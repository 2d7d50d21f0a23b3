package h1

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testHandler answers the paths the tests ask for, each exercising one
// rule of how a response is framed.
func testHandler(t testing.TB, file string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Method", r.Method)
		h.Set("X-Host", r.Host)
		h.Set("X-Uri", r.RequestURI)
		h.Set("X-Path", r.URL.Path)
		h.Set("X-Query", r.URL.RawQuery)
		h.Set("X-Escaped-Path", r.URL.EscapedPath())
		h.Set("X-Raw-Path", r.URL.RawPath)
		h.Set("X-Force-Query", fmt.Sprint(r.URL.ForceQuery))
		h.Set("X-Fragment", r.URL.Fragment)
		h.Set("X-Headers", fmt.Sprint(r.Header))
		h.Set("X-Accept", strings.Join(r.Header.Values("Accept"), "|"))
		h.Set("X-Close", fmt.Sprint(r.Close))
		h.Set("X-Proto", r.Proto)
		h.Set("X-Has-Host-Field", fmt.Sprint(r.Header["Host"] != nil))
		if r.Context().Value(http.ServerContextKey) == nil {
			h.Set("X-No-Server-In-Context", "1")
		}
		switch strings.TrimPrefix(r.URL.Path, "/v2") {
		case "/fixed":
			h.Set("Content-Type", "application/json")
			h.Set("Content-Length", "13")
			w.Write([]byte(`{"a":"fixed"}`))
		case "/nolength":
			h.Set("Content-Type", "application/json")
			w.Write([]byte(`{"a":`))
			w.Write([]byte(`"no length"}`))
		case "/sniff":
			w.Write([]byte("<html><body>hello</body></html>"))
		case "/notype":
			h["Content-Type"] = nil // present without a value: no sniffing
			w.Write([]byte("<html></html>"))
		case "/big":
			h.Set("Content-Type", "application/octet-stream")
			chunk := bytes.Repeat([]byte("0123456789abcdef"), 1024)
			for range 10 {
				w.Write(chunk)
			}
		case "/medium":
			h.Set("Content-Type", "application/octet-stream")
			w.Write(bytes.Repeat([]byte("x"), 10_000))
		case "/empty":
		case "/redirect":
			h.Set("Location", "http://cdn.example.com/blobs/sha256/abc")
			w.WriteHeader(http.StatusTemporaryRedirect)
		case "/notmodified":
			h.Set("Content-Type", "application/json")
			h.Set("Content-Length", "10")
			h.Set("Etag", `"x"`)
			w.WriteHeader(http.StatusNotModified)
		case "/nocontent":
			h.Set("Content-Length", "10")
			w.WriteHeader(http.StatusNoContent)
			if _, err := w.Write([]byte("x")); err != http.ErrBodyNotAllowed {
				t.Errorf("Write after 204: %v, want ErrBodyNotAllowed", err)
			}
		case "/toolong":
			h.Set("Content-Length", "3")
			w.WriteHeader(http.StatusOK)
			if _, err := w.Write([]byte("abcd")); err != http.ErrContentLength {
				t.Errorf("Write past Content-Length: %v, want ErrContentLength", err)
			}
			w.Write([]byte("abc"))
		case "/short":
			h.Set("Content-Length", "10")
			w.Write([]byte("abc"))
		case "/twice":
			w.WriteHeader(http.StatusAccepted)
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte("twice"))
		case "/file":
			f, err := os.Open(file)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			h.Set("Content-Type", "application/octet-stream")
			http.ServeContent(w, r, "", time.Time{}, f)
		case "/flush":
			w.Write([]byte("first;"))
			w.(http.Flusher).Flush()
			w.Write([]byte("second"))
		case "/newline":
			h.Set("X-Evil", "a\r\nX-Injected: 1")
			h.Set("Bad Name", "x")
			w.Write([]byte("ok"))
		case "/close":
			h.Set("Connection", "close")
			w.Write([]byte("closing"))
		case "/panic":
			panic("handler panic")
		case "/abort":
			panic(http.ErrAbortHandler)
		default:
			h.Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, "no %s\n", r.URL.Path)
		}
	})
}

// testServer is an h1.Server on 127.0.0.1 with a count of the connections
// handed to net/http.
type testServer struct {
	addr      string
	srv       *Server
	handedOff atomic.Int64
	open      atomic.Int64
	done      chan error
}

func startServer(t testing.TB, handler http.Handler, fast bool, configure ...func(*Server)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: ln.Addr().String(), done: make(chan error, 1)}
	hs := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       30 * time.Second,
		ErrorLog:          nil,
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				ts.open.Add(1)
			case http.StateHijacked:
				ts.handedOff.Add(1)
				ts.open.Add(-1)
			case http.StateClosed:
				ts.open.Add(-1)
			}
		},
	}
	hs.ErrorLog = discardLog()
	ts.srv = &Server{HTTP: hs, FastPath: func(target string) bool { return strings.HasPrefix(target, "/v2") }}
	if !fast {
		ts.srv.FastPath = NoFastPath
	}
	for _, c := range configure {
		c(ts.srv)
	}
	go func() { ts.done <- ts.srv.Serve(ln) }()
	t.Cleanup(func() {
		ts.srv.Close()
		if err := <-ts.done; err != ErrServerClosed {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ts
}

// startBare starts a plain net/http Server with handler, configured as
// startServer configures the HTTP of its Server: the reference the loop
// and its hand-off are held to.
func startBare(t testing.TB, handler http.Handler, configure ...func(*http.Server)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second, ErrorLog: discardLog()}
	for _, c := range configure {
		c(hs)
	}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	t.Cleanup(func() {
		hs.Close()
		<-done
	})
	return ln.Addr().String()
}

// exchange writes raw to a new connection and reads n responses.
func exchange(t testing.TB, addr, raw string, methods ...string) ([]*http.Response, [][]byte, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var resps []*http.Response
	var bodies [][]byte
	for _, m := range methods {
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			return resps, bodies, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return resps, bodies, err
		}
		resps = append(resps, resp)
		bodies = append(bodies, body)
	}
	return resps, bodies, nil
}

// describe is what a client can tell of a response: its status, its fields
// (but Date), whether it is chunked, its body.
func describe(resp *http.Response, body []byte) string {
	var b strings.Builder
	header := resp.Header.Clone()
	// A multipart body's boundary is random.
	if _, boundary, ok := strings.Cut(header.Get("Content-Type"), "boundary="); ok {
		header.Set("Content-Type", strings.ReplaceAll(header.Get("Content-Type"), boundary, "BOUNDARY"))
		body = bytes.ReplaceAll(body, []byte(boundary), []byte("BOUNDARY"))
	}
	fmt.Fprintf(&b, "%s %s\n", resp.Proto, resp.Status)
	keys := make([]string, 0, len(header))
	for k := range header {
		if k != "Date" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %q\n", k, header[k])
	}
	fmt.Fprintf(&b, "length %d, chunked %v, close %v\n%q", resp.ContentLength, slices.Contains(resp.TransferEncoding, "chunked"), resp.Close, body)
	return b.String()
}

func testFile(t testing.TB) string {
	file := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(file, bytes.Repeat([]byte("0123456789"), 100_000), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestSameAnswers sends each request to a server that serves it on the
// loop and to one that hands every connection to net/http, and wants the
// same answer from both, and from the right one of the two paths.
func TestSameAnswers(t *testing.T) {
	file := testFile(t)
	h := testHandler(t, file)
	fast := startServer(t, h, true)
	slow := startServer(t, h, false)
	bare := startBare(t, h)
	get := func(path string, fields ...string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: registry.example.com\r\n" + strings.Join(fields, "") + "\r\n"
	}
	tests := []struct {
		name    string
		raw     string
		methods []string
		handed  bool // the loop must hand this connection to net/http
		// chunkedByNetHTTP: net/http chunks a body of unknown length past
		// 2 KiB, the loop gives it a length up to 64 KiB.
		chunkedByNetHTTP bool
		// closeBy: heron closes the connection after at most this many
		// answers (the request that has both Content-Length and
		// Transfer-Encoding), where net/http alone answers every request
		// (RFC 9112, section 6.1). The answers it sends are net/http's.
		closeBy int
	}{
		{name: "fixed length", raw: get("/v2/fixed", "Accept: application/json\r\n", "accept: text/plain\r\n")},
		{name: "no length", raw: get("/v2/nolength")},
		{name: "sniffed type", raw: get("/v2/sniff")},
		{name: "type present without value", raw: get("/v2/notype")},
		{name: "big body, chunked", raw: get("/v2/big")},
		{name: "medium body", raw: get("/v2/medium"), chunkedByNetHTTP: true},
		{name: "empty", raw: get("/v2/empty")},
		{name: "redirect", raw: get("/v2/redirect")},
		{name: "not modified", raw: get("/v2/notmodified")},
		{name: "no content", raw: get("/v2/nocontent")},
		{name: "too long a write", raw: get("/v2/toolong")},
		{name: "superfluous WriteHeader", raw: get("/v2/twice")},
		{name: "file", raw: get("/v2/file")},
		{name: "file range", raw: get("/v2/file", "Range: bytes=10-19\r\n")},
		{name: "file ranges", raw: get("/v2/file", "Range: bytes=10-19,30-39\r\n")},
		{name: "file range past the end", raw: get("/v2/file", "Range: bytes=2000000-\r\n")},
		{name: "flush", raw: get("/v2/flush")},
		{name: "line breaks in a value, bad name", raw: get("/v2/newline")},
		{name: "handler closes", raw: get("/v2/close")},
		{name: "not found", raw: get("/v2/nothing?x=1&y=%2F")},
		{name: "query and escapes", raw: get("/v2/a%20b/c?n=10&last=x%2Fy")},
		{name: "HEAD fixed", raw: strings.Replace(get("/v2/fixed"), "GET", "HEAD", 1), methods: []string{"HEAD"}},
		{name: "HEAD no length", raw: strings.Replace(get("/v2/nolength"), "GET", "HEAD", 1), methods: []string{"HEAD"}},
		{name: "HEAD empty", raw: strings.Replace(get("/v2/empty"), "GET", "HEAD", 1), methods: []string{"HEAD"}},
		{name: "HEAD file", raw: strings.Replace(get("/v2/file"), "GET", "HEAD", 1), methods: []string{"HEAD"}},
		{name: "HEAD redirect", raw: strings.Replace(get("/v2/redirect"), "GET", "HEAD", 1), methods: []string{"HEAD"}},
		{name: "connection close", raw: get("/v2/fixed", "Connection: close\r\n")},
		{name: "connection keep-alive", raw: get("/v2/fixed", "Connection: Keep-Alive\r\n")},
		{name: "pipelined", raw: get("/v2/fixed") + get("/v2/nolength") + strings.Replace(get("/v2/file"), "GET", "HEAD", 1) + get("/v2/redirect"),
			methods: []string{"GET", "GET", "HEAD", "GET"}},
		{name: "whitespace around values", raw: get("/v2/fixed", "Accept: \t a/b \t\r\n")},
		{name: "empty value", raw: get("/v2/fixed", "Accept:\r\n")},

		// Handed to net/http, from their first byte.
		{name: "POST with a body", raw: "POST /v2/fixed HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", handed: true},
		{name: "GET with a body", raw: "GET /v2/fixed HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" + get("/v2/nolength"), methods: []string{"GET", "GET"}, handed: true},
		{name: "chunked body", raw: "GET /v2/fixed HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", handed: true},
		{name: "expect", raw: get("/v2/fixed", "Expect: 100-continue\r\n"), handed: true},
		{name: "upgrade", raw: get("/v2/fixed", "Connection: Upgrade\r\n", "Upgrade: h2c\r\n"), handed: true},
		{name: "HTTP/1.0", raw: "GET /v2/fixed HTTP/1.0\r\n\r\n", handed: true},
		{name: "HTTP/1.0 keep-alive", raw: "GET /v2/fixed HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + "GET /v2/nolength HTTP/1.0\r\n\r\n", methods: []string{"GET", "GET"}, handed: true},
		{name: "no Host", raw: "GET /v2/fixed HTTP/1.1\r\n\r\n", handed: true},
		{name: "two Hosts", raw: "GET /v2/fixed HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", handed: true},
		{name: "bare LF", raw: "GET /v2/fixed HTTP/1.1\nHost: h\n\n", handed: true},
		{name: "obsolete line folding", raw: get("/v2/fixed", "Accept: a\r\n", " b\r\n"), handed: true},
		{name: "space before colon", raw: get("/v2/fixed", "Accept : a\r\n"), handed: true},
		{name: "control character", raw: get("/v2/fixed", "Accept: a\x01b\r\n"), handed: true},
		{name: "absolute form", raw: "GET http://h/v2/fixed HTTP/1.1\r\nHost: h\r\n\r\n", handed: true},
		{name: "asterisk", raw: "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", handed: true},
		{name: "lower-case method", raw: "get /v2/fixed HTTP/1.1\r\nHost: h\r\n\r\n", handed: true},
		{name: "other path", raw: get("/metrics"), handed: true},
		{name: "big header block", raw: get("/v2/fixed", "Authorization: Bearer "+strings.Repeat("t", 6000)+"\r\n"), handed: true},
		{name: "too big a header block", raw: get("/v2/fixed", "X-Big: "+strings.Repeat("t", 2<<20)+"\r\n"), handed: true},
		{name: "fast, then handed", raw: get("/v2/fixed") + "POST /v2/nolength HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi" + get("/v2/redirect"),
			methods: []string{"GET", "POST", "GET"}, handed: true},
		{name: "garbage", raw: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", handed: true},
		{name: "HTTP/2 preface", raw: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", handed: true},
		{name: "garbage line", raw: "GARBAGE\r\n\r\n", handed: true},
		{name: "bad field line", raw: "GET /v2/fixed HTTP/1.1\r\nbad line\r\n\r\n", handed: true},

		// RFC 9112, section 6.1: a request with both a length and a
		// transfer coding may be smuggling another; the server MUST close
		// the connection after answering it. net/http does not.
		{name: "Content-Length and Transfer-Encoding", raw: "GET /v2/fixed HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get("/v2/nolength"),
			methods: []string{"GET", "GET"}, handed: true, closeBy: 1},
		{name: "Content-Length and Transfer-Encoding, after a pull", raw: get("/v2/fixed") + "POST /v2/fixed HTTP/1.1\r\nHost: h\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n" + get("/v2/nolength"),
			methods: []string{"GET", "POST", "GET"}, handed: true, closeBy: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			methods := tt.methods
			if methods == nil {
				methods = []string{strings.Fields(tt.raw)[0]}
			}
			before := fast.handedOff.Load()
			fr, fb, ferr := exchange(t, fast.addr, tt.raw, methods...)
			sr, sb, serr := exchange(t, slow.addr, tt.raw, methods...)
			if handed := fast.handedOff.Load() > before; handed != tt.handed {
				t.Errorf("handed to net/http: %v, want %v", handed, tt.handed)
			}
			// Both answer as net/http alone does, but for the connection
			// they must close.
			br, bb, berr := exchange(t, bare, tt.raw, methods...)
			for _, side := range []struct {
				name string
				r    []*http.Response
				b    [][]byte
				err  error
			}{{"loop", fr, fb, ferr}, {"handing over", sr, sb, serr}} {
				want, wantBody, wantErr := br, bb, berr
				if tt.closeBy > 0 {
					n := len(side.r)
					if side.err == nil || berr != nil || n == 0 || n > tt.closeBy || !side.r[n-1].Close {
						t.Fatalf("%s: %d responses (%v), want 1 to %d, the last one closing; net/http alone: %d responses (%v)", side.name, n, side.err, tt.closeBy, len(br), berr)
					}
					want, wantBody, wantErr = slices.Clone(br[:n]), bb[:n], side.err
					last := *want[n-1]
					last.Close = true
					want[n-1] = &last
				}
				if (side.err == nil) != (wantErr == nil) || len(side.r) != len(want) {
					t.Fatalf("%s: %d responses, %v; net/http alone: %d responses, %v", side.name, len(side.r), side.err, len(want), wantErr)
				}
				for i := range side.r {
					if tt.chunkedByNetHTTP && side.name == "loop" {
						continue // compared with the other side below
					}
					if got, want := describe(side.r[i], side.b[i]), describe(want[i], wantBody[i]); got != want {
						t.Errorf("response %d:\n%s:\n%s\nnet/http alone:\n%s", i, side.name, got, want)
					}
				}
			}
			if tt.closeBy > 0 {
				return
			}
			if (ferr == nil) != (serr == nil) || len(fr) != len(sr) {
				t.Fatalf("loop: %d responses, %v; net/http: %d responses, %v", len(fr), ferr, len(sr), serr)
			}
			for i := range fr {
				if tt.chunkedByNetHTTP {
					sr[i].TransferEncoding, sr[i].ContentLength = nil, int64(len(sb[i]))
					sr[i].Header.Set("Content-Length", fmt.Sprint(len(sb[i])))
				}
				if got, want := describe(fr[i], fb[i]), describe(sr[i], sb[i]); got != want {
					t.Errorf("response %d:\nloop:\n%s\nnet/http:\n%s", i, got, want)
				}
			}
		})
	}
}

// TestServedByLoop checks what the handler sees of a request the loop
// serves.
func TestServedByLoop(t *testing.T) {
	s := startServer(t, testHandler(t, testFile(t)), true)
	rs, _, err := exchange(t, s.addr, "GET /v2/fixed?n=1 HTTP/1.1\r\nHost: registry.example.com:5000\r\nAccept: a\r\nACCEPT: b\r\n\r\n", "GET")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"X-Method": "GET", "X-Host": "registry.example.com:5000", "X-Uri": "/v2/fixed?n=1", "X-Path": "/v2/fixed",
		"X-Query": "n=1", "X-Accept": "a|b", "X-Close": "false", "X-Proto": "HTTP/1.1", "X-Has-Host-Field": "false",
		"X-No-Server-In-Context": "",
	}
	for k, v := range want {
		if got := rs[0].Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if got := s.handedOff.Load(); got != 0 {
		t.Errorf("%d connections handed to net/http, want 0", got)
	}
	if d := rs[0].Header.Get("Date"); d == "" {
		t.Error("no Date")
	} else if _, err := http.ParseTime(d); err != nil {
		t.Errorf("Date %q: %v", d, err)
	}
}

// TestKeepAliveAndClose checks that the loop keeps a connection open
// between requests, and closes it after "Connection: close" (the
// client's or the handler's), after a body shorter than its length and
// after a panic (http.ErrAbortHandler's too).
func TestKeepAliveAndClose(t *testing.T) {
	s := startServer(t, testHandler(t, testFile(t)), true)
	for _, tt := range []struct {
		path, fields string
		closed       bool
	}{
		{"/v2/fixed", "", false},
		{"/v2/fixed", "Connection: close\r\n", true},
		{"/v2/short", "", true},
		{"/v2/panic", "", true},
		{"/v2/abort", "", true},
		{"/v2/close", "", true},
	} {
		t.Run(tt.path+" "+strings.TrimSpace(tt.fields), func(t *testing.T) {
			c, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: h\r\n%s\r\n", tt.path, tt.fields)
			br := bufio.NewReader(c)
			if resp, err := http.ReadResponse(br, nil); err == nil {
				io.Copy(io.Discard, resp.Body)
			}
			// Then either the server closes (EOF, or a reset) or the
			// connection stays open (the short deadline passes).
			c.SetReadDeadline(time.Now().Add(time.Second))
			_, err = br.ReadByte()
			var ne net.Error
			open := errorsAs(err, &ne) && ne.Timeout()
			if open == tt.closed {
				t.Errorf("closed: %v, want %v (%v)", !open, tt.closed, err)
			}
		})
	}
}

func errorsAs(err error, target *net.Error) bool {
	ne, ok := err.(net.Error)
	if ok {
		*target = ne
	}
	return ok
}

// TestShutdown checks that Shutdown closes idle connections, lets a
// request in flight finish and stops Serve.
func TestShutdown(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/slow" {
			close(started)
			<-release
		}
		w.Write([]byte("done"))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{HTTP: &http.Server{Handler: h, ErrorLog: discardLog()}}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()

	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprint(idle, "GET /v2/x HTTP/1.1\r\nHost: h\r\n\r\n")
	br := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}

	busy, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	fmt.Fprint(busy, "GET /v2/slow HTTP/1.1\r\nHost: h\r\n\r\n")
	<-started

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()

	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("idle connection: read %v, want EOF (closed by Shutdown)", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("request in flight: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "done" || !resp.Close {
		t.Errorf("request in flight: %q, close %v; want \"done\", close true", body, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; err != ErrServerClosed {
		t.Errorf("Serve: %v, want ErrServerClosed", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener still accepts after Shutdown")
	}
}

// TestMaxConnections checks that a connection beyond the bound waits until
// another closes, whichever way it is served.
func TestMaxConnections(t *testing.T) {
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast=%v", fast), func(t *testing.T) {
			s := startServer(t, testHandler(t, testFile(t)), fast, func(s *Server) { s.MaxConnections = 1 })
			first, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprint(first, "GET /v2/fixed HTTP/1.1\r\nHost: h\r\n\r\n")
			if _, err := http.ReadResponse(bufio.NewReader(first), nil); err != nil {
				t.Fatal(err)
			}
			second, err := net.Dial("tcp", s.addr) // queued by the kernel, not accepted
			if err != nil {
				t.Fatal(err)
			}
			defer second.Close()
			fmt.Fprint(second, "GET /v2/fixed HTTP/1.1\r\nHost: h\r\n\r\n")
			second.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			br := bufio.NewReader(second)
			if _, err := br.Peek(1); err == nil {
				t.Fatal("a second connection was answered while the first was open")
			}
			first.Close()
			second.SetReadDeadline(time.Now().Add(5 * time.Second))
			if resp, err := http.ReadResponse(br, nil); err != nil {
				t.Fatalf("second connection after the first closed: %v", err)
			} else if resp.StatusCode != 200 {
				t.Errorf("second connection: %s", resp.Status)
			}
		})
	}
}

// TestConcurrentClients runs real net/http clients against the loop, with
// keep-alive, and checks every answer.
func TestConcurrentClients(t *testing.T) {
	file := testFile(t)
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, testHandler(t, file), true)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				path := []string{"/v2/fixed", "/v2/file", "/v2/big", "/v2/redirect", "/v2/nolength"}[(g+i)%5]
				req, _ := http.NewRequest("GET", "http://"+s.addr+path, nil)
				if path == "/v2/file" && i%2 == 0 {
					req.Header.Set("Range", "bytes=100-199")
				}
				resp, err := client.Transport.RoundTrip(req)
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					errs <- err
					return
				}
				switch {
				case path == "/v2/file" && i%2 == 0 && !bytes.Equal(body, want[100:200]):
					errs <- fmt.Errorf("range: got %d bytes", len(body))
				case path == "/v2/file" && i%2 == 1 && !bytes.Equal(body, want):
					errs <- fmt.Errorf("file: got %d bytes", len(body))
				case path == "/v2/big" && len(body) != 160<<10:
					errs <- fmt.Errorf("big: got %d bytes", len(body))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := s.handedOff.Load(); got != 0 {
		t.Errorf("%d connections handed to net/http, want 0", got)
	}
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

// TestTimeouts checks net/http's deadlines on the loop: a connection that
// sends nothing is closed after the header timeout (not the idle one), a
// request whose headers come too slowly gets no answer, and an idle
// connection between requests is closed after the idle timeout.
func TestTimeouts(t *testing.T) {
	s := startServer(t, testHandler(t, testFile(t)), true, func(s *Server) {
		s.HTTP.ReadHeaderTimeout = 100 * time.Millisecond
		s.HTTP.IdleTimeout = 1500 * time.Millisecond
	})
	closedWithin := func(c net.Conn, br *bufio.Reader, d time.Duration) bool {
		c.SetReadDeadline(time.Now().Add(d))
		_, err := br.ReadByte()
		var ne net.Error
		return !(errorsAs(err, &ne) && ne.Timeout())
	}
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}

	silent, br := dial()
	if closedWithin(silent, br, 50*time.Millisecond) {
		t.Error("a silent connection was closed before the header timeout")
	}
	if !closedWithin(silent, br, time.Second) {
		t.Error("a silent connection was not closed soon after the header timeout (the idle timeout applied?)")
	}

	slow, br := dial()
	fmt.Fprint(slow, "GET /v2/fixed HTTP/1.1\r\nHost: h\r\n")
	if !closedWithin(slow, br, 3*time.Second) {
		t.Error("a request with unfinished headers was not dropped after the header timeout")
	}

	idle, br := dial()
	fmt.Fprint(idle, "GET /v2/fixed HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	if closedWithin(idle, br, 700*time.Millisecond) {
		t.Error("an idle connection was closed before the idle timeout (after the header timeout?)")
	}
	if !closedWithin(idle, br, 3*time.Second) {
		t.Error("an idle connection was not closed after the idle timeout")
	}
}

// TestHeaderDeadline holds the loop, and a server that hands every
// connection over, to net/http alone on requests whose header block is
// unfinished, malformed or never ends: the same bytes back, at the same
// moment. A malformed line is answered at once (not after the header
// timeout); the header timeout runs from the connection's start whoever
// reads the header block, so that handing a connection over (a bare LF, a
// block larger than the loop's buffer, another method) does not give a
// trickling client a second timeout.
func TestHeaderDeadline(t *testing.T) {
	const timeout = 400 * time.Millisecond
	h := testHandler(t, testFile(t))
	set := func(hs *http.Server) { hs.ReadHeaderTimeout = timeout }
	servers := []struct{ name, addr string }{
		{"loop", startServer(t, h, true, func(s *Server) { set(s.HTTP) }).addr},
		{"handing over", startServer(t, h, false, func(s *Server) { set(s.HTTP) }).addr},
		{"net/http alone", startBare(t, h, set)},
	}
	// trickle sends valid lines for 300 ms (the loop waits for more),
	// then what makes it hand the connection over, then a byte every
	// 100 ms: the server must close at the header timeout from the start,
	// not a header timeout after the hand-over.
	trickle := func(start, handOver string) []string {
		parts := []string{start, "X-A: a\r\n", "X-B: b\r\n", handOver}
		for range 15 {
			parts = append(parts, "t")
		}
		return parts
	}
	badRequest := "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"
	tests := []struct {
		name  string
		parts []string // sent 100 ms apart, until the server closes
		at    bool     // answered at once, rather than at the timeout
		want  string
	}{
		{name: "garbage line", parts: []string{"GARBAGE\r\n"}, at: true, want: badRequest},
		{name: "bad field line", parts: []string{"GET /v2/fixed HTTP/1.1\r\nbad line\r\n"}, at: true, want: badRequest},
		{name: "space before a colon", parts: []string{"GET /v2/fixed HTTP/1.1\r\nHost : h\r\n"}},
		{name: "request line cut short", parts: []string{"GET /v2/fi"}, want: badRequest},
		{name: "header block cut short", parts: []string{"GET /v2/fixed HTTP/1.1\r\nHost: h\r\n"}},
		{name: "field cut short", parts: []string{"GET /v2/fixed HTTP/1.1\r\nHost: h\r\nAccept: a"}},
		{name: "bare LF, trickled", parts: trickle("GET /v2/fixed HTTP/1.1\r\nHost: h\r\n", "X-C: c\nX-T: ")},
		{name: "block over the buffer, trickled", parts: trickle("GET /v2/fixed HTTP/1.1\r\nHost: h\r\n", "X-Big: "+strings.Repeat("t", 6000))},
		{name: "POST, trickled", parts: trickle("POST /v2/fixed HTTP/1.1\r\nHost: h\r\n", "X-T: ")},
		{name: "HTTP/1.0, trickled", parts: trickle("GET /v2/fixed HTTP/1.0\r\n", "X-T: ")},
	}
	type result struct {
		got     string
		elapsed time.Duration
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			results := make([]result, len(servers))
			var wg sync.WaitGroup
			for i, s := range servers {
				wg.Go(func() {
					start := time.Now()
					c, err := net.Dial("tcp", s.addr)
					if err != nil {
						t.Error(err)
						return
					}
					defer c.Close()
					done := make(chan struct{})
					go func() {
						defer close(done)
						for _, p := range tt.parts {
							if _, err := io.WriteString(c, p); err != nil {
								return
							}
							select {
							case <-time.After(100 * time.Millisecond):
							case <-done:
							}
						}
					}()
					c.SetReadDeadline(time.Now().Add(5 * time.Second))
					got, _ := io.ReadAll(c)
					results[i] = result{string(got), time.Since(start)}
					c.Close()
					<-done
				})
			}
			wg.Wait()
			for i, s := range servers {
				r := results[i]
				if r.got != tt.want {
					t.Errorf("%s answered %q, want %q", s.name, r.got, tt.want)
				}
				switch {
				case tt.at && r.elapsed > timeout/2:
					t.Errorf("%s answered after %v, want at once (net/http alone: %v)", s.name, r.elapsed, results[2].elapsed)
				// The upper bound only tells a timeout applied from none
				// (the client's 5 s deadline): a loaded machine answers
				// late (net/http alone took 1.75× the timeout once).
				case !tt.at && (r.elapsed < timeout*3/4 || r.elapsed > timeout*4):
					t.Errorf("%s closed after %v, want about the header timeout, %v (net/http alone: %v)", s.name, r.elapsed, timeout, results[2].elapsed)
				}
			}
		})
	}
}
