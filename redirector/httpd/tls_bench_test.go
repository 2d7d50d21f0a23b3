package httpd

import (
	"bufio"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/heron-registry/heron/internal/tlstest"
	"github.com/heron-registry/heron/redirector/h1"
)

// BenchmarkTLSClient measures GETs with Go's http.Client, as Go pull
// clients send them, over a TLS connection to net/http: HTTP/1.1 against
// HTTP/2, which ALPN gives Go clients when heron offers it.
func BenchmarkTLSClient(b *testing.B) {
	ca := tlstest.NewCA(b, "bench")
	c, k, _ := ca.Issue(b, "heron", true)
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		b.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Location"] = []string{"https://cdn.example.com/blobs/sha256/0123456789abcdef"}
		w.WriteHeader(http.StatusTemporaryRedirect)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: time.Minute, ErrorLog: discardLogger(),
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2", "http/1.1"}}}
	go s.ServeTLS(ln, "", "")
	defer s.Close()
	for _, h2 := range []bool{false, true} {
		b.Run(map[bool]string{false: "http1.1", true: "h2"}[h2], func(b *testing.B) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, ForceAttemptHTTP2: h2}
			if !h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			url := "https://" + ln.Addr().String() + "/v2/library/alpine/blobs/sha256:0123"
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusTemporaryRedirect || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] {
					b.Fatal(resp.Status, resp.Proto)
				}
			}
		})
	}
}

// BenchmarkTLS measures one request and its answer over a keep-alive TLS
// connection on 127.0.0.1, the client included, with the handler of h1's
// BenchmarkServe: on net/http, as heron serves TLS, and on heron's loop
// reading a *tls.Conn, the alternative it was weighed against
// (docs/benchmarks.md, "TLS").
func BenchmarkTLS(b *testing.B) {
	ca := tlstest.NewCA(b, "bench")
	c, k, _ := ca.Issue(b, "heron", true)
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		b.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd["Docker-Distribution-Api-Version"] = []string{"registry/2.0"}
		hd["Location"] = []string{"https://cdn.example.com/blobs/sha256/0123456789abcdef"}
		w.WriteHeader(http.StatusTemporaryRedirect)
	})
	serverConf := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}, NextProtos: []string{"http/1.1"}}
	for _, bc := range []struct {
		name  string
		serve func(ln net.Listener) (stop func())
	}{
		{"net-http", func(ln net.Listener) func() {
			s := &http.Server{Handler: h, ReadHeaderTimeout: time.Minute, TLSConfig: serverConf, ErrorLog: discardLogger()}
			go s.Serve(tls.NewListener(ln, serverConf))
			return func() { s.Close() }
		}},
		{"loop", func(ln net.Listener) func() {
			s := &h1.Server{HTTP: &http.Server{Handler: h, ReadHeaderTimeout: time.Minute, ErrorLog: discardLogger()}}
			go s.Serve(tls.NewListener(ln, serverConf))
			return func() { s.Close() }
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer bc.serve(ln)()
			conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), NextProtos: []string{"http/1.1"}})
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			req := []byte("GET /v2/library/alpine/blobs/sha256:0123 HTTP/1.1\r\nHost: registry.example.com\r\nUser-Agent: bench\r\nAccept-Encoding: gzip\r\n\r\n")
			br := bufio.NewReader(conn)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := conn.Write(req); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusTemporaryRedirect {
					b.Fatal(resp.Status)
				}
			}
		})
	}
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
