//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heron-registry/heron/internal/fixtures"
	"github.com/heron-registry/heron/internal/heronproc"
	"github.com/heron-registry/heron/layout"
)

// suite is what TestMain sets up once for every test: the fixtures, a tree
// holding all of them, and one heron serve per mode.
var suite *environment

type environment struct {
	dir      string // the suite's temporary folder
	heron    string // the heron binary built for the suite
	fixDir   string
	fixtures *fixtures.Manifest
	tree     string
	modes    []*mode
	// ci is true when CI=true: a client that is not installed is then a
	// failure, not a skip.
	ci bool
	// policy and registries are the containers-image configuration files
	// skopeo and podman use, so that the suite needs nothing from
	// /etc/containers.
	policy     string
	registries string
	// bulkTags is the number of tags setup adds to each of bulkRepos
	// (defaultBulkTags, or E2E_BULK_TAGS), bulkTook how long adding them
	// took, and tagShards the tag shards each of bulkRepos has then.
	bulkTags  int
	bulkTook  time.Duration
	tagShards map[string]int
}

// defaultBulkTags is how many tags setup adds to each of bulkRepos: enough
// for the repositories to keep their tags in shards (docs/layout.md,
// "Large repositories"), so that every client pulls from, and lists the
// tags of, a repository of a CI pipeline that tags every build.
const defaultBulkTags = 100000

// bulkRepos are the repositories that get the bulk tags: oci-image's,
// which every client pulls (podman too) and which holds a referrer, and
// oci-index's, an index.
var bulkRepos = []string{"e2e/" + fixtures.NameOCIImage, "e2e/" + fixtures.NameOCIIndex}

// bulkTag is the i-th bulk tag: bulk-000000, bulk-000001, ...
func bulkTag(i int) string { return fmt.Sprintf("bulk-%06d", i) }

// mode is one way of serving the tree: heron serve, the tap clients talk to,
// and in redirect mode the CDN blobs are redirected to.
type mode struct {
	name  string
	heron *heronproc.Server
	tap   *tap
	cdn   *cdn // nil when heron serves blobs itself
	// bucket is set when heron serves a tree in a bucket and redirects
	// blobs to the bucket's presigned URLs (bucket_test.go).
	bucket *presigned
	// prefix, when set, is a pull-through cache's: clients pull every
	// fixture as PREFIX/<repository> (ondemand_test.go).
	prefix string
	// only, when set, are the clients that pull in this mode.
	only []string
}

// host is the registry host clients pull from.
func (m *mode) host() string { return m.tap.addr() }

// base is where the mode's repositories are: host, and the pull-through
// cache's prefix.
func (m *mode) base() string {
	if m.prefix != "" {
		return m.host() + "/" + m.prefix
	}
	return m.host()
}

// results counts the leaf subtests (client × fixture × mode) for the
// summary line.
var results struct {
	sync.Mutex
	passed, failed, skipped int
}

// countResult makes t count in the summary line when it ends.
func countResult(t *testing.T) {
	t.Cleanup(func() {
		results.Lock()
		defer results.Unlock()
		switch {
		case t.Failed():
			results.failed++
		case t.Skipped():
			results.skipped++
		default:
			results.passed++
		}
	})
}

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	start := time.Now()
	env, err := setup()
	if env != nil {
		defer func() {
			if err := env.teardown(); err != nil {
				fmt.Fprintln(os.Stderr, "e2e: teardown:", err)
			}
		}()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: setup failed:", err)
		fmt.Println("e2e: 0 passed, 1 failed, 0 skipped")
		return 1
	}
	fmt.Printf("e2e: set up in %s: %d fixtures in %s; direct at %s, redirect at %s (blobs to %s)\n",
		time.Since(start).Round(time.Millisecond), len(env.fixtures.Fixtures), env.tree,
		env.modes[0].host(), env.modes[1].host(), env.modes[1].cdn.base())
	var shards []string
	for _, r := range bulkRepos {
		shards = append(shards, fmt.Sprintf("%s %d", r, env.tagShards[r]))
	}
	fmt.Printf("e2e: %d bulk tags added to each of %s with heron tag in %s; tag shards: %s\n",
		env.bulkTags, strings.Join(bulkRepos, " and "), env.bulkTook.Round(time.Millisecond), strings.Join(shards, ", "))
	suite = env
	code := m.Run()
	results.Lock()
	defer results.Unlock()
	fmt.Printf("e2e: %d passed, %d failed, %d skipped\n", results.passed, results.failed, results.skipped)
	if code == 0 && results.failed > 0 {
		code = 1
	}
	return code
}

// setup builds heron, generates the fixtures (with the large one),
// publishes every fixture into a fresh tree and starts the servers. On
// error it returns what it has started so far, for teardown.
func setup() (*environment, error) {
	dir, err := os.MkdirTemp("", "heron-e2e-")
	if err != nil {
		return nil, err
	}
	env := &environment{
		dir:        dir,
		heron:      filepath.Join(dir, "heron"),
		fixDir:     filepath.Join(dir, "fixtures"),
		tree:       filepath.Join(dir, "tree"),
		ci:         os.Getenv("CI") == "true",
		policy:     filepath.Join(dir, "policy.json"),
		registries: filepath.Join(dir, "registries.conf"),
		bulkTags:   defaultBulkTags,
	}
	if s := os.Getenv("E2E_BULK_TAGS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 1000000 {
			return env, fmt.Errorf("E2E_BULK_TAGS=%q: want a number from 0 to 1000000", s)
		}
		env.bulkTags = n
	}
	addToolPath()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", env.heron, "github.com/heron-registry/heron/cmd/heron")
	if out, err := build.CombinedOutput(); err != nil {
		return env, fmt.Errorf("go build heron: %w\n%s", err, out)
	}

	env.fixtures, err = fixtures.Generate(env.fixDir, fixtures.Options{Large: true})
	if err != nil {
		return env, err
	}
	if _, ok := env.fixtures.Fixture(fixtures.NameLargeImage); !ok {
		return env, errors.New("fixtures: no large-image with Options.Large")
	}
	if err := env.publishAll(ctx); err != nil {
		return env, err
	}
	if err := env.addBulkTags(ctx); err != nil {
		return env, err
	}

	// A policy that accepts any image, and no search registries: skopeo
	// and podman read these instead of /etc/containers.
	if err := os.WriteFile(env.policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`+"\n"), 0o644); err != nil {
		return env, err
	}
	if err := os.WriteFile(env.registries, []byte("unqualified-search-registries = []\n"), 0o644); err != nil {
		return env, err
	}

	direct, err := env.startMode("direct", nil)
	if err != nil {
		return env, err
	}
	env.modes = append(env.modes, direct)
	c, err := startCDN(env.tree)
	if err != nil {
		return env, err
	}
	redirect, err := env.startMode("redirect", c)
	if err != nil {
		_ = c.close()
		return env, err
	}
	env.modes = append(env.modes, redirect)
	return env, nil
}

// addToolPath puts the folder `make tools` installs the Go clients into
// first on PATH: $HERON_CACHE/bin, by default <repo>/.cache/bin.
func addToolPath() {
	cache := os.Getenv("HERON_CACHE")
	if cache == "" {
		if abs, err := filepath.Abs(filepath.Join("..", ".cache")); err == nil {
			cache = abs
		}
	}
	os.Setenv("PATH", filepath.Join(cache, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
}

func (env *environment) startMode(name string, c *cdn) (*mode, error) {
	var extra []string
	if c != nil {
		extra = []string{"--blob-base-url", c.base()}
	}
	command := func(args ...string) *exec.Cmd { return exec.Command(env.heron, args...) }
	p, err := heronproc.StartServe("heron serve ("+name+")", command, env.tree, 30*time.Second, extra...)
	if err != nil {
		return nil, err
	}
	tp, err := startTap(p.Addr)
	if err != nil {
		_ = p.Stop()
		return nil, err
	}
	return &mode{name: name, heron: p, tap: tp, cdn: c}, nil
}

// teardown stops the servers by PID and removes the suite's folder.
func (env *environment) teardown() error {
	var errs []error
	for _, m := range env.modes {
		_ = m.tap.close()
		if err := m.heron.Stop(); err != nil {
			errs = append(errs, err)
		}
		if m.cdn != nil {
			_ = m.cdn.close()
		}
	}
	if os.Getenv("E2E_KEEP") == "" {
		if err := os.RemoveAll(env.dir); err != nil {
			errs = append(errs, err)
		}
	} else {
		fmt.Println("e2e: kept", env.dir)
	}
	return errors.Join(errs...)
}

// target is where a fixture is published, and how clients name it.
type target struct {
	repo     string
	tag      string
	byDigest bool // clients pull it as repo@digest
}

// targetFor places each fixture in a repository of its own, tagged latest,
// except the signature: a referrer lives in the repository of its subject
// (oci-image), where clients find it through the referrers API and pull it
// by digest. heron publish needs a tag for it all the same.
func targetFor(f *fixtures.Fixture) target {
	if f.Name == fixtures.NameSignature {
		return target{repo: "e2e/" + fixtures.NameOCIImage, tag: "signature", byDigest: true}
	}
	return target{repo: "e2e/" + f.Name, tag: "latest"}
}

// ref is the reference a client pulls from host.
func (tg target) ref(host string, f *fixtures.Fixture) string {
	if tg.byDigest {
		return host + "/" + tg.repo + "@" + f.Digest.String()
	}
	return host + "/" + tg.repo + ":" + tg.tag
}

// publishAll publishes every fixture into the suite's tree (publishTo).
func (env *environment) publishAll(ctx context.Context) error {
	return env.publishTo(ctx, env.tree, nil)
}

// publishTo publishes every fixture into the tree at root (a folder, or
// an s3:// URL, with environ the environment of heron: nil for the
// suite's own), from all three kinds of source (the OCI layout, the
// docker save tarball and the OCI archive), with heron publish, and
// checks the digest it prints. Subjects go before the referrers that
// point at them.
func (env *environment) publishTo(ctx context.Context, root string, environ []string) error {
	fs := make([]*fixtures.Fixture, len(env.fixtures.Fixtures))
	for i := range env.fixtures.Fixtures {
		fs[i] = &env.fixtures.Fixtures[i]
	}
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].Subject == nil && fs[j].Subject != nil })
	kinds := map[string]bool{}
	for _, f := range fs {
		tg := targetFor(f)
		to := tg.repo + ":" + tg.tag
		cmd := exec.CommandContext(ctx, env.heron, "publish", f.SourceIn(env.fixDir), "--root", root, "--to", to)
		cmd.Env = environ
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("heron publish %s --to %s: %w\n%s", f.SourceIn(env.fixDir), to, err, stderr.String())
		}
		want := to + "@" + f.Digest.String()
		if got := strings.TrimSpace(string(out)); got != want {
			return fmt.Errorf("heron publish %s: printed %q, want %q", f.Name, got, want)
		}
		kinds[f.Transport] = true
	}
	for _, k := range []string{fixtures.TransportOCI, fixtures.TransportDockerArchive, fixtures.TransportOCIArchive} {
		if !kinds[k] {
			return fmt.Errorf("no fixture comes from a %s source", k)
		}
	}
	return nil
}

// tagChunk is how many tags one heron tag adds: one edit of the repository
// each, and a command line well under ARG_MAX.
const tagChunk = 5000

// addBulkTags adds env.bulkTags tags to each of bulkRepos, all naming the
// manifest its fixture was published with, with heron tag, tagChunk at a
// time, and checks the repository file: it must keep its tags in shards
// (once there are more than the file holds itself) that count every tag.
func (env *environment) addBulkTags(ctx context.Context) error {
	start := time.Now()
	env.tagShards = map[string]int{}
	for _, repo := range bulkRepos {
		for lo := 0; lo < env.bulkTags; lo += tagChunk {
			args := []string{"tag", "--root", env.tree, repo + ":latest"}
			for i := lo; i < min(lo+tagChunk, env.bulkTags); i++ {
				args = append(args, bulkTag(i))
			}
			cmd := exec.CommandContext(ctx, env.heron, args...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("heron tag --root %s %s:latest %s ... (%d tags): %w\n%s", env.tree, repo, args[4], len(args)-4, err, stderr.String())
			}
		}
		key, err := layout.RepositoryKey(repo)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(layout.Root(env.tree).Path(key))
		if err != nil {
			return err
		}
		r, err := layout.DecodeRepositoryFile(repo, b)
		if err != nil {
			return err
		}
		want := len(env.tagsOf(repo))
		count := len(r.Tags)
		for _, s := range r.Shards(layout.TagKind) {
			count += s.Count
		}
		env.tagShards[repo] = len(r.Shards(layout.TagKind))
		switch {
		case want > layout.InlineMax && !r.Sharded(layout.TagKind):
			return fmt.Errorf("%s: %d tags, and its repository file names no tag shard", repo, want)
		case count != want:
			return fmt.Errorf("%s: its repository file counts %d tags, want %d", repo, count, want)
		}
	}
	env.bulkTook = time.Since(start)
	return nil
}

// tagsOf returns the tags of repository repo, sorted: those of the fixtures
// published into it, and the bulk tags of bulkRepos.
func (env *environment) tagsOf(repo string) []string {
	var tags []string
	for i := range env.fixtures.Fixtures {
		if tg := targetFor(&env.fixtures.Fixtures[i]); tg.repo == repo {
			tags = append(tags, tg.tag)
		}
	}
	if slices.Contains(bulkRepos, repo) {
		for i := range env.bulkTags {
			tags = append(tags, bulkTag(i))
		}
	}
	slices.Sort(tags)
	return slices.Compact(tags)
}
