package h1

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
)

// parse returns the request of a header block (request line, header
// fields, empty line; every line ended by CRLF), or nil when the loop must
// not serve it: then net/http parses it again from its first byte and
// answers it, whatever it is.
func (c *conn) parse(head []byte) *http.Request {
	line, rest, ok := cutLine(head)
	if !ok {
		return nil
	}
	method, target, ok := requestLine(line)
	if !ok {
		return nil
	}
	// One string for the whole block: the target and every value are
	// parts of it (one allocation instead of one per field).
	block := string(head)
	uri := part(block, head, target)
	if c.srv.FastPath != nil && !c.srv.FastPath(uri) {
		return nil
	}
	if !parseTarget(uri, &c.url) {
		return nil
	}

	if c.header == nil {
		c.header = make(http.Header, 8)
	}
	h := c.header
	clear(h)
	values := c.values[:0]
	if n := bytes.Count(rest, []byte("\n")); cap(values) < n {
		values = make([]string, 0, n)
	}
	var host string
	hosts := 0
	closing := false
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return nil
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := fieldLine(line)
		if !ok {
			return nil
		}
		key := canonicalKey(name)
		switch key {
		case "Host":
			hosts++
			host = part(block, head, value)
			continue
		case "Content-Length", "Transfer-Encoding", "Expect", "Upgrade", "Te", "Trailer", "Http2-Settings":
			// A body, an interim answer, another protocol: net/http's.
			return nil
		case "Connection":
			switch {
			case asciiEqualFold(value, "close"):
				closing = true
			case asciiEqualFold(value, "keep-alive"):
			default:
				return nil
			}
		}
		v := part(block, head, value)
		if prev := h[key]; prev != nil {
			h[key] = append(prev, v)
		} else {
			values = append(values, v)
			h[key] = values[len(values)-1 : len(values) : len(values)]
		}
	}
	if hosts != 1 || !validHost(host) {
		return nil
	}
	c.values = values
	// The connection's request, reused: a handler does not keep it past
	// its return. Copied from base, which carries the context, so that
	// whatever a handler set on the last one is gone.
	r := c.req
	*r = *c.base
	r.Method = method
	r.URL = &c.url
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.Header = h
	r.Body = http.NoBody
	r.Host = host
	r.RemoteAddr = c.remoteAddr
	r.RequestURI = uri
	r.Close = closing
	return r
}

// requestLine splits a request line the loop serves: "GET " or "HEAD ",
// an origin-form target of visible ASCII, " HTTP/1.1".
func requestLine(line []byte) (method string, target []byte, ok bool) {
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		method, line = http.MethodGet, line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		method, line = http.MethodHead, line[5:]
	default:
		return "", nil, false
	}
	target, ok = bytes.CutSuffix(line, []byte(" HTTP/1.1"))
	if !ok || len(target) == 0 || target[0] != '/' {
		return "", nil, false
	}
	for _, b := range target {
		// Visible ASCII only: anything else net/http may refuse.
		if b <= ' ' || b >= 0x7f {
			return "", nil, false
		}
	}
	return method, target, true
}

// fieldLine splits a header field line the loop accepts: a name of token
// characters, a colon, and a value without control characters but tab,
// trimmed of spaces and tabs. Anything else (a space before the colon,
// obsolete line folding, a control character) is net/http's to answer.
func fieldLine(line []byte) (name, value []byte, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return nil, nil, false
	}
	name, value = line[:i], trim(line[i+1:])
	for _, b := range name {
		if !isToken(b) {
			return nil, nil, false
		}
	}
	for _, b := range value {
		if (b < ' ' && b != '\t') || b == 0x7f {
			return nil, nil, false
		}
	}
	return name, value, true
}

// part returns the part of block (string(head)) that sub is of head: sub
// is a slice of head, and slicing keeps the end of the backing array, so
// its offset is what its capacity lacks.
func part(block string, head, sub []byte) string {
	at := cap(head) - cap(sub)
	return block[at : at+len(sub)]
}

// parseTarget is url.ParseRequestURI of an origin-form target into u,
// reporting whether it parses, without
// its work for a path that has nothing to unescape or escape (the paths
// of the registry API): such a path is its own Path, with no RawPath.
// Anything else goes to url.ParseRequestURI; nil if it fails.
func parseTarget(uri string, u *url.URL) bool {
	path, query, hasQuery := strings.Cut(uri, "?")
	for i := 0; i < len(path); i++ {
		switch b := path[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case b == '/', b == '-', b == '_', b == '.', b == '~', b == ':', b == '@',
			b == '$', b == '&', b == '+', b == ',', b == ';', b == '=':
		default:
			return parseRequestURI(uri, u)
		}
	}
	if strings.IndexByte(query, '#') >= 0 {
		return parseRequestURI(uri, u)
	}
	*u = url.URL{Path: path, RawQuery: query, ForceQuery: hasQuery && query == ""}
	return true
}

// parseRequestURI is url.ParseRequestURI into u.
func parseRequestURI(uri string, u *url.URL) bool {
	p, err := url.ParseRequestURI(uri)
	if err != nil {
		return false
	}
	*u = *p
	return true
}

// cutLine cuts b at its first CRLF. A bare LF (which net/http accepts) is
// not a line end here: the request goes to net/http.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i <= 0 || b[i-1] != '\r' {
		return nil, nil, false
	}
	line = b[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, false
	}
	return line, b[i+1:], true
}

// trim removes the spaces and tabs around a field value.
func trim(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// isToken reports whether b may appear in a field name (RFC 9110 tchar).
func isToken(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	switch b {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// validHost accepts what a Host of a pull looks like (a name or address
// and a port); anything else goes to net/http, which has the full rules.
func validHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		switch b := h[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case b == '-', b == '.', b == ':', b == '[', b == ']':
		default:
			return false
		}
	}
	return true
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x := b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if x != s[i] {
			return false
		}
	}
	return true
}

// commonKeys are the canonical names of the fields clients send, so that
// finding the key costs no allocation.
var commonKeys = func() map[string]string {
	m := make(map[string]string)
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Content-Length", "Cookie", "Docker-Distribution-Api-Version", "Expect",
		"Host", "Http2-Settings", "If-Match", "If-Modified-Since", "If-None-Match", "If-Range",
		"If-Unmodified-Since", "Range", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "User-Agent",
		"Via", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id",
	} {
		m[k] = k
	}
	return m
}()

// canonicalKey is http.CanonicalHeaderKey of name.
func canonicalKey(name []byte) string {
	var buf [32]byte
	if len(name) <= len(buf) {
		b := buf[:len(name)]
		upper := true
		for i, x := range name {
			if upper && 'a' <= x && x <= 'z' {
				x -= 'a' - 'A'
			} else if !upper && 'A' <= x && x <= 'Z' {
				x += 'a' - 'A'
			}
			b[i] = x
			upper = x == '-'
		}
		if k, ok := commonKeys[string(b)]; ok {
			return k
		}
	}
	return http.CanonicalHeaderKey(string(name))
}
