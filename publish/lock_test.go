package publish_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/publish/source"
)

// The test binary doubles as a helper process: with helperEnv set, TestMain
// runs the helper it names instead of the tests.
const helperEnv = "HERON_PUBLISH_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "lock":
		os.Exit(lockHelper())
	case "publish":
		os.Exit(publishHelper())
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// lockHelper takes the lock of HERON_LOCK_KEY in the tree HERON_ROOT, says
// "locked", and holds it until its standard input ends or it is killed.
func lockHelper() int {
	sink := publish.NewFSSink(layout.Root(os.Getenv("HERON_ROOT")))
	if _, err := sink.Lock(context.Background(), os.Getenv("HERON_LOCK_KEY")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("locked")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	return 0
}

// publishHelper publishes each of its arguments, SOURCE=NAME:TAG, into the
// tree HERON_ROOT, one after the other.
func publishHelper() int {
	p := publish.New(publish.NewFSSink(layout.Root(os.Getenv("HERON_ROOT"))))
	for _, arg := range os.Args[1:] {
		if strings.HasPrefix(arg, "-test.") {
			continue
		}
		spec, target, _ := strings.Cut(arg, "=")
		src, err := source.Parse(spec)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		tg, err := publish.ParseTarget(target)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_, err = p.Publish(context.Background(), src, []publish.Target{tg})
		src.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// helper starts the test binary as the named helper.
func helper(t *testing.T, name, root string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), append(env, helperEnv+"="+name, "HERON_ROOT="+root)...)
	cmd.Stderr = os.Stderr
	return cmd
}

// TestLockExcludesGoroutines has goroutines increment a counter kept in a
// file, each under the lock: an update lost to a concurrent
// read-modify-write shows as a count short of the total.
func TestLockExcludesGoroutines(t *testing.T) {
	root := t.TempDir()
	sink := publish.NewFSSink(layout.Root(root))
	counter := filepath.Join(root, "counter")
	if err := os.WriteFile(counter, []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range rounds {
				unlock, err := sink.Lock(context.Background(), "repositories/app.json")
				if err != nil {
					errs <- err
					return
				}
				b, err := os.ReadFile(counter)
				if err == nil {
					n, _ := strconv.Atoi(string(b))
					time.Sleep(50 * time.Microsecond)
					err = os.WriteFile(counter, []byte(strconv.Itoa(n+1)), 0o644)
				}
				unlock()
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(counter)
	if string(b) != strconv.Itoa(workers*rounds) {
		t.Fatalf("counter %s, want %d: updates were lost", b, workers*rounds)
	}
	// Other keys are other locks.
	unlockA, err := sink.Lock(context.Background(), "repositories/a.json")
	if err != nil {
		t.Fatal(err)
	}
	defer unlockA()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	unlockB, err := sink.Lock(ctx, "repositories/b.json")
	if err != nil {
		t.Fatalf("the lock of another key: %v", err)
	}
	unlockB()
}

// TestLockExcludesProcesses holds a lock in another process: this one
// cannot take it, and takes it as soon as that process is killed.
func TestLockExcludesProcesses(t *testing.T) {
	root := t.TempDir()
	const key = "catalog/index.json"
	cmd := helper(t, "lock", root, []string{"HERON_LOCK_KEY=" + key})
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	defer func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	sink := publish.NewFSSink(layout.Root(root))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if unlock, err := sink.Lock(ctx, key); !errors.Is(err, context.DeadlineExceeded) {
		if err == nil {
			unlock()
		}
		t.Fatalf("took a lock another process holds: %v", err)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waited = true
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	unlock, err := sink.Lock(ctx, key)
	if err != nil {
		t.Fatalf("the lock of a killed process was not released: %v", err)
	}
	unlock()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v to get the lock of a killed process", d)
	}
}

// TestLockContext abandons a wait when its context ends; the lock is then
// free again once its holder releases it.
func TestLockContext(t *testing.T) {
	sink := publish.NewFSSink(layout.Root(t.TempDir()))
	unlock, err := sink.Lock(context.Background(), "repositories/app.json")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := sink.Lock(ctx, "repositories/app.json")
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned wait returned %v", err)
	}
	unlock()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	unlock, err = sink.Lock(ctx, "repositories/app.json")
	if err != nil {
		t.Fatalf("lock not free after an abandoned wait: %v", err)
	}
	unlock()
	if _, err := sink.Lock(context.Background(), "../outside"); err == nil {
		t.Error("locked an invalid key")
	}
}
