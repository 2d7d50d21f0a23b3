//go:build reliability

package reliability

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// heronBin is the heron binary TestMain builds for the tests (or
// HERON_BIN, to test another build); hasVerify and hasGC tell whether it
// has `heron verify` and `heron gc`. Without verify, the tests rely on
// their own check of the tree alone.
var (
	heronBin  string
	hasVerify bool
	hasGC     bool
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "heron-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	if heronBin = os.Getenv("HERON_BIN"); heronBin != "" {
		fmt.Printf("reliability: testing %s (HERON_BIN)\n", heronBin)
	} else {
		heronBin = filepath.Join(dir, "heron")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		build := exec.CommandContext(ctx, "go", "build", "-o", heronBin, "github.com/heron-registry/heron/cmd/heron")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "reliability: go build heron: %v\n%s", err, out)
			return 1
		}
		fmt.Printf("reliability: built heron in %s\n", time.Since(start).Round(time.Millisecond))
	}
	hasVerify = heron("verify", "--help").Run() == nil
	hasGC = heron("gc", "--help").Run() == nil
	fmt.Printf("reliability: heron verify: %v, heron gc: %v\n", hasVerify, hasGC)
	return m.Run()
}

// heron returns the command that runs heron with args, in the test's
// environment minus the HERON_* variables: heron reads its settings from
// them (HERON_CACHE_SIZE, HERON_ROOT, ...), and the tests give every
// setting on the command line.
func heron(args ...string) *exec.Cmd {
	cmd := exec.Command(heronBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERON_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

// envInt returns the integer in the environment variable name, or def.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, s)
	}
	return n
}

// envDuration returns the duration in the environment variable name
// ("30s", "2m"), or def.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 30s", name, s)
	}
	return d
}
