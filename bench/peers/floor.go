package main

import (
	"bufio"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// The floors: two Go servers that answer the blob-307 scenario with the
// 307 nginx's `return 307` sends (same Location, same fields) and do
// nothing else, no file, no check. They bound what any Go server can do
// here: floorNetHTTP on net/http with a handler that only sets the
// fields, floorLoop on a loop that finds the end of the request's header
// block and writes the answer (what heron's redirector/h1 builds on).
// docs/decisions.md rests on them. peers runs them as children of its own
// binary (-floor-serve MODE).
const (
	floorNetHTTP = "nethttp"
	floorLoop    = "loop"
)

// floorServe serves the floor of mode on ln until ln is closed.
func floorServe(mode string, ln net.Listener, location, digest string) error {
	if mode == floorNetHTTP {
		return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			h := w.Header()
			h["Docker-Content-Digest"] = []string{digest}
			h["Docker-Distribution-Api-Version"] = []string{"registry/2.0"}
			h["Location"] = []string{location}
			w.WriteHeader(http.StatusTemporaryRedirect)
		}))
	}
	// The answer, its Date made anew each second as nginx's is.
	var answer atomic.Pointer[[]byte]
	build := func() {
		b := []byte("HTTP/1.1 307 Temporary Redirect\r\nContent-Length: 0\r\nDate: " + time.Now().UTC().Format(http.TimeFormat) +
			"\r\nDocker-Content-Digest: " + digest + "\r\nDocker-Distribution-Api-Version: registry/2.0\r\nLocation: " + location + "\r\n\r\n")
		answer.Store(&b)
	}
	build()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	go func() {
		for range tick.C {
			build()
		}
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			br := bufio.NewReaderSize(c, 4096)
			for {
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(line) <= 2 { // the empty line: the request is read
						break
					}
				}
				if _, err := c.Write(*answer.Load()); err != nil {
					return
				}
			}
		}()
	}
}
