package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/heron-registry/heron/bench/load"
	"github.com/heron-registry/heron/bench/treegen"
	"golang.org/x/crypto/bcrypt"
)

// Pulls with authentication (issue 14). On the peers' tree, one heron
// serve without authentication and one with --htpasswd, --access and
// --token-key answer the same manifest GET by tag (the four-type Accept
// header, as the peers' scenario), taking turns round by round:
//
//	(a) the server without authentication (the baseline of every ratio);
//	(b) the other server, a repository the access file lets anonymous
//	    callers pull, requested without credentials;
//	(c) the same server, a repository only user bench may pull, requested
//	    with HTTP basic credentials on every request (as docker sends them
//	    after docker login to a registry that challenges for Basic);
//	(d) the same repository with a Bearer token from the server's /token
//	    endpoint, fetched once before each round and sent on every request.
//
// Before measuring it checks that the protected repository is protected:
// 401 without credentials, with a wrong password, with a token for another
// repository and with a damaged token; 200 with them.

// authConfig holds the flags of the scenario.
type authConfig struct {
	on, only bool
}

func (c *authConfig) addFlags() {
	flag.BoolVar(&c.on, "auth", true, "measure manifest pulls with authentication configured: public anonymous, basic credentials, a token (-auth=false skips it)")
	flag.BoolVar(&c.only, "auth-only", false, "measure pulls with authentication only (no peers, no tree sizes, no tags, no bucket, no on-demand, no profiles)")
}

// The user of the protected repository.
const (
	authUser     = "bench"
	authPassword = "bench-password"
)

// The ways of asking, in the order of the report; authPlain is the
// baseline.
const (
	authPlain = iota
	authPublic
	authBasic
	authBearer
	numAuthWays
)

var authWayNames = [numAuthWays]string{
	"(a) no authentication configured, anonymous",
	"(b) public repository, authentication configured, anonymous",
	"(c) protected repository, basic credentials on every request",
	"(d) protected repository, Bearer token on every request",
}

// authResult is the section of the report.
type authResult struct {
	public, protected string // the repositories
	access            string // the access file
	flags             string // the authenticated server's flags
	ways              [numAuthWays]*accum
	cpu               [numAuthWays]time.Duration // heron's CPU time during the measured loads
	memory            []string
}

// authFiles writes the htpasswd file (user authUser, bcrypt at the
// default cost, as htpasswd -B -C 10 would), the access file (public
// readable by anyone, protected by authUser only) and an Ed25519 token
// key into dir, and returns the server's flags.
func authFiles(dir, public, protected string) (flags []string, access string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(authPassword), bcrypt.DefaultCost)
	if err != nil {
		return nil, "", err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", err
	}
	access = fmt.Sprintf("rules:\n  - repositories: [%q]\n    anonymous: [pull]\n  - repositories: [%q]\n    users: {%s: [pull]}\n",
		public, protected, authUser)
	files := []struct {
		name string
		data []byte
	}{
		{"htpasswd", []byte(authUser + ":" + string(h) + "\n")},
		{"access.yaml", []byte(access)},
		{"token.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return nil, "", err
		}
	}
	return []string{"--htpasswd", filepath.Join(dir, "htpasswd"), "--access", filepath.Join(dir, "access.yaml"),
		"--token-key", filepath.Join(dir, "token.pem")}, access, nil
}

// basicAuth is the Authorization header of user and password.
func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// fetchToken asks the token endpoint of the server at addr for a pull
// token of repo with basic credentials, as docker does.
func fetchToken(addr, repo, user, password string) (string, error) {
	q := url.Values{"service": {"heron"}, "scope": {"repository:" + repo + ":pull"}}
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/token?"+q.Encode(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", basicAuth(user, password))
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: noRedirect}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /token: %s: %.200s", resp.Status, body)
	}
	var tr struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.Token == "" {
		return "", fmt.Errorf("GET /token: no token in %.200s", body)
	}
	return tr.Token, nil
}

// manifestRequest is the request of every way: the manifest of repo by
// tag, with the Accept header of the peers' scenario and authorization
// ("" for none).
func manifestRequest(fx *fixture, repo, authorization string) load.Request {
	h := http.Header{"Accept": {acceptManifests}}
	if authorization != "" {
		h.Set("Authorization", authorization)
	}
	return load.Request{Method: http.MethodGet, Path: fx.manifestPath(repo, "latest"), Header: h}
}

// sendOnce sends r to addr with net/http and returns the status and body.
func sendOnce(addr string, r load.Request) (*http.Response, []byte, error) {
	req, err := http.NewRequest(r.Method, "http://"+addr+r.Path, nil)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: noRedirect}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// checkAuthAnswers checks, before the load, that every way is answered
// with the manifest, and that the protected repository is protected.
func checkAuthAnswers(fx *fixture, plain, authed string, reqs [numAuthWays]load.Request, protected, otherToken string) error {
	for w, r := range reqs {
		addr := authed
		if w == authPlain {
			addr = plain
		}
		resp, body, err := sendOnce(addr, r)
		if err != nil {
			return fmt.Errorf("%s: %w", authWayNames[w], err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: GET %s: %s: %.200s", authWayNames[w], r.Path, resp.Status, body)
		}
		if err := checkManifest(fx, resp, body); err != nil {
			return fmt.Errorf("%s: %w", authWayNames[w], err)
		}
	}
	for _, c := range []struct{ what, authorization string }{
		{"without credentials", ""},
		{"with a wrong password", basicAuth(authUser, "not-"+authPassword)},
		{"with a token for another repository", "Bearer " + otherToken},
		{"with a damaged token", reqs[authBearer].Header.Get("Authorization") + "x"},
	} {
		resp, body, err := sendOnce(authed, manifestRequest(fx, protected, c.authorization))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("protected repository %s %s: %s, want 401: %.200s", protected, c.what, resp.Status, body)
		}
	}
	return nil
}

// measureAuth measures the section.
func measureAuth(ctx context.Context, cfg *config, fx *fixture, runDir string, rep *report) (*authResult, error) {
	tree, err := ensureTree(ctx, cfg.cacheDir, cfg.peerRepos, rep)
	if err != nil {
		return nil, err
	}
	res := &authResult{public: fx.repo, protected: treegen.RepositoryName(2)}
	flags, access, err := authFiles(filepath.Join(runDir, "auth"), res.public, res.protected)
	if err != nil {
		return nil, err
	}
	res.access = access
	res.flags = "--htpasswd htpasswd --access access.yaml --token-key token.pem"

	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	serve := func(name string, extra ...string) (*proc, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		argv := append([]string{cfg.heron, "serve", "--root", tree, "--addr", addr, "--log-level", "warn"}, extra...)
		p, err := start(name, addr, runDir, argv...)
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
		// /v2/ answers 401 to anonymous callers when authentication is
		// on: wait for the public manifest instead.
		return p, p.waitReady(ctx, "http://"+addr+fx.manifestPath(res.public, "latest"), 200, 10*time.Second)
	}
	plain, err := serve("heron-noauth")
	if err != nil {
		return nil, err
	}
	authed, err := serve("heron-auth", flags...)
	if err != nil {
		return nil, err
	}
	token, err := fetchToken(authed.addr, res.protected, authUser, authPassword)
	if err != nil {
		return nil, err
	}
	reqs := [numAuthWays]load.Request{
		authPlain:  manifestRequest(fx, res.public, ""),
		authPublic: manifestRequest(fx, res.public, ""),
		authBasic:  manifestRequest(fx, res.protected, basicAuth(authUser, authPassword)),
		authBearer: manifestRequest(fx, res.protected, "Bearer "+token),
	}
	other, err := fetchToken(authed.addr, res.public, authUser, authPassword)
	if err != nil {
		return nil, err
	}
	if err := checkAuthAnswers(fx, plain.addr, authed.addr, reqs, res.protected, other); err != nil {
		return nil, err
	}
	logf("authentication: every way answers the manifest, the protected repository refuses the others; measuring %d ways × %d rounds × %s",
		numAuthWays, cfg.rounds, cfg.warmup+cfg.duration)

	for w := range res.ways {
		res.ways[w] = newAccum()
	}
	for r := 0; r < cfg.rounds; r++ {
		for i := range numAuthWays {
			w := (i + r) % numAuthWays
			srv := authed
			if w == authPlain {
				srv = plain
			}
			req := reqs[w]
			if w == authBearer {
				// A token obtained once for the round, as a client
				// pulling an image does; the tokens expire after 5
				// minutes, longer than a round.
				tok, err := fetchToken(authed.addr, res.protected, authUser, authPassword)
				if err != nil {
					return nil, err
				}
				req = manifestRequest(fx, res.protected, "Bearer "+tok)
			}
			lr, cpu, err := authLoad(ctx, cfg, srv, req, int64(len(fx.img.Manifest)))
			if err != nil {
				return nil, err
			}
			res.ways[w].add(lr)
			res.cpu[w] += cpu
		}
	}
	for w, a := range res.ways {
		logf("%-62s %s", authWayNames[w], a.summary())
	}
	for _, p := range []*proc{plain, authed} {
		if peak, cur, err := memory(p.pid()); err == nil {
			res.memory = append(res.memory, fmt.Sprintf("%s %s peak, %s after", p.name, mb(peak), mb(cur)))
		}
	}
	return res, nil
}

// authLoad runs the warm-up, then the measured load, of req on the server
// p, and returns what was measured and p's CPU time (user and system)
// during the measured part: the cost of a request, which the machine's
// other work disturbs less than the rate. (The warm-up is a load of its
// own, so that the CPU read after it counts the measured part alone.)
func authLoad(ctx context.Context, cfg *config, p *proc, req load.Request, size int64) (*load.Result, time.Duration, error) {
	lc := load.Config{Addr: p.addr, Requests: []load.Request{req}, Concurrency: cfg.concurrency,
		ExpectStatus: http.StatusOK, ExpectBodySize: size}
	if cfg.warmup > 0 {
		w := lc
		w.Duration = cfg.warmup
		if _, err := load.Run(ctx, w); err != nil {
			return nil, 0, err
		}
	}
	c0, err := cpuTime(p.pid())
	if err != nil {
		return nil, 0, err
	}
	lc.Duration = cfg.duration
	res, err := load.Run(ctx, lc)
	if err != nil {
		return nil, 0, err
	}
	c1, err := cpuTime(p.pid())
	if err != nil {
		return nil, 0, err
	}
	return res, c1 - c0, ctx.Err()
}

// cpuPerRequest is heron's CPU time per request of way w.
func (r *authResult) cpuPerRequest(w int) time.Duration {
	if r.ways[w].requests == 0 {
		return 0
	}
	return r.cpu[w] / time.Duration(r.ways[w].requests)
}

// ratios returns the ratio of way w to the baseline, overall and round by
// round (sorted).
func (r *authResult) ratios(w int) (overall float64, byRound []float64) {
	base, a := r.ways[authPlain], r.ways[w]
	if base.rps() > 0 {
		overall = a.rps() / base.rps()
	}
	for i := range min(len(a.rounds), len(base.rounds)) {
		if base.rounds[i] > 0 {
			byRound = append(byRound, a.rounds[i]/base.rounds[i])
		}
	}
	slices.Sort(byRound)
	return overall, byRound
}

// markdown writes the section of the report.
func (r *authResult) markdown(b *strings.Builder, cfg *config) {
	fmt.Fprintf(b, "\n### Pulls with authentication (tree of %s repositories)\n\n", num(float64(cfg.peerRepos)))
	fmt.Fprintf(b, "- GET manifest by tag (the four-type Accept header), %d connections; two `heron serve` on the same tree, one without authentication, one with `%s` (user `%s`, bcrypt cost %d; an Ed25519 key); ways taking turns, each round starting with another\n",
		cfg.concurrency, r.flags, authUser, bcrypt.DefaultCost)
	fmt.Fprintf(b, "- public repository `%s`, protected repository `%s`; the access file:\n\n```yaml\n%s```\n\n", r.public, r.protected, r.access)
	b.WriteString("| request | req/s | rounds (req/s) | p50 | p99 | × (a) | × (a) round by round: median (min–max) | heron CPU per request | errors |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for w, a := range r.ways {
		x, xr := "", ""
		if w != authPlain {
			o, rs := r.ratios(w)
			x = fmt.Sprintf("%.2f", o)
			if len(rs) > 0 {
				xr = fmt.Sprintf("%.2f (%.2f–%.2f)", medianFloat(rs), rs[0], rs[len(rs)-1])
			}
		}
		c := fmt.Sprintf("%.1f µs", float64(r.cpuPerRequest(w))/float64(time.Microsecond))
		if w != authPlain && r.cpuPerRequest(authPlain) > 0 {
			c += fmt.Sprintf(" (%+.0f%%)", 100*(float64(r.cpuPerRequest(w))/float64(r.cpuPerRequest(authPlain))-1))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", authWayNames[w], num(a.rps()), a.spread(), dur(a.p(0.5)), dur(a.p(0.99)), x, xr, c, a.errors)
	}
	b.WriteString("\nheron's CPU per request is its user and system time (/proc, 10 ms ticks) during the measured loads divided by their requests; the machine's other work moves it less than the rates.\n")
	if len(r.memory) > 0 {
		fmt.Fprintf(b, "RSS of heron after these runs: %s.\n", strings.Join(r.memory, "; "))
	}
}

// targets checks the goals of issue 14.
func (r *authResult) targets(yes func(bool) string) [][3]string {
	goal := func(w int, what string, want float64) [3]string {
		o, rs := r.ratios(w)
		m := fmt.Sprintf("%.2f× (%s vs %s req/s", o, num(r.ways[w].rps()), num(r.ways[authPlain].rps()))
		if len(rs) > 0 {
			m += fmt.Sprintf("; rounds: median %.2f, %.2f–%.2f", medianFloat(rs), rs[0], rs[len(rs)-1])
		}
		m += ")"
		met := "—"
		if want > 0 {
			met = yes(o >= want)
		}
		return [3]string{what, m, met}
	}
	return [][3]string{
		goal(authPublic, "auth: GET of a public manifest with authentication configured ≥ 0.9× without", 0.9),
		goal(authBasic, "auth: GET of a protected manifest with basic credentials ≥ 0.7× without authentication", 0.7),
		goal(authBearer, "auth: the same with a Bearer token (no goal)", 0),
	}
}
