package redirector

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// genBlob is content of any size made on the fly, so that a benchmark of
// a large blob holds none of it in memory: 64 KiB of random bytes, each
// copy stamped with its index.
type genBlob struct {
	block []byte
	size  int64
}

func newGenBlob(size int64) *genBlob {
	b := &genBlob{block: make([]byte, 64<<10), size: size}
	rand.Read(b.block)
	return b
}

type genReader struct {
	g   *genBlob
	pos int64
	buf []byte
}

func (g *genBlob) open() io.ReadCloser { return &genReader{g: g, buf: make([]byte, len(g.block))} }

func (r *genReader) Read(p []byte) (int, error) {
	if r.pos >= r.g.size {
		return 0, io.EOF
	}
	bs := int64(len(r.g.block))
	i, off := r.pos/bs, r.pos%bs
	copy(r.buf, r.g.block)
	binary.LittleEndian.PutUint64(r.buf, uint64(i))
	n := copy(p, r.buf[off:min(bs, r.g.size-i*bs)])
	r.pos += int64(n)
	return n, nil
}

func (r *genReader) Close() error { return nil }

func (g *genBlob) digest() digest.Digest {
	dg := digest.SHA256.Digester()
	io.Copy(dg.Hash(), g.open())
	return dg.Digest()
}

// genFiller serves one generated blob; it stores nothing (the server is
// read-only in the benchmark).
type genFiller struct {
	g     *genBlob
	opens atomic.Int64
}

func (f *genFiller) OpenBlob(context.Context, string, digest.Digest, int64) (io.ReadCloser, error) {
	f.opens.Add(1)
	return f.g.open(), nil
}

func (f *genFiller) StoreBlob(context.Context, string, digest.Digest, int64, io.Reader) error {
	return nil
}

func (f *genFiller) MarkStored(context.Context, string, digest.Digest) error { return nil }

// BenchmarkOnDemandClients: 20 clients GET one blob listed as not stored
// at the same time, from a read-only server (each iteration fetches it
// again). It reports the peak of the Go heap above what it was before,
// sampled every 5 ms: what the fetch and its readers hold, which must not
// grow with the blob (HERON_BENCH_ONDEMAND_MB, 256 by default).
func BenchmarkOnDemandClients(b *testing.B) {
	const clients = 20
	mb := 256
	if v, err := strconv.Atoi(os.Getenv("HERON_BENCH_ONDEMAND_MB")); err == nil && v > 0 {
		mb = v
	}
	g := newGenBlob(int64(mb) << 20)
	d := g.digest()
	tt := newTestTree(b)
	r := layout.NewRepository("lazy/app")
	notStored := false
	layer := v1.Descriptor{MediaType: v1.MediaTypeImageLayerGzip, Digest: d, Size: g.size}
	m := v1.Manifest{Config: tt.blob(v1.MediaTypeImageConfig, []byte(`{}`)), Layers: []v1.Descriptor{layer}}
	desc, _ := tt.manifest(m)
	addImage(r, desc, m)
	r.Blobs[d] = layout.Blob{Size: g.size, Stored: &notStored}
	tt.repository(r)
	f := &genFiller{g: g}
	s, err := New(tt.dir(), WithFiller(f, true), WithSpoolDir(b.TempDir()), WithLogger((&logBuffer{}).logger()))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	idle := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	b.SetBytes(g.size * clients)
	b.ResetTimer()
	for b.Loop() {
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				resp, err := client.Get(srv.URL + blobURL("lazy/app", d))
				if err != nil {
					b.Error(err)
					return
				}
				defer resp.Body.Close()
				n, err := io.Copy(io.Discard, resp.Body)
				if err != nil || n != g.size {
					b.Errorf("%d bytes, %v", n, err)
				}
			})
		}
		wg.Wait()
	}
	b.StopTimer()
	close(stop)
	<-sampled
	if p := peak.Load(); p > idle {
		b.ReportMetric(float64(p-idle)/(1<<20), "peak-heap-MiB")
	} else {
		b.ReportMetric(0, "peak-heap-MiB")
	}
	b.ReportMetric(float64(f.opens.Load())/float64(b.N), "fetches/op")
}
