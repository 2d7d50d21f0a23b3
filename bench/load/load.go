// Package load is the benchmark's load generator: a fixed number of
// keep-alive HTTP/1.1 connections, each sending one request after the
// other for a fixed time (or up to a fixed count), recording every
// latency in a histogram. It is the same tool for every server compared,
// so that their numbers differ only by the server.
//
// It speaks a minimal HTTP/1.1 itself instead of using net/http's client:
// the load generator shares the machine's cores with the server under
// test, and a client that costs less per request leaves more of them to the
// server. It never follows redirects, sends HEAD and custom headers, reads
// bodies of Content-Length or chunked encoding, and only ever connects to
// loopback addresses.
package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Request is one request the generator sends.
type Request struct {
	// Method is GET if empty.
	Method string
	// Path is the request target: path and query.
	Path string
	// Header holds extra request headers (Accept, Authorization, …),
	// sent with every request.
	Header http.Header
}

// Config says what load to generate.
type Config struct {
	// Addr is the server's host:port; the host must be a loopback address.
	Addr string
	// Requests are sent in turn by each connection (each starting at its
	// own offset), so a list of many paths spreads the load over them.
	Requests []Request
	// Concurrency is the number of connections, each with one request in
	// flight; 1 if 0.
	Concurrency int
	// Duration is how long the measured part runs.
	Duration time.Duration
	// Warmup runs before the measured part; its requests are not counted.
	Warmup time.Duration
	// MaxRequests, if > 0, ends the measured part after that many
	// responses, even before Duration.
	MaxRequests int64
	// ExpectStatus, if not 0, counts every response of another status as
	// an error.
	ExpectStatus int
	// ExpectBodySize, if > 0, counts every response to a GET whose body
	// is not that many bytes as an error.
	ExpectBodySize int64
}

// Result is what one run measured.
type Result struct {
	// Requests is the number of responses received in the measured part,
	// Errors the number of them that were errors (a wrong status or size,
	// or a failed connection).
	Requests, Errors int64
	// Statuses counts responses by status code.
	Statuses map[int]int64
	// FirstError describes the first error, if any.
	FirstError string
	// BodyBytes is the number of body bytes received.
	BodyBytes int64
	// Elapsed is the length of the measured part.
	Elapsed time.Duration
	// Latency holds the latency of every response of the measured part:
	// from writing the request to reading the last byte of the body.
	Latency *Histogram
}

// RequestsPerSecond is the throughput of the measured part.
func (r *Result) RequestsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// MiBPerSecond is the body bytes received per second, in MiB.
func (r *Result) MiBPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.BodyBytes) / (1 << 20) / r.Elapsed.Seconds()
}

// ErrNotLoopback is returned for an address that is not on this machine's
// loopback interface.
var ErrNotLoopback = errors.New("load: the target must be a loopback address")

// CheckLoopback returns ErrNotLoopback unless addr's host is localhost or
// a loopback IP address.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %s", ErrNotLoopback, addr)
	}
	return nil
}

// maxConsecutiveErrors ends a connection's loop when the server keeps
// failing to answer (refused or broken connections), so that a dead server ends a run early instead of spinning.
const maxConsecutiveErrors = 100

// Run generates the load cfg describes and returns what it measured. It
// returns an error only for a bad configuration; errors of requests are
// counted in the Result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := CheckLoopback(cfg.Addr); err != nil {
		return nil, err
	}
	if len(cfg.Requests) == 0 {
		return nil, errors.New("load: no requests")
	}
	if cfg.Duration <= 0 {
		return nil, errors.New("load: no duration")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	reqs := make([]wireRequest, len(cfg.Requests))
	for i, r := range cfg.Requests {
		w, err := encodeRequest(cfg.Addr, r)
		if err != nil {
			return nil, err
		}
		reqs[i] = w
	}

	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	deadline := measureFrom.Add(cfg.Duration)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	var (
		mu     sync.Mutex
		total  = &Result{Statuses: map[int]int64{}, Latency: &Histogram{}}
		wg     sync.WaitGroup
		budget = newBudget(cfg.MaxRequests)
		last   time.Time
	)
	for c := 0; c < cfg.Concurrency; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			w := &worker{cfg: &cfg, reqs: reqs, next: c * len(reqs) / cfg.Concurrency,
				res: &Result{Statuses: map[int]int64{}, Latency: &Histogram{}}}
			end := w.loop(ctx, measureFrom, budget)
			mu.Lock()
			defer mu.Unlock()
			total.merge(w.res)
			if end.After(last) {
				last = end
			}
		}(c)
	}
	wg.Wait()
	if last.After(measureFrom) {
		total.Elapsed = last.Sub(measureFrom)
	}
	return total, nil
}

func (r *Result) merge(o *Result) {
	r.Requests += o.Requests
	r.Errors += o.Errors
	r.BodyBytes += o.BodyBytes
	for s, n := range o.Statuses {
		r.Statuses[s] += n
	}
	if r.FirstError == "" {
		r.FirstError = o.FirstError
	}
	r.Latency.Merge(o.Latency)
}

// StatusSummary lists the statuses seen, e.g. "200×1000 404×3".
func (r *Result) StatusSummary() string {
	codes := make([]int, 0, len(r.Statuses))
	for c := range r.Statuses {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var b strings.Builder
	for i, c := range codes {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d×%d", c, r.Statuses[c])
	}
	return b.String()
}

// budget hands out the measured requests of a run bounded in count.
type budget struct {
	mu   sync.Mutex
	left int64 // -1: unbounded
}

func newBudget(n int64) *budget {
	if n <= 0 {
		n = -1
	}
	return &budget{left: n}
}

func (b *budget) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.left == 0 {
		return false
	}
	if b.left > 0 {
		b.left--
	}
	return true
}

// wireRequest is a request encoded once, sent many times.
type wireRequest struct {
	bytes []byte
	head  bool
}

func encodeRequest(addr string, r Request) (wireRequest, error) {
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	if !strings.HasPrefix(r.Path, "/") || strings.ContainsAny(r.Path, " \r\n") {
		return wireRequest{}, fmt.Errorf("load: bad request path %q", r.Path)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: heron-bench-load\r\n", method, r.Path, addr)
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range r.Header[k] {
			if strings.ContainsAny(k+v, "\r\n") {
				return wireRequest{}, fmt.Errorf("load: bad header %q", k)
			}
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	return wireRequest{bytes: b.Bytes(), head: method == http.MethodHead}, nil
}

// worker runs one connection.
type worker struct {
	cfg  *Config
	reqs []wireRequest
	next int
	res  *Result

	conn net.Conn
	br   *bufio.Reader
}

// loop sends requests until ctx ends or the budget is spent, and returns
// when its last measured response ended.
func (w *worker) loop(ctx context.Context, measureFrom time.Time, b *budget) time.Time {
	defer w.close()
	var end time.Time
	consecutive := 0
	dialer := net.Dialer{Timeout: 5 * time.Second}
	deadline, _ := ctx.Deadline()
	for ctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(deadline) {
			break
		}
		measured := !t0.Before(measureFrom)
		if measured && !b.take() {
			break
		}
		req := w.reqs[w.next%len(w.reqs)]
		w.next++
		status, n, err := w.do(ctx, &dialer, req)
		t1 := time.Now()
		if err != nil && (ctx.Err() != nil || !t1.Before(deadline)) {
			break // cut by the deadline: not an answer
		}
		// Only failures to get an answer at all end the loop; wrong
		// answers are counted and the run goes on.
		if err != nil {
			consecutive++
		} else {
			consecutive = 0
			if w.cfg.ExpectStatus != 0 && status != w.cfg.ExpectStatus {
				err = fmt.Errorf("status %d, want %d", status, w.cfg.ExpectStatus)
			} else if w.cfg.ExpectBodySize > 0 && !req.head && n != w.cfg.ExpectBodySize {
				err = fmt.Errorf("body of %d bytes, want %d", n, w.cfg.ExpectBodySize)
			}
		}
		if measured {
			w.res.Requests++
			w.res.BodyBytes += n
			if status != 0 {
				w.res.Statuses[status]++
			}
			w.res.Latency.Record(t1.Sub(t0))
			end = t1
			if err != nil {
				w.res.Errors++
				if w.res.FirstError == "" {
					w.res.FirstError = err.Error()
				}
			}
		}
		if consecutive >= maxConsecutiveErrors {
			break
		}
	}
	return end
}

func (w *worker) close() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// do sends one request, on the open connection or a new one, and reads the
// whole response. A failure closes the connection.
func (w *worker) do(ctx context.Context, d *net.Dialer, req wireRequest) (status int, n int64, err error) {
	if w.conn == nil {
		c, err := d.DialContext(ctx, "tcp", w.cfg.Addr)
		if err != nil {
			return 0, 0, err
		}
		w.conn = c
		if w.br == nil {
			w.br = bufio.NewReaderSize(c, 64<<10)
		} else {
			w.br.Reset(c)
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		w.conn.SetDeadline(dl)
	}
	if _, err := w.conn.Write(req.bytes); err != nil {
		w.close()
		return 0, 0, err
	}
	status, n, keep, err := readResponse(w.br, req.head)
	if err != nil || !keep {
		w.close()
	}
	return status, n, err
}

// readResponse reads one response and discards its body, returning its
// status, the body size and whether the connection can be reused.
func readResponse(br *bufio.Reader, head bool) (status int, n int64, keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, 0, false, fmt.Errorf("status line: %w", err)
	}
	// HTTP/1.1 200 OK
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, 0, false, fmt.Errorf("bad status line %q", line)
	}
	keep = line[7] == '1'
	contentLength := int64(-1)
	chunked := false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return status, 0, false, fmt.Errorf("header: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return status, 0, false, fmt.Errorf("bad header line %q", line)
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			contentLength, err = strconv.ParseInt(string(v), 10, 64)
			if err != nil || contentLength < 0 {
				return status, 0, false, fmt.Errorf("bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			if bytes.EqualFold(v, []byte("close")) {
				keep = false
			} else if bytes.EqualFold(v, []byte("keep-alive")) {
				keep = true
			}
		}
	}
	switch {
	case head || status/100 == 1 || status == http.StatusNoContent || status == http.StatusNotModified:
		return status, 0, keep, nil
	case chunked:
		n, err = discardChunked(br)
		return status, n, keep && err == nil, err
	case contentLength >= 0:
		d, err := br.Discard(int(contentLength))
		return status, int64(d), keep && err == nil, err
	default: // the body ends with the connection
		n, err = io.Copy(io.Discard, br)
		return status, n, false, err
	}
}

func discardChunked(br *bufio.Reader) (int64, error) {
	var total int64
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return total, fmt.Errorf("chunk size: %w", err)
		}
		sizeField, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		size, err := strconv.ParseInt(string(bytes.TrimSpace(sizeField)), 16, 64)
		if err != nil || size < 0 {
			return total, fmt.Errorf("bad chunk size %q", line)
		}
		if size == 0 {
			// Trailers, then the empty line.
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return total, fmt.Errorf("trailer: %w", err)
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return total, nil
				}
			}
		}
		d, err := br.Discard(int(size))
		total += int64(d)
		if err != nil {
			return total, err
		}
		if _, err := br.Discard(2); err != nil { // CRLF after the data
			return total, err
		}
	}
}
