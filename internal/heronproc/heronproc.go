// Package heronproc starts `heron serve` as a real process for the suites
// that drive the binary (e2e/, reliability/): on a free 127.0.0.1 port,
// over HTTP or HTTPS, ready once GET /v2/ answers 200 (or 401, with
// authentication), stopped by its PID.
package heronproc

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LockedBuffer collects a process's output while it runs.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Tail returns the last n lines of the output.
func (b *LockedBuffer) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// Server is a running `heron serve`.
type Server struct {
	Name string
	Addr string
	Cmd  *exec.Cmd
	Log  *LockedBuffer
	// TLS, for a server started with StartServeTLS, is the client
	// configuration its readiness was checked with.
	TLS  *tls.Config
	done chan struct{}
	err  error // set when done is closed
}

// Base is the server's URL: https:// for a server started with
// StartServeTLS.
func (s *Server) Base() string {
	if s.TLS != nil {
		return "https://" + s.Addr
	}
	return "http://" + s.Addr
}

// StartServe runs `serve --root tree --addr ADDR extra...` with command
// (which builds the *exec.Cmd of the heron binary for those arguments, with
// the environment the caller wants) on a free address, and waits at most
// ready for GET /v2/ to answer 200 (or 401). The server dies with the test binary
// (Pdeathsig).
func StartServe(name string, command func(args ...string) *exec.Cmd, tree string, ready time.Duration, extra ...string) (*Server, error) {
	return start(name, command, tree, ready, nil, extra...)
}

// StartServeTLS is StartServe for a server that serves HTTPS (extra holds
// --tls-cert and --tls-key): its readiness is checked over TLS with
// client (which trusts the server's CA), and its Base is https://.
func StartServeTLS(name string, command func(args ...string) *exec.Cmd, tree string, ready time.Duration, client *tls.Config, extra ...string) (*Server, error) {
	if client == nil {
		return nil, fmt.Errorf("%s: StartServeTLS needs a client TLS configuration", name)
	}
	return start(name, command, tree, ready, client, extra...)
}

func start(name string, command func(args ...string) *exec.Cmd, tree string, ready time.Duration, client *tls.Config, extra ...string) (*Server, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--root", tree, "--addr", addr}, extra...)
	s := &Server{Name: name, Addr: addr, Log: &LockedBuffer{}, TLS: client, done: make(chan struct{})}
	s.Cmd = command(args...)
	s.Cmd.Stdout = s.Log
	s.Cmd.Stderr = s.Log
	s.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		s.err = s.Cmd.Wait()
		close(s.done)
	}()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: client}}
	deadline := time.Now().Add(ready)
	for {
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s (heron %s) exited before it was ready: %v\n%s", name, strings.Join(args, " "), s.err, s.Log.Tail(20))
		default:
		}
		resp, err := hc.Get(s.Base() + "/v2/")
		if err == nil {
			resp.Body.Close()
			// 401: a server with authentication (--htpasswd) answers
			// anonymous callers so there.
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return s, nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		if time.Now().After(deadline) {
			_ = s.Stop()
			return nil, fmt.Errorf("%s (heron %s) not ready after %s: %v\n%s", name, strings.Join(args, " "), ready, err, s.Log.Tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM to the server's PID, and SIGKILL if it has not exited
// 10 s later. It reports an exit that was not the clean one SIGTERM asks
// for, and a server that had exited already.
func (s *Server) Stop() error {
	select {
	case <-s.done:
		return fmt.Errorf("%s had exited already: %v\n%s", s.Name, s.err, s.Log.Tail(20))
	default:
	}
	_ = s.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		if s.err != nil {
			return fmt.Errorf("%s (pid %d) after SIGTERM: %v", s.Name, s.Cmd.Process.Pid, s.err)
		}
		return nil
	case <-time.After(10 * time.Second):
		_ = s.Cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("%s (pid %d) did not stop within 10s of SIGTERM", s.Name, s.Cmd.Process.Pid)
	}
}
