package h1

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
)

// BenchmarkServe measures one request and its answer over a keep-alive
// connection on 127.0.0.1, the client included, with a handler that does
// nearly nothing: what the HTTP layer costs per request, on the loop and
// on net/http. docs/benchmarks.md quotes it.
func BenchmarkServe(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd["Docker-Distribution-Api-Version"] = []string{"registry/2.0"}
		hd["Location"] = []string{"https://cdn.example.com/blobs/sha256/0123456789abcdef"}
		w.WriteHeader(http.StatusTemporaryRedirect)
	})
	for _, bc := range []struct {
		name string
		fast bool
	}{{"loop", true}, {"net-http", false}} {
		b.Run(bc.name, func(b *testing.B) {
			s := startServer(b, h, bc.fast)
			c, err := net.Dial("tcp", s.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			req := []byte("GET /v2/library/alpine/blobs/sha256:0123 HTTP/1.1\r\nHost: registry.example.com\r\nUser-Agent: bench\r\nAccept-Encoding: gzip\r\n\r\n")
			br := bufio.NewReader(c)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
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
