package store

import (
	"context"
	_ "crypto/sha256" // registers sha256 for go-digest
	_ "crypto/sha512" // registers sha512 for go-digest
	"fmt"
	"io"
)

// CopyVerified copies r to w, checking the bytes against want while they
// stream: at most want.Size+1 bytes are read, and the digest is computed on
// the way. It returns the number of bytes written. With a zero want it only
// copies. Any sink implementation uses it, so that verification is the same
// everywhere.
func CopyVerified(ctx context.Context, key string, w io.Writer, r io.Reader, want Want) (int64, error) {
	r = ctxReader{ctx: ctx, r: r}
	if want.Digest == "" {
		return io.Copy(w, r)
	}
	if err := want.Digest.Validate(); err != nil {
		return 0, fmt.Errorf("%s: %w", key, err)
	}
	if want.Size < 0 {
		return 0, fmt.Errorf("%s: negative size %d", key, want.Size)
	}
	dg := want.Digest.Algorithm().Digester()
	n, err := io.Copy(io.MultiWriter(w, dg.Hash()), io.LimitReader(r, want.Size+1))
	if err != nil {
		return n, fmt.Errorf("%s: %w", key, err)
	}
	if n != want.Size {
		verr := &VerifyError{Key: key, Want: want, GotSize: n}
		if n < want.Size {
			verr.GotDigest = dg.Digest()
		}
		return n, verr
	}
	if got := dg.Digest(); got != want.Digest {
		return n, &VerifyError{Key: key, Want: want, GotSize: n, GotDigest: got}
	}
	return n, nil
}

// ctxReader stops a copy when its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
