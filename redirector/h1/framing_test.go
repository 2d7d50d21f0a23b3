package h1

import (
	"bytes"
	"math/rand"
	"testing"
)

// referenceFraming is the framing scanner as it was first written, a
// byte at a time: feed must keep exactly its state, whatever the bytes and
// however they are split.
type referenceFraming struct{ framingScanner }

func (s *referenceFraming) feed(p []byte) {
	for _, b := range p {
		if b == '\n' {
			s.endLine()
			continue
		}
		copy(s.tail[:], s.tail[1:])
		s.tail[len(s.tail)-1] = b
		if s.n < len(s.line) {
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			s.line[s.n] = b
			s.n++
			switch {
			case s.n == len("content-length:") && string(s.line[:s.n]) == "content-length:":
				s.cl = true
			case s.n == len("transfer-encoding:") && string(s.line[:s.n]) == "transfer-encoding:":
				s.te = true
			}
		} else if s.n == len(s.line) {
			s.n++
		}
	}
}

type framingState struct {
	line                     [len("transfer-encoding:")]byte
	n                        int
	tail                     [len("HTTP/1.0\r")]byte
	first, http10, cl, te, f bool
}

func stateOf(s *framingScanner) framingState {
	return framingState{s.line, s.n, s.tail, s.first, s.http10, s.cl, s.te, s.found.Load()}
}

// framingInput returns bytes made of pieces of header blocks and random
// bytes, so that every branch of the scanner is taken.
func framingInput(rnd *rand.Rand) []byte {
	pieces := []string{
		"GET /v2/ HTTP/1.1\r\n", "POST /x HTTP/1.0\r\n", "PUT /y HTTP/1.0\n", "\r\n", "\n", "\r",
		"Content-Length: 3\r\n", "content-length:", "Transfer-Encoding: chunked\r\n", "TRANSFER-ENCODING:x\n",
		"Transfer-Encodin", "Host: h\r\n", "HTTP/1.0", "a very long header line that goes on and on: value\r\n",
	}
	var b bytes.Buffer
	for range rnd.Intn(40) {
		if rnd.Intn(4) == 0 {
			junk := make([]byte, rnd.Intn(600))
			rnd.Read(junk)
			b.Write(junk)
		} else {
			b.WriteString(pieces[rnd.Intn(len(pieces))])
		}
	}
	return b.Bytes()
}

func TestFramingSameAsByteAtATime(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	for i := range 20000 {
		in := framingInput(rnd)
		var got framingScanner
		var want referenceFraming
		for p := in; len(p) > 0; {
			k := 1 + rnd.Intn(len(p))
			got.feed(p[:k])
			want.feed(p[:k])
			p = p[k:]
			if g, w := stateOf(&got), stateOf(&want.framingScanner); g != w {
				t.Fatalf("input %d (%q): after %d bytes, state %+v, want %+v", i, in, len(in)-len(p), g, w)
			}
		}
	}
}

func FuzzFramingSameAsByteAtATime(f *testing.F) {
	f.Add([]byte("POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), uint8(3))
	f.Add([]byte("GET / HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n"), uint8(7))
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		var got framingScanner
		var want referenceFraming
		k := int(split) % (len(in) + 1)
		got.feed(in[:k])
		got.feed(in[k:])
		want.feed(in)
		if g, w := stateOf(&got), stateOf(&want.framingScanner); g != w {
			t.Fatalf("state %+v, want %+v", g, w)
		}
	})
}

// BenchmarkFramingBody is the scanner over a pushed blob's bytes.
func BenchmarkFramingBody(b *testing.B) {
	body := make([]byte, 256<<10)
	rand.New(rand.NewSource(1)).Read(body)
	b.SetBytes(int64(len(body)))
	var s framingScanner
	for b.Loop() {
		s.feed(body)
	}
}

func BenchmarkFramingBodyByteAtATime(b *testing.B) {
	body := make([]byte, 256<<10)
	rand.New(rand.NewSource(1)).Read(body)
	b.SetBytes(int64(len(body)))
	var s referenceFraming
	for b.Loop() {
		s.feed(body)
	}
}
