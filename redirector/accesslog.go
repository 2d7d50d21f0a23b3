package redirector

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// serveObserved answers a request under the router while measuring it for
// the metrics and logging it, for those of the two that are on. A server
// with neither answers through the router alone (see ServeHTTP).
func (s *Server) serveObserved(w http.ResponseWriter, r *http.Request) {
	logOn := s.accessLog != nil && s.accessLog.Enabled(r.Context(), slog.LevelInfo)
	if s.metrics == nil && !logOn {
		s.router.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	if s.metrics != nil {
		s.metrics.inFlight.Add(1)
	}
	answered := false
	defer func() {
		// An answer cut short (panic(http.ErrAbortHandler), see
		// storeTree.sendBlob) is no longer in flight either.
		if !answered && s.metrics != nil {
			s.metrics.inFlight.Add(-1)
		}
	}()
	rec := recorderPool.Get().(*recorder)
	rec.w = w
	s.router.ServeHTTP(rec, r)
	answered = true
	elapsed := time.Since(start)
	status, n, user := rec.status, rec.bytes, rec.user
	*rec = recorder{}
	recorderPool.Put(rec)
	if status == 0 {
		// The handler wrote nothing: net/http sends a 200.
		status = http.StatusOK
	}
	rt := routeOf(r.URL.Path)
	if s.metrics != nil {
		s.metrics.inFlight.Add(-1)
		s.metrics.observe(rt.endpoint, r.Method, status, n, elapsed)
	}
	if logOn {
		s.logRequest(r, rt, status, n, elapsed, user)
	}
}

// routeOf parses a request's path the way the router and serveV2 do, for
// the route label and the log line.
func routeOf(path string) route {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		if path == "/v2" {
			return route{endpoint: endpointBase}
		}
		return route{}
	}
	return parsePath(rest)
}

// logRequest writes the access log line of one request: at Info, message
// "request", with the method, path, route, repository (when the path names
// one), status, body bytes sent, duration (from the request's headers to
// the last byte handed to the connection), client address, user agent and,
// with authentication, the user.
func (s *Server) logRequest(r *http.Request, rt route, status int, n int64, d time.Duration, user string) {
	var repo, who slog.Attr // a zero Attr is left out
	if rt.name != "" {
		repo = slog.String("repository", rt.name)
	}
	if user != "" {
		who = slog.String("user", user)
	}
	s.accessLog.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("route", rt.endpoint.String()),
		repo,
		slog.Int("status", status),
		slog.Int64("bytes", n),
		slog.Duration("duration", d),
		slog.String("remote", r.RemoteAddr),
		slog.String("user_agent", r.UserAgent()),
		who,
	)
}

// recorder is the ResponseWriter handlers get while a request is measured
// or logged: it keeps the status and counts the body's bytes. It passes
// io.ReaderFrom through, so that a blob is still sent with sendfile, and
// http.ResponseController reaches the connection through Unwrap.
// Recorders are pooled: one costs no allocation per request.
type recorder struct {
	w      http.ResponseWriter
	status int
	bytes  int64
	user   string // the authenticated caller (noteUser), "" if none
}

// noteUser records the authenticated caller of a request for its log
// line, when w is a recorder.
func noteUser(w http.ResponseWriter, name string) {
	if rec, ok := w.(*recorder); ok {
		rec.user = name
	}
}

var recorderPool = sync.Pool{New: func() any { return new(recorder) }}

var (
	_ http.ResponseWriter = (*recorder)(nil)
	_ io.ReaderFrom       = (*recorder)(nil)
)

func (w *recorder) Header() http.Header { return w.w.Header() }

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.w.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.w.Write(p)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom implements io.ReaderFrom with the underlying writer's ReadFrom
// when it has one (net/http's uses sendfile for files).
func (w *recorder) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.w.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(w.w, r)
	}
	w.bytes += n
	return n, err
}

// Unwrap returns the underlying ResponseWriter, for
// http.ResponseController.
func (w *recorder) Unwrap() http.ResponseWriter { return w.w }
