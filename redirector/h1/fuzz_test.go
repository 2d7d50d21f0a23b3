package h1

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// FuzzSameAnswers sends any bytes to a server that serves what it can on
// the loop, to one that hands every connection to net/http, and to a
// net/http Server alone, then closes its side, and wants the same answers
// from all three: as many, and each with the same status, fields (but
// Date) and body. A body net/http sends chunked may come with a length
// from the loop. heron closes a connection after a request with both
// Content-Length and Transfer-Encoding (RFC 9112, section 6.1), or after
// an answer before it: then only the answers both sent are compared.
func FuzzSameAnswers(f *testing.F) {
	file := testFile(f)
	h := testHandler(f, file)
	fast := startServer(f, h, true)
	slow := startServer(f, h, false)
	bare := startBare(f, h)
	for _, seed := range []string{
		"GET /v2/fixed HTTP/1.1\r\nHost: h\r\n\r\n",
		"HEAD /v2/file HTTP/1.1\r\nHost: h\r\nRange: bytes=1-2\r\n\r\n",
		"GET /v2/file HTTP/1.1\r\nHost: h\r\nRange: bytes=-0,3-4\r\n\r\nGET /v2/redirect HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v2/nolength HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /v2/fixed HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v2/sniff?a=%zz HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v2/x HTTP/1.1\r\nHost: a_b\r\n\r\n",
		"GET /v2/notmodified HTTP/1.1\r\nHost: [::1]:5000\r\nAccept: \xff\r\n\r\n",
		"POST /v2/fixed HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nxGET /v2/fixed HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v2/fixed HTTP/1.1\r\nHost: h\r\n",
		"\r\nGET /v2/fixed HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v2/fixed HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
		"GARBAGE\r\n",
		"GET /v2/fixed HTTP/1.1\r\nbad line\r\n",
		"GET /v2/fixed HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v2/fixed HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 16<<10 {
			return
		}
		var fs framingScanner
		fs.feed(raw)
		closes := fs.found.Load()
		loop := exchangeAll(t, "loop", fast.addr, raw)
		handing := exchangeAll(t, "handing over", slow.addr, raw)
		alone := exchangeAll(t, "net/http alone", bare, raw)
		sameAnswers(t, loop, handing, closes)
		sameAnswers(t, handing, alone, closes)
	})
}

// answers are what a server sent back on one connection.
type answers struct {
	name   string
	resps  []*http.Response
	bodies [][]byte
	err    error // why reading stopped
}

// sameAnswers compares the answers of two servers (see FuzzSameAnswers);
// with closes, a prefix of them.
func sameAnswers(t *testing.T, a, b answers, closes bool) {
	t.Helper()
	fr, fb, sr, sb := a.resps, a.bodies, b.resps, b.bodies
	// After the last whole request, bytes that do not make one and the
	// end of the stream get net/http's 400 or nothing, depending on
	// whether its background read saw the end first: that last answer
	// may be missing on either side.
	if len(fr) == len(sr)+1 && badRequest(fr[len(fr)-1], fb[len(fb)-1]) {
		fr, fb = fr[:len(sr)], fb[:len(sr)]
	} else if len(sr) == len(fr)+1 && badRequest(sr[len(sr)-1], sb[len(sb)-1]) {
		sr, sb = sr[:len(fr)], sb[:len(fr)]
	}
	if closes {
		n := min(len(fr), len(sr))
		fr, fb, sr, sb = fr[:n], fb[:n], sr[:n], sb[:n]
		if n > 0 {
			fr[n-1].Close, sr[n-1].Close = true, true
		}
	}
	if len(fr) != len(sr) {
		t.Fatalf("%s: %d answers (%v); %s: %d answers (%v)", a.name, len(fr), a.err, b.name, len(sr), b.err)
	}
	for i := range fr {
		if chunked(sr[i]) && !chunked(fr[i]) {
			sr[i].TransferEncoding, sr[i].ContentLength = nil, int64(len(sb[i]))
			sr[i].Header.Set("Content-Length", strconv.Itoa(len(sb[i])))
		}
		if got, want := describe(fr[i], fb[i]), describe(sr[i], sb[i]); got != want {
			t.Fatalf("answer %d:\n%s:\n%s\n%s:\n%s", i, a.name, got, b.name, want)
		}
	}
}

// exchangeAll writes raw, closes the writing side and reads answers until
// the server closes or one does not parse.
func exchangeAll(t *testing.T, name, addr string, raw []byte) answers {
	a := answers{name: name}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, a.err = c.Write(raw); a.err != nil {
		return a
	}
	c.(*net.TCPConn).CloseWrite()
	br := bufio.NewReader(c)
	for {
		// The method only matters for HEAD (no body): the answers come in
		// the order of the requests, whose methods are not parsed here;
		// the handler says each one's method in X-Method.
		resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			a.err = err
			return a
		}
		var body []byte
		if resp.Header.Get("X-Method") != http.MethodHead {
			body, err = io.ReadAll(resp.Body)
		}
		resp.Body.Close()
		a.resps = append(a.resps, resp)
		a.bodies = append(a.bodies, body)
		if err != nil {
			a.err = err
			return a
		}
	}
}

// badRequest reports whether r is net/http's answer to bytes that are not
// a request.
func badRequest(r *http.Response, body []byte) bool {
	return r.StatusCode == http.StatusBadRequest && r.Close && string(body) == "400 Bad Request"
}

func chunked(r *http.Response) bool {
	for _, te := range r.TransferEncoding {
		if te == "chunked" {
			return true
		}
	}
	return false
}
