package auth

import (
	"crypto/sha256"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// source is a configuration read from files: the htpasswd file, the
// access file, or the token key files together.
type source struct {
	paths []string
	load  func(data [][]byte) error // stores the configuration when it is valid

	mu      sync.Mutex
	loaded  [32]byte // digest of the contents last loaded
	hasLoad bool
	lastErr string // the last error logged, not to log it twice
}

// reload reads the files and loads them when their contents changed
// since they were last loaded. It returns the error of contents that do
// not load; the configuration in force then stays.
func (s *source) reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data := make([][]byte, len(s.paths))
	h := sha256.New()
	for i, p := range s.paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		data[i] = b
		sum := sha256.Sum256(b)
		h.Write(sum[:])
	}
	var sum [32]byte
	h.Sum(sum[:0])
	if s.hasLoad && sum == s.loaded {
		return nil
	}
	if err := s.load(data); err != nil {
		return err
	}
	s.loaded, s.hasLoad = sum, true
	return nil
}

// watcher reloads sources when anything changes in their files'
// directories. Directories, not files, are watched: editors replace a file
// by renaming another onto it and Kubernetes swaps a symbolic link to a
// directory of new files, and either ends a watch on the file itself.
// Events are gathered for a short while before the files are read, as one
// save is often several events.
type watcher struct {
	w       *fsnotify.Watcher
	sources []*source
	log     *slog.Logger
	done    chan struct{}
	closed  sync.Once
}

// reloadDelay gathers the events of one change.
const reloadDelay = 100 * time.Millisecond

func startWatcher(sources []*source, log *slog.Logger) (*watcher, error) {
	wt := &watcher{sources: sources, log: log, done: make(chan struct{})}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return wt, err
	}
	dirs := map[string]bool{}
	for _, s := range sources {
		for _, p := range s.paths {
			abs, err := filepath.Abs(p)
			if err != nil {
				fw.Close()
				return wt, err
			}
			dirs[filepath.Dir(abs)] = true
			// A link to a file elsewhere: watch where it leads too.
			if real, err := filepath.EvalSymlinks(abs); err == nil {
				dirs[filepath.Dir(real)] = true
			}
		}
	}
	for d := range dirs {
		if err := fw.Add(d); err != nil {
			fw.Close()
			return wt, err
		}
	}
	wt.w = fw
	go wt.run()
	return wt, nil
}

func (wt *watcher) run() {
	defer close(wt.done)
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case _, ok := <-wt.w.Events:
			if !ok {
				return
			}
			if timer == nil {
				timer = time.NewTimer(reloadDelay)
			} else {
				timer.Reset(reloadDelay)
			}
			fire = timer.C
		case err, ok := <-wt.w.Errors:
			if !ok {
				return
			}
			wt.log.Warn("auth: watching files", "err", err)
		case <-fire:
			fire = nil
			wt.reloadChanged()
		}
	}
}

// reloadChanged reloads every source whose files changed, and logs each
// new error once.
func (wt *watcher) reloadChanged() {
	for _, s := range wt.sources {
		s.mu.Lock()
		before := s.loaded
		s.mu.Unlock()
		err := s.reload()
		s.mu.Lock()
		after := s.loaded
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		repeated := msg == s.lastErr
		s.lastErr = msg
		s.mu.Unlock()
		switch {
		case err != nil && !repeated:
			wt.log.Error("auth: a changed file does not load; the previous configuration stays in force", "err", err)
		case err == nil && after != before:
			wt.log.Info("auth: reloaded", "files", s.paths)
		}
	}
}

func (wt *watcher) reloadAll() error {
	var errs []error
	for _, s := range wt.sources {
		if err := s.reload(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (wt *watcher) close() error {
	if wt.w == nil {
		return nil
	}
	var err error
	wt.closed.Do(func() {
		err = wt.w.Close()
		<-wt.done
	})
	return err
}
