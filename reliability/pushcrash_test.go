//go:build reliability

package reliability

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/heron-registry/heron/internal/heronproc"
	"github.com/heron-registry/heron/internal/s3test"
	"github.com/heron-registry/heron/layout"
	s3store "github.com/heron-registry/heron/store/s3"
	"github.com/opencontainers/go-digest"
)

// The push crash test: `heron serve --push` killed with SIGKILL while
// clients push into it.

const (
	// pushRepos is the number of repositories the pushers write to.
	pushRepos = 6
	// pushPushers is the number of concurrent go-containerregistry pushers.
	pushPushers = 3
	// pushTagsPerPusher is the number of tags each pusher owns in each
	// repository: a tag has one writer, so the test knows what it must
	// name.
	pushTagsPerPusher = 3
	// handActive bounds the sessions the hand-made chunked uploader keeps
	// going at once.
	handActive = 3
)

// pushTree is the tree a push crash test writes into: a folder or a
// bucket, with the checks that read it while no server runs.
type pushTree struct {
	kind string // "folder" or "bucket"
	root string // --root
	env  []string
	// check reads the whole tree and returns its repositories and every
	// problem it found; a repository missing from the catalog is a problem
	// unless mayLag (nil: never) says so.
	check func(mayLag func(repo string) bool) (map[string]*layout.Repository, []string)
	// keys returns the key of every file (object) of the tree.
	keys func() ([]string, error)
	// blob returns nil when the tree holds blob d whole.
	blob func(d digest.Digest) error
	// round bounds how long the clients push before the SIGKILL: a
	// random time between 50 ms and round.
	round time.Duration
}

// command builds the heron command for args in the tree's environment.
func (pt *pushTree) command(args ...string) *exec.Cmd { return heronWithEnv(pt.env, args...) }

// tagKey is one tag of one repository.
type tagKey struct{ repo, tag string }

func (k tagKey) String() string { return k.repo + ":" + k.tag }

// repoBlob is a blob listed in a repository.
type repoBlob struct {
	repo string
	d    digest.Digest
}

// handSession is an upload session the test drives by hand with PATCHes,
// so that kills find sessions mid-way.
type handSession struct {
	id    string
	repo  string
	loc   string // the path of the session (its Location)
	data  []byte
	d     digest.Digest
	acked int64 // the size the last answer reported
	sent  int64 // the end of the chunk last sent, answered or not
	// pending is the method of the request in flight when the server
	// was killed ("" when none).
	pending string
	// cancelAt and abandonAt, when positive, are the sizes at which the
	// session is cancelled (DELETE) or left for heron gc.
	cancelAt, abandonAt int64
	// kills is the number of kills the session went through mid-way.
	kills int
	// log is what happened to it, for the messages of failures.
	log []string
}

// note adds an event to the session's log.
func (s *handSession) note(format string, args ...any) {
	s.log = append(s.log, fmt.Sprintf(format, args...))
}

// pushStats are the counts the summary prints.
type pushStats struct {
	pushes, pushesCut, indexes, repushes, deletes, deletesCut int
	landed                                                    int // tags that took a value whose request the kill cut
	sessions, finished, resumed, cancelled, abandoned         int
	finishedUnanswered                                        int // sessions whose PUT the kill cut after the blob was stored
	chunks, pulls                                             int
	monolithic, mounts                                        int // one-request uploads answered 201
}

// pushCrash is the state of a push crash test.
type pushCrash struct {
	t    *testing.T
	pt   *pushTree
	seed uint64
	rng  *rand.Rand // the main goroutine's choices

	srv     *heronproc.Server
	host    string // 127.0.0.1:PORT of srv
	tr      *http.Transport
	hc      *http.Client
	killing atomic.Bool // set just before the SIGKILL

	mu         sync.Mutex
	allowed    map[tagKey][]digest.Digest // what each tag may name after a kill ("": absent)
	acked      map[tagKey]digest.Digest   // what each tag names, by the last answer
	isIndex    map[digest.Digest]bool
	ackedRepos map[string]bool // repositories that answered a write 201
	ackedBlobs map[repoBlob]bool
	changed    map[tagKey]bool // tags to pull after the next restart
	images     []pushedImage   // acknowledged images, for pushes into other repositories
	failures   []string        // what went wrong before a kill
	stats      pushStats

	// sessions are the hand sessions carried over a kill mid-way;
	// abandoned, those left for heron gc; ids, every session id the
	// test was given.
	sessions  []*handSession
	abandoned []*handSession
	ids       []string
	byID      map[string]*handSession
}

// pushedImage is an image a push got 201 for.
type pushedImage struct {
	img v1.Image
	d   digest.Digest
}

func (pc *pushCrash) fail(format string, args ...any) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.failures = append(pc.failures, fmt.Sprintf(format, args...))
}

// attempt records that a request to set k to d is about to be sent.
func (pc *pushCrash) attempt(k tagKey, d digest.Digest) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if _, ok := pc.allowed[k]; !ok {
		pc.allowed[k] = []digest.Digest{""}
	}
	if !slices.Contains(pc.allowed[k], d) {
		pc.allowed[k] = append(pc.allowed[k], d)
	}
}

// ack records that the server answered the request setting k to d.
func (pc *pushCrash) ack(k tagKey, d digest.Digest) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.allowed[k] = []digest.Digest{d}
	pc.acked[k] = d
	pc.changed[k] = true
	if d != "" {
		pc.ackedRepos[k.repo] = true
	}
}

func (pc *pushCrash) ackedValue(k tagKey) digest.Digest {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.acked[k]
}

// remoteOptions are go-containerregistry's options for a request of the
// current server: no retries (a refused connection after the kill is
// final), the test's transport, ctx.
func (pc *pushCrash) remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(pc.tr),
		remote.WithJobs(2),
		remote.WithRetryPredicate(func(error) bool { return false }),
		remote.WithRetryStatusCodes(),
	}
}

// cut reports whether err is what a request gets from the kill; an error
// before it is a failure of the server.
func (pc *pushCrash) cut(what string, err error) bool {
	if pc.killing.Load() {
		return true
	}
	pc.fail("%s failed before any kill: %v", what, err)
	return false
}

// pusher pushes images and indexes with go-containerregistry, and deletes
// tags, into its own tags of every repository until ctx ends.
func (pc *pushCrash) pusher(ctx context.Context, id int, epoch int) {
	rng := rand.New(rand.NewPCG(pc.seed, uint64(epoch)<<8|uint64(id)))
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], pc.seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(epoch)<<8|uint64(id))
	cc := rand.NewChaCha8(key)
	layers := func() []int64 {
		n := make([]int64, 1+rng.IntN(3))
		for i := range n {
			n[i] = int64(1+rng.IntN(384)) << 10
		}
		if rng.IntN(6) == 0 {
			n[0] = int64(1024+rng.IntN(1024)) << 10
		}
		return n
	}
	for n := 0; ctx.Err() == nil; n++ {
		k := tagKey{fmt.Sprintf("push/r%d", rng.IntN(pushRepos)), fmt.Sprintf("p%d-%d", id, rng.IntN(pushTagsPerPusher))}
		ref, err := name.NewTag(pc.host+"/"+k.String(), name.Insecure)
		if err != nil {
			pc.fail("%v", err)
			return
		}
		what := fmt.Sprintf("pusher %d (epoch %d): ", id, epoch)
		op := rng.IntN(12)
		switch {
		case op == 0 && pc.ackedValue(k) != "":
			what += "DELETE of tag " + k.String()
			pc.attempt(k, "")
			status, _, err := pc.do(ctx, http.MethodDelete, "/v2/"+k.repo+"/manifests/"+k.tag, nil, nil)
			switch {
			case err != nil:
				pc.mu.Lock()
				pc.stats.deletesCut++
				pc.mu.Unlock()
				pc.cut(what, err)
				return
			case status != http.StatusAccepted:
				pc.fail("%s: %d, want 202", what, status)
				return
			}
			pc.ack(k, "")
			pc.mu.Lock()
			pc.stats.deletes++
			pc.mu.Unlock()
			continue
		case op <= 2:
			idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
			for i, arch := range []string{"amd64", "arm64"} {
				img, _, err := randomImage(cc, fmt.Sprintf("%s/%d/%d", k, n, i), arch, layers())
				if err != nil {
					pc.fail("%v", err)
					return
				}
				idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
			}
			h, err := idx.Digest()
			if err != nil {
				pc.fail("%v", err)
				return
			}
			d := digest.Digest(h.String())
			what += "index " + string(d) + " to " + k.String()
			pc.mu.Lock()
			pc.isIndex[d] = true
			pc.mu.Unlock()
			pc.attempt(k, d)
			if err := remote.WriteIndex(ref, idx, pc.remoteOptions(ctx)...); err != nil {
				pc.mu.Lock()
				pc.stats.pushesCut++
				pc.mu.Unlock()
				pc.cut(what, err)
				return
			}
			pc.ack(k, d)
			pc.mu.Lock()
			pc.stats.pushes++
			pc.stats.indexes++
			pc.mu.Unlock()
			continue
		}
		// An image: one pushed before (into another repository, most
		// likely: its blobs are in the tree, not listed here) one time
		// in four, else a new one.
		var img v1.Image
		pc.mu.Lock()
		again := op == 3 && len(pc.images) > 0
		if again {
			p := pc.images[rng.IntN(len(pc.images))]
			img = p.img
			pc.stats.repushes++
		}
		pc.mu.Unlock()
		if !again {
			if img, _, err = randomImage(cc, fmt.Sprintf("%s/%d", k, n), "amd64", layers()); err != nil {
				pc.fail("%v", err)
				return
			}
		}
		h, err := img.Digest()
		if err != nil {
			pc.fail("%v", err)
			return
		}
		d := digest.Digest(h.String())
		what += "image " + string(d) + " to " + k.String()
		pc.attempt(k, d)
		if err := remote.Write(ref, img, pc.remoteOptions(ctx)...); err != nil {
			pc.mu.Lock()
			pc.stats.pushesCut++
			pc.mu.Unlock()
			pc.cut(what, err)
			return
		}
		pc.ack(k, d)
		pc.mu.Lock()
		pc.stats.pushes++
		if !again {
			pc.images = append(pc.images, pushedImage{img: img, d: d})
		}
		pc.mu.Unlock()
	}
}

// do sends a request to the current server and reads its answer; err is
// a transport error (the server is gone).
func (pc *pushCrash) do(ctx context.Context, method, path string, body []byte, header map[string]string) (int, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+pc.host+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := pc.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, resp.Header, nil
}

// sdo is do for a request of session s, noted in its log.
func (pc *pushCrash) sdo(ctx context.Context, s *handSession, method, path string, body []byte, header map[string]string) (int, http.Header, error) {
	status, h, err := pc.do(ctx, method, path, body, header)
	switch {
	case err != nil:
		s.note("%s %s (%d bytes from %d): cut (%v)", method, pc.host, len(body), s.acked, err)
	default:
		s.note("%s %s (%d bytes from %d): %d, Range %q", method, pc.host, len(body), s.acked, status, h.Get("Range"))
	}
	return status, h, err
}

// rangeSize is the size a session's Range header ("0-<last>") tells:
// "0-0" is an empty session (the test's chunks are never of one byte).
func rangeSize(v string) (int64, error) {
	a, b, ok := strings.Cut(v, "-")
	last, err := strconv.ParseInt(b, 10, 64)
	if !ok || a != "0" || err != nil {
		return 0, fmt.Errorf("Range %q: want 0-<last>", v)
	}
	if last == 0 {
		return 0, nil
	}
	return last + 1, nil
}

// chunker drives upload sessions by hand: it resumes the sessions the last
// kill cut, and, when fresh is set, starts new ones, handActive at a time,
// sending one chunk of one of them at a time, until ctx ends (fresh) or
// every session it has is done (not fresh).
func (pc *pushCrash) chunker(ctx context.Context, epoch int, fresh bool) {
	rng := rand.New(rand.NewPCG(pc.seed, 1<<32|uint64(epoch)))
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], pc.seed)
	binary.LittleEndian.PutUint64(key[8:], 1<<32|uint64(epoch))
	cc := rand.NewChaCha8(key)
	var live []*handSession
	carry := func() {
		for _, s := range live {
			s.kills++
		}
		pc.mu.Lock()
		pc.sessions = append(pc.sessions, live...)
		pc.mu.Unlock()
	}
	pc.mu.Lock()
	resuming := pc.sessions
	pc.sessions = nil
	pc.mu.Unlock()
	for i, s := range resuming {
		ok, err := pc.resume(ctx, s)
		if err != nil {
			// Killed again: the rest waits for the next server.
			live = append(live, resuming[i:]...)
			carry()
			return
		}
		if ok {
			live = append(live, s)
		}
	}
	for ctx.Err() == nil {
		if fresh && rng.IntN(8) == 0 {
			// Now and then a monolithic upload or a mount instead.
			if err := pc.oneShot(ctx, rng, cc); err != nil {
				break
			}
			continue
		}
		if fresh && len(live) < handActive {
			s, err := pc.startSession(ctx, rng, cc)
			if err != nil {
				break
			}
			if s != nil {
				live = append(live, s)
			}
			continue
		}
		if len(live) == 0 {
			return
		}
		i := rng.IntN(len(live))
		done, err := pc.step(ctx, rng, live[i])
		if err != nil {
			break
		}
		if done {
			live = slices.Delete(live, i, i+1)
		}
		if fresh {
			time.Sleep(time.Duration(5+rng.IntN(30)) * time.Millisecond)
		}
	}
	carry()
}

// oneShot sends one POST that uploads a blob whole (?digest=, the blob as
// its body) or mounts a blob another repository lists (?mount=&from=),
// into a random repository; a 201 lists the blob there.
func (pc *pushCrash) oneShot(ctx context.Context, rng *rand.Rand, cc *rand.ChaCha8) error {
	repo := fmt.Sprintf("push/r%d", rng.IntN(pushRepos))
	var path, what string
	var body []byte
	var d digest.Digest
	pc.mu.Lock()
	var from *repoBlob
	if rng.IntN(2) == 0 && len(pc.ackedBlobs) > 0 {
		all := slices.SortedFunc(maps.Keys(pc.ackedBlobs), func(a, b repoBlob) int { return strings.Compare(a.repo+string(a.d), b.repo+string(b.d)) })
		from = &all[rng.IntN(len(all))]
	}
	pc.mu.Unlock()
	if from != nil {
		d = from.d
		path = "/v2/" + repo + "/blobs/uploads/?mount=" + d.String() + "&from=" + from.repo
		what = fmt.Sprintf("mount of %s from %s into %s", d, from.repo, repo)
	} else {
		body = randomBytes(cc, int64(1+rng.IntN(256))<<10)
		d = digest.FromBytes(body)
		path = "/v2/" + repo + "/blobs/uploads/?digest=" + d.String()
		what = fmt.Sprintf("monolithic upload of %s (%d bytes) into %s", d, len(body), repo)
	}
	status, _, err := pc.do(ctx, http.MethodPost, path, body, map[string]string{"Content-Type": "application/octet-stream"})
	if err != nil {
		pc.cut(what, err)
		return err
	}
	if status != http.StatusCreated {
		pc.fail("%s: %d, want 201", what, status)
		return nil
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.ackedBlobs[repoBlob{repo, d}] = true
	pc.ackedRepos[repo] = true
	if from != nil {
		pc.stats.mounts++
	} else {
		pc.stats.monolithic++
	}
	return nil
}

// startSession POSTs a new session of a random blob into a random
// repository.
func (pc *pushCrash) startSession(ctx context.Context, rng *rand.Rand, cc *rand.ChaCha8) (*handSession, error) {
	repo := fmt.Sprintf("push/r%d", rng.IntN(pushRepos))
	status, h, err := pc.do(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, nil)
	if err != nil {
		pc.cut("POST of a session", err)
		return nil, err
	}
	if status != http.StatusAccepted || h.Get("Location") == "" {
		pc.fail("POST /v2/%s/blobs/uploads/: %d (Location %q), want 202 with a Location", repo, status, h.Get("Location"))
		return nil, errors.New("failed")
	}
	data := randomBytes(cc, int64(384+rng.IntN(1664))<<10)
	s := &handSession{id: h.Get("Docker-Upload-UUID"), repo: repo, loc: h.Get("Location"), data: data, d: digest.FromBytes(data)}
	switch rng.IntN(8) {
	case 0:
		s.cancelAt = int64(len(data)) / 2
	case 1:
		s.abandonAt = int64(len(data)) / 3
	}
	pc.mu.Lock()
	pc.stats.sessions++
	pc.ids = append(pc.ids, s.id)
	pc.byID[s.id] = s
	pc.mu.Unlock()
	return s, nil
}

// resume asks the server where session s stands after a kill (GET:
// 204 with its Range), checks that against what was sent and answered,
// and reports whether it goes on. A session the server does not know
// (404) is right only when the kill cut its PUT (the blob must then be
// in the tree) or its DELETE.
func (pc *pushCrash) resume(ctx context.Context, s *handSession) (bool, error) {
	status, h, err := pc.sdo(ctx, s, http.MethodGet, s.loc, nil, nil)
	if err != nil {
		pc.cut("GET of session "+s.id, err)
		return false, err
	}
	switch status {
	case http.StatusNoContent:
		n, err := rangeSize(h.Get("Range"))
		if err != nil {
			pc.fail("GET %s after a kill: %v", s.loc, err)
			return false, nil
		}
		if n != s.acked && n != s.sent {
			pc.fail("session %s (%s) holds %d bytes after a kill: the last answer said %d, and %d were sent (pending %s)", s.id, s.repo, n, s.acked, s.sent, s.pending)
			return false, nil
		}
		s.acked, s.sent, s.pending = n, n, ""
		return true, nil
	case http.StatusNotFound:
		switch s.pending {
		case http.MethodPut:
			if err := pc.pt.blob(s.d); err != nil {
				pc.fail("session %s (%s): unknown after a kill cut its PUT, and the blob is not in the tree whole: %v", s.id, s.repo, err)
				return false, nil
			}
			pc.mu.Lock()
			pc.stats.finishedUnanswered++
			pc.mu.Unlock()
		case http.MethodDelete:
			pc.mu.Lock()
			pc.stats.cancelled++
			pc.mu.Unlock()
		default:
			pc.fail("session %s (%s) is unknown (404) after a kill, though its last request (%q) neither finished nor cancelled it: %d of %d bytes were answered", s.id, s.repo, s.pending, s.acked, len(s.data))
		}
		return false, nil
	}
	pc.fail("GET %s after a kill: %d, want 204 or 404", s.loc, status)
	return false, nil
}

// step sends the next request of session s: a chunk, the PUT that ends
// it (sometimes with the last chunk as its body), or its DELETE; or
// leaves it for gc. done is true when the session needs nothing more.
func (pc *pushCrash) step(ctx context.Context, rng *rand.Rand, s *handSession) (done bool, err error) {
	total := int64(len(s.data))
	switch {
	case s.cancelAt > 0 && s.acked >= s.cancelAt:
		s.pending, s.sent = http.MethodDelete, s.acked
		status, _, err := pc.sdo(ctx, s, http.MethodDelete, s.loc, nil, nil)
		if err != nil {
			pc.cut("DELETE of session "+s.id, err)
			return false, err
		}
		if status != http.StatusNoContent {
			pc.fail("DELETE %s: %d, want 204", s.loc, status)
			return true, nil
		}
		s.pending = ""
		pc.mu.Lock()
		pc.stats.cancelled++
		pc.mu.Unlock()
		if status, _, err := pc.do(ctx, http.MethodGet, s.loc, nil, nil); err == nil && status != http.StatusNotFound {
			pc.fail("GET %s after its DELETE: %d, want 404", s.loc, status)
		}
		return true, nil
	case s.abandonAt > 0 && s.acked >= s.abandonAt:
		pc.mu.Lock()
		pc.abandoned = append(pc.abandoned, s)
		s.note("abandoned at %d", s.acked)
		pc.stats.abandoned++
		pc.mu.Unlock()
		return true, nil
	}
	chunk := min(total-s.acked, int64(64+rng.IntN(192))<<10)
	finish := s.acked == total || (chunk == total-s.acked && rng.IntN(2) == 0)
	var status int
	var h http.Header
	if finish {
		var body []byte
		hdr := map[string]string{}
		if s.acked < total {
			body = s.data[s.acked:]
			hdr["Content-Range"] = fmt.Sprintf("%d-%d", s.acked, total-1)
			hdr["Content-Type"] = "application/octet-stream"
		}
		s.pending, s.sent = http.MethodPut, total
		status, h, err = pc.sdo(ctx, s, http.MethodPut, s.loc+"?digest="+s.d.String(), body, hdr)
		if err != nil {
			pc.cut("PUT of session "+s.id, err)
			return false, err
		}
		if status != http.StatusCreated {
			pc.fail("PUT %s?digest=%s (%d bytes, %d in the body): %d, want 201", s.loc, s.d, total, len(body), status)
			return true, nil
		}
		s.pending = ""
		pc.mu.Lock()
		pc.stats.finished++
		if s.kills > 0 {
			pc.stats.resumed++
		}
		pc.ackedBlobs[repoBlob{s.repo, s.d}] = true
		pc.ackedRepos[s.repo] = true
		pc.mu.Unlock()
		// The blob is readable from its repository at once.
		status, h, err = pc.do(ctx, http.MethodHead, "/v2/"+s.repo+"/blobs/"+s.d.String(), nil, nil)
		if err == nil && (status != http.StatusOK || h.Get("Content-Length") != strconv.FormatInt(total, 10)) {
			pc.fail("HEAD of blob %s in %s after its PUT: %d, Content-Length %s, want 200 and %d", s.d, s.repo, status, h.Get("Content-Length"), total)
		}
		return true, nil
	}
	s.pending, s.sent = http.MethodPatch, s.acked+chunk
	status, h, err = pc.sdo(ctx, s, http.MethodPatch, s.loc, s.data[s.acked:s.acked+chunk], map[string]string{
		"Content-Range": fmt.Sprintf("%d-%d", s.acked, s.acked+chunk-1),
		"Content-Type":  "application/octet-stream",
	})
	if err != nil {
		pc.cut("PATCH of session "+s.id, err)
		return false, err
	}
	n, rerr := rangeSize(h.Get("Range"))
	if status != http.StatusAccepted || rerr != nil || n != s.acked+chunk {
		pc.fail("PATCH %s (%d-%d): %d, Range %q, want 202 and 0-%d", s.loc, s.acked, s.acked+chunk-1, status, h.Get("Range"), s.acked+chunk-1)
		return true, nil
	}
	s.acked, s.pending = n, ""
	pc.mu.Lock()
	pc.stats.chunks++
	pc.mu.Unlock()
	return false, nil
}

// start starts heron serve --push over the tree.
func (pc *pushCrash) start(what string) {
	pc.t.Helper()
	s, err := heronproc.StartServe("heron serve --push ("+what+")", pc.pt.command, pc.pt.root, 20*time.Second,
		"--push", "--delete", "--insecure-anonymous-push")
	if err != nil {
		pc.t.Fatal(err)
	}
	pc.srv, pc.host = s, s.Addr
	pc.killing.Store(false)
}

// kill sends SIGKILL to the server's PID and waits until it is gone.
func (pc *pushCrash) kill() {
	pc.killing.Store(true)
	_ = pc.srv.Cmd.Process.Kill()
	// Stop waits for the exit the SIGKILL caused (it reports it as an
	// error, which is expected here).
	_ = pc.srv.Stop()
	pc.tr.CloseIdleConnections()
}

// serverErrors returns the lines the server logged at level ERROR.
func (pc *pushCrash) serverErrors() []string {
	var out []string
	for _, l := range strings.Split(pc.srv.Log.String(), "\n") {
		if strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return out
}

// checkAfterKill reads the tree while no server runs: it verifies, every
// tag names what the last answer said (or what a request the kill cut
// meant), and every blob a PUT got 201 for is listed where it was pushed.
func (pc *pushCrash) checkAfterKill(what string) []string {
	pc.mu.Lock()
	acked := maps.Clone(pc.ackedRepos)
	pc.mu.Unlock()
	repos, problems := pc.pt.check(func(repo string) bool { return !acked[repo] })
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for _, k := range slices.SortedFunc(maps.Keys(pc.allowed), func(a, b tagKey) int { return strings.Compare(a.String(), b.String()) }) {
		var cur digest.Digest
		if r := repos[k.repo]; r != nil {
			cur = r.Tags[k.tag]
		}
		if !slices.Contains(pc.allowed[k], cur) {
			problems = append(problems, fmt.Sprintf("tag %s names %q: the last answer said %q, and the requests the kill cut meant %v", k, cur, pc.acked[k], pc.allowed[k]))
			continue
		}
		if cur != pc.acked[k] {
			pc.stats.landed++
			pc.changed[k] = true
		}
		pc.allowed[k], pc.acked[k] = []digest.Digest{cur}, cur
	}
	for name, r := range repos {
		for tag := range r.Tags {
			if _, ok := pc.allowed[tagKey{name, tag}]; !ok {
				problems = append(problems, fmt.Sprintf("tag %s:%s, which no client pushed", name, tag))
			}
		}
	}
	for rb := range pc.ackedBlobs {
		r := repos[rb.repo]
		if r == nil {
			problems = append(problems, fmt.Sprintf("repository %s, into which blob %s was pushed (201), is gone", rb.repo, rb.d))
			continue
		}
		if b, ok := r.Blobs[rb.d]; !ok || !b.IsStored() {
			problems = append(problems, fmt.Sprintf("blob %s, pushed into %s (201), is not listed there", rb.d, rb.repo))
		}
	}
	problems = append(problems, pc.failures...)
	pc.failures = nil
	for i := range problems {
		problems[i] = what + ": " + problems[i]
	}
	return problems
}

// pull pulls the tags of keys (those that name something) through the
// running server (go-containerregistry for the manifests) and checks that
// every manifest and blob comes whole, hashing to its digest.
func (pc *pushCrash) pull(keys []tagKey) []string {
	var problems []string
	ctx := context.Background()
	for _, k := range keys {
		pc.mu.Lock()
		want := pc.acked[k]
		isIndex := pc.isIndex[want]
		pc.mu.Unlock()
		if want == "" {
			continue
		}
		ref, err := name.NewTag(pc.host+"/"+k.String(), name.Insecure)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		desc, err := remote.Get(ref, pc.remoteOptions(ctx)...)
		if err != nil {
			problems = append(problems, fmt.Sprintf("pull %s: %v", k, err))
			continue
		}
		if digest.Digest(desc.Digest.String()) != want {
			problems = append(problems, fmt.Sprintf("pull %s: %s, the tree says %s", k, desc.Digest, want))
			continue
		}
		if err := pc.pullWhole(ref.Context(), want, desc.Manifest, isIndex); err != nil {
			problems = append(problems, fmt.Sprintf("pull %s: %v", k, err))
		}
		pc.stats.pulls++
	}
	return problems
}

// pullWhole checks manifest raw of repo, which must hash to want, and
// pulls what it references: the children of an index (by digest), the
// config and layers of an image, each hashed as it streams.
func (pc *pushCrash) pullWhole(repo name.Repository, want digest.Digest, raw []byte, isIndex bool) error {
	if got := digest.FromBytes(raw); got != want {
		return fmt.Errorf("manifest %s: the body hashes to %s", want, got)
	}
	if isIndex {
		idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return fmt.Errorf("index %s: %w", want, err)
		}
		for _, m := range idx.Manifests {
			d := digest.Digest(m.Digest.String())
			desc, err := remote.Get(repo.Digest(m.Digest.String()), pc.remoteOptions(context.Background())...)
			if err != nil {
				return fmt.Errorf("index %s: child %s: %w", want, d, err)
			}
			if err := pc.pullWhole(repo, d, desc.Manifest, false); err != nil {
				return fmt.Errorf("index %s: %w", want, err)
			}
		}
		return nil
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("manifest %s: %w", want, err)
	}
	for _, b := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		d := digest.Digest(b.Digest.String())
		resp, err := pc.hc.Get("http://" + pc.host + "/v2/" + repo.RepositoryStr() + "/blobs/" + d.String())
		if err != nil {
			return fmt.Errorf("manifest %s: blob %s: %w", want, d, err)
		}
		v := d.Verifier()
		n, err := io.Copy(v, resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode != http.StatusOK:
			return fmt.Errorf("manifest %s: blob %s: %s", want, d, resp.Status)
		case err != nil:
			return fmt.Errorf("manifest %s: blob %s: %w", want, d, err)
		case n != b.Size || !v.Verified():
			return fmt.Errorf("manifest %s: blob %s: %d bytes (want %d) that do not hash to it", want, d, n, b.Size)
		}
	}
	return nil
}

// runPushCrash is the push crash test over pt: kills rounds of pushes.
func runPushCrash(t *testing.T, pt *pushTree, kills int, seed uint64, budget time.Duration, label string) {
	start := time.Now()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	pc := &pushCrash{
		t: t, pt: pt, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x70757368)),
		tr: tr, hc: &http.Client{Timeout: 60 * time.Second, Transport: tr},
		allowed: map[tagKey][]digest.Digest{}, acked: map[tagKey]digest.Digest{}, isIndex: map[digest.Digest]bool{},
		ackedRepos: map[string]bool{}, ackedBlobs: map[repoBlob]bool{}, changed: map[tagKey]bool{},
		byID: map[string]*handSession{},
	}
	defer tr.CloseIdleConnections()
	t.Cleanup(func() {
		// A server left running by a failure (a stopped one is reaped
		// already, and neither call signals anything then).
		if pc.srv != nil {
			_ = pc.srv.Cmd.Process.Kill()
			_ = pc.srv.Stop()
		}
	})
	var maxMidway int
	var spentCheck time.Duration
	for epoch := range kills {
		if time.Since(start) > budget {
			t.Fatalf("%d kills in %s, fewer than the %d wanted (time budget %s)", epoch, time.Since(start).Round(time.Second), kills, budget)
		}
		pc.start(fmt.Sprintf("round %d", epoch+1))
		if epoch > 0 {
			// The tags that changed: pulled whole through the new server.
			var keys []tagKey
			for k := range pc.changed {
				keys = append(keys, k)
			}
			slices.SortFunc(keys, func(a, b tagKey) int { return strings.Compare(a.String(), b.String()) })
			pc.rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
			clear(pc.changed)
			if problems := pc.pull(keys[:min(len(keys), 8)]); len(problems) > 0 {
				t.Fatalf("%s round %d (seed %d): after the restart: %s", label, epoch+1, seed, strings.Join(problems, "\n"))
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for id := range pushPushers {
			wg.Go(func() { pc.pusher(ctx, id, epoch) })
		}
		wg.Go(func() { pc.chunker(ctx, epoch, true) })
		delay := 50*time.Millisecond + time.Duration(pc.rng.Int64N(int64(pt.round-50*time.Millisecond)))
		time.Sleep(delay)
		errLines := pc.serverErrors()
		pc.kill()
		cancel()
		wg.Wait()
		what := fmt.Sprintf("%s round %d (seed %d), SIGKILL after %s", label, epoch+1, seed, delay)
		maxMidway = max(maxMidway, len(pc.sessions))
		t0 := time.Now()
		problems := pc.checkAfterKill(what)
		spentCheck += time.Since(t0)
		for _, l := range errLines {
			problems = append(problems, what+": heron serve logged: "+l)
		}
		if len(problems) > 0 {
			t.Fatalf("%d problem(s):\n%s", len(problems), strings.Join(problems, "\n"))
		}
	}

	// A last server, not killed: the sessions the kills cut are resumed
	// and finished, every tag is pulled whole, half the abandoned
	// sessions are cancelled and the others left for gc.
	pc.start("final")
	pc.chunker(context.Background(), kills, false)
	keys := slices.SortedFunc(maps.Keys(pc.acked), func(a, b tagKey) int { return strings.Compare(a.String(), b.String()) })
	problems := pc.pull(keys)
	for i, s := range pc.abandoned {
		if i%2 == 0 {
			continue
		}
		if status, _, err := pc.do(context.Background(), http.MethodDelete, s.loc, nil, nil); err != nil || status != http.StatusNoContent {
			problems = append(problems, fmt.Sprintf("DELETE of abandoned session %s: %d %v, want 204", s.loc, status, err))
		}
	}
	problems = append(problems, pc.failures...)
	for _, l := range pc.serverErrors() {
		problems = append(problems, "heron serve logged: "+l)
	}
	if err := pc.srv.Stop(); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		t.Fatalf("%s (seed %d), after the kills: %d problem(s):\n%s", label, seed, len(problems), strings.Join(problems, "\n"))
	}
	if len(pc.sessions) > 0 {
		t.Fatalf("%s: %d sessions were not finished by the last server", label, len(pc.sessions))
	}

	// heron gc --grace 0s removes the leftovers: every upload session
	// (those the kills cut in go-containerregistry's pushes, the abandoned
	// ones), temporary files, blobs no repository lists.
	before, err := pt.keys()
	if err != nil {
		t.Fatal(err)
	}
	uploadsBefore := countUploadKeys(before)
	out, err := pt.command("gc", "--root", pt.root, "--grace", "0s", "-o", "json").Output()
	if err != nil {
		t.Fatalf("heron gc --grace 0s: %v\n%s", err, out)
	}
	var gc struct {
		Deleted []struct {
			Kind string `json:"kind"`
		} `json:"deleted"`
		Uploads int `json:"uploads"`
	}
	if err := json.Unmarshal(out, &gc); err != nil {
		t.Fatalf("heron gc -o json: %v\n%s", err, out)
	}
	gcKinds := map[string]int{}
	for _, d := range gc.Deleted {
		gcKinds[d.Kind]++
	}
	repos, problems := pt.check(nil)
	after, err := pt.keys()
	if err != nil {
		t.Fatal(err)
	}
	listed := map[digest.Digest]bool{}
	for _, r := range repos {
		for d := range r.Manifests {
			listed[d] = true
		}
		for d, b := range r.Blobs {
			if b.IsStored() {
				listed[d] = true
			}
		}
	}
	locks := map[string]string{}
	for _, id := range pc.ids {
		sk, _ := layout.UploadStateKey(id)
		lk, _ := layout.LockKey(sk)
		locks[lk] = id
	}
	for _, k := range after {
		if _, _, _, ok := layout.UploadFromKey(k); ok {
			problems = append(problems, "after heron gc --grace 0s: "+k+" is left of an upload session")
		}
		if id, ok := locks[k]; ok {
			problems = append(problems, fmt.Sprintf("after heron gc --grace 0s: the lock file %s of upload session %s is left; the session's requests:\n  %s", k, id, strings.Join(pc.byID[id].log, "\n  ")))
		}
		switch kind, _ := classify(k); kind {
		case kindTemp:
			problems = append(problems, "after heron gc --grace 0s: a temporary file is left: "+k)
		case kindBlob:
			if d, _ := layout.DigestFromBlobKey(k); !listed[d] {
				problems = append(problems, fmt.Sprintf("after heron gc --grace 0s: blob %s is listed by no repository", d))
			}
		}
	}
	for k, d := range pc.acked {
		var cur digest.Digest
		if r := repos[k.repo]; r != nil {
			cur = r.Tags[k.tag]
		}
		if cur != d {
			problems = append(problems, fmt.Sprintf("after heron gc --grace 0s: tag %s names %q, want %q", k, cur, d))
		}
	}
	if len(problems) > 0 {
		t.Fatalf("%s (seed %d): %d problem(s):\n%s", label, seed, len(problems), strings.Join(problems, "\n"))
	}
	st := pc.stats
	var gcParts []string
	for _, k := range slices.Sorted(maps.Keys(gcKinds)) {
		gcParts = append(gcParts, fmt.Sprintf("%d %s", gcKinds[k], k))
	}
	fmt.Printf("%s: %d kills survived, %d sessions resumed (%s tree, seed %d, %s)\n", label, kills, st.resumed, pt.kind, seed, time.Since(start).Round(time.Second))
	fmt.Printf("%s: %d pushes answered 201 (%d indexes, %d of images already in the tree), %d cut by a kill, %d tag deletes (%d cut); "+
		"%d tags took the value of a request the kill cut; %d tags pulled whole through a restarted server\n",
		label, st.pushes, st.indexes, st.repushes, st.pushesCut, st.deletes, st.deletesCut, st.landed, st.pulls)
	fmt.Printf("%s: hand sessions: %d started, %d chunks, %d finished (%d after a kill, resumed from the offset GET gave), %d finished by a PUT the kill cut, "+
		"%d cancelled, %d abandoned; %d mid-way at a kill at most; %d monolithic uploads and %d mounts answered 201; checks after the kills took %s\n",
		label, st.sessions, st.chunks, st.finished, st.resumed, st.finishedUnanswered, st.cancelled, st.abandoned, maxMidway, st.monolithic, st.mounts, spentCheck.Round(time.Millisecond))
	fmt.Printf("%s: heron gc --grace 0s expired %d upload sessions (%d files under %s before) and deleted %d files (%s); the tree then verified, with no session, temporary file or unlisted blob left\n",
		label, gc.Uploads, uploadsBefore, layout.UploadsDirKey(), len(gc.Deleted), strings.Join(gcParts, ", "))
}

// countUploadKeys counts the keys of upload sessions.
func countUploadKeys(keys []string) int {
	n := 0
	for _, k := range keys {
		if _, _, _, ok := layout.UploadFromKey(k); ok {
			n++
		}
	}
	return n
}

// crashSeed is HERON_CRASH_SEED, or a new seed.
func crashSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HERON_CRASH_SEED"); s != "" {
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatalf("HERON_CRASH_SEED=%q: %v", s, err)
		}
	}
	return seed
}

// TestCrashPush kills `heron serve --push --delete` with SIGKILL at random
// moments (HERON_CRASH_PUSH_KILLS times: 20, 8 with -short) while three
// go-containerregistry clients push small random images and indexes into
// six repositories (and delete tags), and a hand-made client drives
// chunked upload sessions with PATCHes, so that kills find sessions
// mid-way; the server is started again on the same tree after each. After
// every kill the tree verifies (heron verify --deep and the test's own
// check of every file), every tag names what the last answer said (or
// what a request the kill cut meant), every blob whose PUT got 201 is
// listed, and the tags that changed pull whole through the new server;
// each session the kill cut mid-way resumes (GET: 204 with a Range that
// is what was answered or what was sent; PATCH the rest from there; PUT:
// 201) or, only when the kill cut its PUT or DELETE, is unknown. At the
// end heron gc --grace 0s must leave no upload session, no temporary file
// and no blob no repository lists, and the tree must verify.
// HERON_CRASH_SEED replays the test's choices (not the timing).
func TestCrashPush(t *testing.T) {
	kills := envInt(t, "HERON_CRASH_PUSH_KILLS", 20)
	if testing.Short() && os.Getenv("HERON_CRASH_PUSH_KILLS") == "" {
		kills = 8
	}
	seed := crashSeed(t)
	budget := envDuration(t, "HERON_CRASH_BUDGET", 5*time.Minute)
	t.Logf("seed %d: rerun with HERON_CRASH_SEED=%d HERON_CRASH_PUSH_KILLS=%d", seed, seed, kills)
	tree := filepath.Join(t.TempDir(), "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	memo := checkedBlobs{}
	pt := &pushTree{
		kind:  "folder",
		root:  tree,
		round: 1200 * time.Millisecond,
		check: func(mayLag func(string) bool) (map[string]*layout.Repository, []string) {
			var problems []string
			if _, err := os.Stat(filepath.Join(tree, layout.LayoutFileKey())); errors.Is(err, fs.ErrNotExist) {
				// Nothing was written yet (the first server was killed
				// before any write).
				return nil, nil
			}
			if _, err := verifyTree(tree, mayLag); err != nil {
				problems = append(problems, err.Error())
			}
			st, found, err := checkTree(tree, memo)
			if err != nil {
				t.Fatal(err)
			}
			problems = append(problems, found...)
			listed := map[string]bool{}
			for _, n := range st.catalog {
				listed[n] = true
			}
			for n := range st.repos {
				if !listed[n] && (mayLag == nil || !mayLag(n)) {
					problems = append(problems, fmt.Sprintf("repository %s is not in the catalog, though a write to it was answered 201", n))
				}
			}
			return st.repos, problems
		},
		keys: func() ([]string, error) {
			snap, err := takeSnapshot(tree)
			return slices.Collect(maps.Keys(snap)), err
		},
		blob: func(d digest.Digest) error {
			key, err := layout.BlobKey(d)
			if err != nil {
				return err
			}
			f, err := os.Open(layout.Root(tree).Path(key))
			if err != nil {
				return err
			}
			defer f.Close()
			v := d.Verifier()
			if _, err := io.Copy(v, f); err != nil {
				return err
			}
			if !v.Verified() {
				return fmt.Errorf("%s does not hash to its digest", key)
			}
			return nil
		},
	}
	runPushCrash(t, pt, kills, seed, budget, "crash (push)")
}

// TestCrashPushBucket is TestCrashPush with the tree in an S3-compatible
// bucket (versitygw, started by internal/s3test), with fewer kills
// (HERON_CRASH_PUSH_S3_KILLS: 8, 4 with -short). The checks after each kill
// are TestCrashBucket's (publish.VerifyTree over store/s3, every blob
// object hashed by the test), with the same rules for tags, blobs and
// sessions.
func TestCrashPushBucket(t *testing.T) {
	kills := envInt(t, "HERON_CRASH_PUSH_S3_KILLS", 8)
	if testing.Short() && os.Getenv("HERON_CRASH_PUSH_S3_KILLS") == "" {
		kills = 4
	}
	seed := crashSeed(t)
	budget := envDuration(t, "HERON_CRASH_BUDGET", 5*time.Minute)
	if !hasVerify || !hasGC {
		t.Skip("this heron has no verify or no gc")
	}
	t.Logf("seed %d: rerun with HERON_CRASH_SEED=%d HERON_CRASH_PUSH_S3_KILLS=%d", seed, seed, kills)
	srv := s3test.Start(t)
	ctx := context.Background()
	b := &bucketCrash{t: t, ctx: ctx, srv: srv, env: srv.Env(), root: srv.URL("tree"), prefix: "tree/",
		client: srv.Client(), hashed: map[string]string{}}
	var err error
	b.st, err = s3store.Open(ctx, b.root, s3store.Options{Endpoint: srv.Endpoint, Region: s3test.Region, Credentials: srv.Credentials()})
	if err != nil {
		t.Fatal(err)
	}
	pt := &pushTree{
		kind:  "bucket",
		root:  b.root,
		env:   b.env,
		round: 3 * time.Second,
		check: func(mayLag func(string) bool) (map[string]*layout.Repository, []string) {
			snap := b.settle()
			if _, ok := snap.objects[layout.LayoutFileKey()]; !ok {
				return nil, nil
			}
			st, problems := b.check(snap, mayLag)
			return st.repos, problems
		},
		keys: func() ([]string, error) {
			snap, err := b.snapshot()
			return slices.Collect(maps.Keys(snap.objects)), err
		},
		blob: func(d digest.Digest) error {
			key, err := layout.BlobKey(d)
			if err != nil {
				return err
			}
			snap, err := b.snapshot()
			if err != nil {
				return err
			}
			o, ok := snap.objects[key]
			if !ok {
				return fmt.Errorf("%s is missing", key)
			}
			return b.hashBlob(key, o)
		},
	}
	runPushCrash(t, pt, kills, seed, budget, "crash (push, s3)")
}
