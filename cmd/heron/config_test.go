package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// testFlags is a flag set shaped like heron serve's.
func testFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String(configFlag, "", "")
	fs.String("addr", "default:1", "")
	fs.Int("cache-size", 1000, "")
	fs.Bool("redirect-manifests", false, "")
	fs.Duration("shutdown-timeout", 10*time.Second, "")
	return fs
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "serve.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func fakeEnv(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

// TestConfigPrecedence: command line, then environment, then file, then
// default, flag by flag.
func TestConfigPrecedence(t *testing.T) {
	const file = "addr: file:3\ncache-size: 3\nredirect-manifests: true\nshutdown-timeout: 3s\n"
	other := writeConfig(t, "addr: other:4\n")
	for _, tc := range []struct {
		Description string
		Args        []string
		Env         map[string]string
		File        string // content of the file --config names ("" for no --config)
		Want        map[string]string
	}{
		{Description: "defaults",
			Want: map[string]string{"addr": "default:1", "cache-size": "1000", "redirect-manifests": "false", "shutdown-timeout": "10s"}},
		{Description: "file", File: file,
			Want: map[string]string{"addr": "file:3", "cache-size": "3", "redirect-manifests": "true", "shutdown-timeout": "3s"}},
		{Description: "environment over file", File: file,
			Env:  map[string]string{"HERON_ADDR": "env:2", "HERON_CACHE_SIZE": "2"},
			Want: map[string]string{"addr": "env:2", "cache-size": "2", "redirect-manifests": "true", "shutdown-timeout": "3s"}},
		{Description: "command line over environment and file", File: file,
			Args: []string{"--addr", "flag:1", "--redirect-manifests=false"},
			Env:  map[string]string{"HERON_ADDR": "env:2", "HERON_REDIRECT_MANIFESTS": "true", "HERON_SHUTDOWN_TIMEOUT": "2s"},
			Want: map[string]string{"addr": "flag:1", "cache-size": "3", "redirect-manifests": "false", "shutdown-timeout": "2s"}},
		{Description: "command line equal to the default still wins", File: file,
			Args: []string{"--cache-size", "1000"},
			Want: map[string]string{"cache-size": "1000"}},
		{Description: "an empty variable is unset", File: file,
			Env:  map[string]string{"HERON_ADDR": ""},
			Want: map[string]string{"addr": "file:3"}},
		{Description: "environment without a file",
			Env:  map[string]string{"HERON_CACHE_SIZE": "0"},
			Want: map[string]string{"addr": "default:1", "cache-size": "0"}},
		{Description: "HERON_CONFIG names the file",
			Env:  map[string]string{"HERON_CONFIG": other},
			Want: map[string]string{"addr": "other:4", "cache-size": "1000"}},
		{Description: "--config over HERON_CONFIG", File: file,
			Env:  map[string]string{"HERON_CONFIG": other},
			Want: map[string]string{"addr": "file:3"}},
		{Description: "variables of no flag are ignored",
			Env:  map[string]string{"HERON_CACHE": "/var/cache", "HERON_NOPE": "x"},
			Want: map[string]string{"addr": "default:1"}},
		{Description: "comments only", File: "# nothing yet\n",
			Want: map[string]string{"addr": "default:1"}},
		{Description: "empty file", File: " ",
			Want: map[string]string{"addr": "default:1"}},
		{Description: "quoted and typed scalars", File: "addr: \"127.0.0.1:5000\"\ncache-size: 0x10\nredirect-manifests: True\n",
			Want: map[string]string{"addr": "127.0.0.1:5000", "cache-size": "16", "redirect-manifests": "true"}},
		{Description: "host:port unquoted", File: "addr: :5000\n",
			Want: map[string]string{"addr": ":5000"}},
	} {
		t.Run(tc.Description, func(t *testing.T) {
			fs := testFlags()
			args := tc.Args
			if tc.File != "" {
				args = append(args, "--config", writeConfig(t, tc.File))
			}
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			if err := applyConfig(fs, fakeEnv(tc.Env)); err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.Want {
				if got := fs.Lookup(name).Value.String(); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		Description string
		File        string
		Env         map[string]string
		Want        []string // parts of the message
	}{
		{Description: "unknown key", File: "addr: x:1\ncahce-size: 0\n",
			Want: []string{"serve.yaml:2: unknown key \"cahce-size\"", "the keys are addr, cache-size, redirect-manifests, shutdown-timeout"}},
		{Description: "config in the file", File: "config: other.yaml\n", Want: []string{`unknown key "config"`}},
		{Description: "help in the file", File: "help: true\n", Want: []string{`unknown key "help"`}},
		{Description: "set twice", File: "addr: a:1\naddr: b:2\n", Want: []string{"serve.yaml:2: addr: set twice"}},
		{Description: "a list", File: "addr: [a, b]\n", Want: []string{"serve.yaml:1: addr: want a single value"}},
		{Description: "a mapping", File: "addr:\n  host: a\n", Want: []string{"addr: want a single value"}},
		{Description: "no value", File: "addr:\n", Want: []string{"addr: want a single value"}},
		{Description: "not a mapping", File: "- addr\n", Want: []string{"serve.yaml:1: want a mapping"}},
		{Description: "two documents", File: "addr: a:1\n---\naddr: b:2\n", Want: []string{"want one YAML document"}},
		{Description: "not YAML", File: "addr: [\n", Want: []string{"serve.yaml"}},
		{Description: "bad value in the file", File: "cache-size: lots\n",
			Want: []string{"serve.yaml:1: cache-size: invalid argument \"lots\""}},
		{Description: "bad value in the environment", Env: map[string]string{"HERON_SHUTDOWN_TIMEOUT": "soon"},
			Want: []string{"HERON_SHUTDOWN_TIMEOUT: invalid argument \"soon\""}},
		{Description: "two bad values", Env: map[string]string{"HERON_SHUTDOWN_TIMEOUT": "soon", "HERON_CACHE_SIZE": "many"},
			Want: []string{"HERON_SHUTDOWN_TIMEOUT", "HERON_CACHE_SIZE"}},
		{Description: "missing file", Env: map[string]string{"HERON_CONFIG": "/nonexistent/serve.yaml"},
			Want: []string{"config: open /nonexistent/serve.yaml"}},
	} {
		t.Run(tc.Description, func(t *testing.T) {
			fs := testFlags()
			var args []string
			if tc.File != "" {
				args = []string{"--config", writeConfig(t, tc.File)}
			}
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			err := applyConfig(fs, fakeEnv(tc.Env))
			if err == nil {
				t.Fatalf("no error, want one containing %q", tc.Want)
			}
			for _, w := range tc.Want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{
		"root": "HERON_ROOT", "blob-base-url": "HERON_BLOB_BASE_URL", "max-connections": "HERON_MAX_CONNECTIONS", "config": "HERON_CONFIG",
	} {
		if got := envName(in); got != want {
			t.Errorf("envName(%q) = %q, want %q", in, got, want)
		}
	}
}
