package redirector

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// The paths of the operations endpoints (see OpsHandler).
const (
	healthzPath = "/healthz"
	readyzPath  = "/readyz"
	metricsPath = "/metrics"
)

// Readiness states, for logging changes only.
const (
	readyUnknown int32 = iota
	readyYes
	readyNo
)

// Ready reports whether the server can answer requests: the tree's root is
// still readable and its heron-layout.json is of the layout version this
// server reads. It reads that one small file, nothing else; a repository
// file that is broken fails that repository only, not readiness.
func (s *Server) Ready(ctx context.Context) error {
	return s.files.ready(ctx)
}

// OpsHandler returns the handler of the operations endpoints, for a
// listener of their own (heron serve --metrics-addr) or to mount beside
// the server (see WithOpsEndpoints):
//
//	GET /healthz  200 "ok" while the process serves HTTP; it reads nothing
//	GET /readyz   200 "ok" when Ready, else 503 with the reason
//	GET /metrics  metrics, when it is not nil
//
// HEAD is answered too; other methods get a 405. The reason a 503 gives
// names the tree's file by its key, never by its path on this machine
// (the path is logged).
func (s *Server) OpsHandler(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+healthzPath, s.serveHealthz)
	mux.HandleFunc("GET "+readyzPath, s.serveReadyz)
	if metrics != nil {
		mux.Handle("GET "+metricsPath, metrics)
	}
	return mux
}

// isOpsPath reports whether path is one OpsHandler answers; no path under
// /v2/ is.
func isOpsPath(path string) bool {
	return path == healthzPath || path == readyzPath || path == metricsPath
}

// serveHealthz is the liveness check: it touches no file, so that a slow
// or lost file system makes the server unready, not restarted.
func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	opsText(w, r, http.StatusOK, "ok\n")
}

// serveReadyz is the readiness check. A change of readiness is logged
// (with the file concerned), not every probe.
func (s *Server) serveReadyz(w http.ResponseWriter, r *http.Request) {
	err := s.Ready(r.Context())
	if err == nil {
		if s.readiness.Swap(readyYes) == readyNo {
			s.log.InfoContext(r.Context(), "ready again")
		}
		opsText(w, r, http.StatusOK, "ok\n")
		return
	}
	if s.readiness.Swap(readyNo) != readyNo {
		attrs := []any{"err", err}
		var fe *fileError
		if errors.As(err, &fe) {
			attrs = append(attrs, "file", fe.path)
		}
		s.log.WarnContext(r.Context(), "not ready", attrs...)
	}
	opsText(w, r, http.StatusServiceUnavailable, "not ready: "+publicReason(err)+"\n")
}

// publicReason is err's message with the tree's OS path replaced by the
// file's key.
func publicReason(err error) string {
	var fe *fileError
	if !errors.As(err, &fe) {
		return err.Error()
	}
	return fe.key + ": " + strings.TrimPrefix(fe.err.Error(), fe.key+": ")
}

// opsText sends a short text answer (its headers only, for HEAD).
func opsText(w http.ResponseWriter, r *http.Request, status int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, body)
	}
}
