package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/publish/source"
	"github.com/heron-registry/heron/redirector"
	"github.com/heron-registry/heron/redirector/httpd"
	"github.com/spf13/cobra"
)

func newCmdServe() *cobra.Command {
	var (
		root                treeRoot
		logFormat, logLevel string
		pullThrough         []string
		c                   httpd.Config
		push                pushFlags
	)
	cmd := &cobra.Command{
		Use:   "serve --root DIR|s3://BUCKET/PREFIX",
		Short: "Serve a heron tree as an OCI registry (read-only unless --push)",
		Long: `serve answers the OCI Distribution API (/v2/...) read-only from the tree at
--root. It reads nothing at start-up but heron-layout.json, and each request
reads the repository's file and at most one blob.

Parsed repository files, manifests and catalog shards are cached, each cache
bounded by --cache-size entries, all of them together by about --cache-bytes
of memory. A cached repository file (and the catalog index) is checked
against the tree's change counter (.heron/changes), which heron's writers
increment: while it is unchanged, a hit costs no system call and the file
is stat'ed at most once a second. Without a counter to trust (a tree
written by another tool, NFS, overlayfs), the file is stat'ed on every
request. Either way a publish is seen by the next request; --cache-size 0
gives the same answers without caching. The Go runtime's soft memory limit
is set to --cache-bytes + 16 MiB unless GOMEMLIMIT or --memory-limit says
otherwise, so that memory stays flat under load.

With --blob-base-url (or a repository's own blobBaseURL), blob requests are
redirected (307) to <URL>/blobs/<alg>/<hex>, where a CDN or static host serves
the tree; --redirect-manifests redirects manifest GETs there too. With
--redirect-signing-key, those redirects carry an expiry and a signature the
CDN (an edge function) or nginx (secure_link) checks, so that it serves
only what heron sent clients to: docs/signed-urls.md.

With --root s3://BUCKET/PREFIX the tree is read from a bucket (credentials,
region and endpoint from the AWS SDK's standard settings, or --s3-endpoint):
repository files and the catalog index are cached and revalidated with a
conditional GET at most once per --revalidate-after, so that any number of
servers stay consistent within that window with no state of their own.
Blobs are redirected to the base URL when there is one, else to a URL the
bucket signs (presigned, valid --presign-expiry; reused while half of that
remains); --serve-blobs streams them through the server instead, verified.
See docs/deploy.md.

Content at request time (docs/mirror.md): a blob that an on_demand publish
listed but did not store is fetched from the repository's upstream when
first asked for (with this process's docker credentials), streamed to the
client verified, once for any number of clients, and stored (not with
--read-only). --pull-through PREFIX=URL makes the repositories under
PREFIX/ a cache of the registry at URL: a tag is published on_demand when
first pulled and checked upstream at most once per --pull-through-ttl;
containerd's ?ns=HOST mirror requests are answered from the cache whose
PREFIX is HOST.

Pushes (docs/push.md): --push accepts blob uploads and manifest PUTs from
docker, podman, crane, skopeo and oras into the tree, with the guarantees of
heron publish (verified content, atomic repository files, a manifest
accepted only when everything it references is there); --delete accepts
DELETE too. Writes need credentials: --push refuses to start without
--htpasswd, --token-key or --tls-client-ca, unless --insecure-anonymous-push.

Access (docs/access.md): --htpasswd FILE authenticates users (HTTP basic,
bcrypt, verified credentials cached); --token-key FILE adds the Docker token
flow (a token endpoint at /token issuing short-lived Ed25519-signed tokens
that every server sharing the key verifies offline); --access FILE says who
may pull, push and delete which repositories. Anonymous callers pull what
is public; a caller who may not read a repository cannot tell it from one
that does not exist. --tls-cert/--tls-key serve HTTPS (reloaded when the
files change); --tls-client-ca verifies client certificates, whose common
name is the user.

Operations: GET /healthz (liveness), /readyz (the tree is readable and of a
layout version this heron reads) and /metrics (Prometheus) are answered on
--addr, or on --metrics-addr alone when it is set. One log line per request
is written at level info (--log-level warn turns them off); errors name the
file concerned. On SIGTERM or SIGINT the server stops accepting connections
and waits up to --shutdown-timeout for the requests in flight.

Every flag can also be set by the environment variable HERON_<FLAG> (upper
case, "_" for "-": HERON_CACHE_SIZE) or by the YAML file --config names, whose
keys are the flags' names (cache-size: 0). The command line wins over the
environment, which wins over the file. See docs/operating.md.`,
		Example: `  heron serve --root /srv/heron --addr :5000
  heron serve --config /etc/heron/serve.yaml --log-format json
  HERON_ROOT=/srv/heron HERON_BLOB_BASE_URL=https://cdn.example.com/heron heron serve`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyConfig(cmd.Flags(), os.LookupEnv)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(cmd.ErrOrStderr(), logFormat, logLevel)
			if err != nil {
				return err
			}
			if c.PullThrough, err = parsePullThrough(pullThrough); err != nil {
				return err
			}
			if len(c.PullThrough) > 0 && c.ReadOnly {
				return errors.New("--pull-through writes what it fetches into the tree: it cannot be used with --read-only")
			}
			c.Logger = logger
			st, err := root.open(cmd.Context())
			if err != nil {
				return err
			}
			if root.bucket() {
				c.Store = st
				if c.RevalidateAfter == 0 {
					c.RevalidateAfter = -1 // Config's "every request"
				}
			}
			// Blobs an on_demand publish listed are fetched from their
			// upstream when first asked for, with this process's
			// credentials, and stored through a publisher of the tree
			// (not with --read-only).
			pub := publish.New(st, publish.WithLogger(logger))
			c.Filler = publish.NewFiller(pub, source.WithUserAgent("heron"))
			// Pull-through caches publish what clients ask for
			// on_demand, with the same publisher and credentials.
			c.Puller = pullerAdapter{publish.NewPuller(pub, source.WithUserAgent("heron"))}
			if err := push.configure(&c, pub); err != nil {
				return err
			}
			if len(c.PullThrough) > 0 || c.Pusher != nil {
				// A cache, or a registry pushed to, may start from
				// nothing: an empty or new root becomes an empty tree.
				if err := pub.Init(cmd.Context()); err != nil {
					return fmt.Errorf("%s: %w", root.root, err)
				}
			}
			return httpd.Run(cmd.Context(), root.root, c)
		},
	}
	f := cmd.Flags()
	f.String(configFlag, "", "read settings from this YAML file (keys are the flags' names; the command line and HERON_* variables win)")
	root.addFlags(f, "the tree to serve (required)")
	f.StringVar(&c.SpoolDir, "spool-dir", "", "where blobs fetched on demand are spooled while they are fetched and verified: a folder on a disk with room for the largest blobs in flight together, not a RAM-backed /tmp (default: the system's temporary folder)")
	f.BoolVar(&c.ReadOnly, "read-only", false, "never write the tree: blobs an on_demand publish left upstream are fetched, verified and streamed to the client, but not stored")
	f.StringSliceVar(&pullThrough, "pull-through", nil, "PREFIX=URL: make the repositories under PREFIX/ a cache of the registry at URL (https://HOST[:PORT], or http:// for plain HTTP); repeatable, comma-separated in HERON_PULL_THROUGH, a list in the config file")
	f.DurationVar(&c.PullThroughTTL, "pull-through-ttl", redirector.DefaultPullThroughTTL, "how long a tag of a pull-through cache is served from the tree before the upstream is asked again")
	f.BoolVar(&c.ServeBlobs, "serve-blobs", false, "with an s3:// root: stream blobs through the server (verified) rather than redirect to presigned URLs")
	f.DurationVar(&c.PresignExpiry, "presign-expiry", redirector.DefaultPresignExpiry, "with an s3:// root: how long a presigned blob URL is valid")
	f.DurationVar(&c.RevalidateAfter, "revalidate-after", redirector.DefaultRevalidateAfter, "with an s3:// root: how long a cached repository file is trusted before a conditional GET checks it (0: every request)")
	f.StringVar(&c.Addr, "addr", "127.0.0.1:5000", "address to listen on (host:port; port 0 picks a free one)")
	f.StringVar(&c.BlobBaseURL, "blob-base-url", "", "redirect blob requests to URL/blobs/<alg>/<hex> for repositories without a blobBaseURL of their own")
	f.StringVar(&c.RedirectSigningKey, "redirect-signing-key", "", "sign redirects to the blob base URL with the key in this file (at least 32 bytes; openssl rand -hex 32 > FILE)")
	f.StringVar(&c.RedirectSigningScheme, "redirect-signing-scheme", redirector.SigningHMACSHA256, "how redirects are signed: hmac-sha256 (CDN edge functions) or nginx (secure_link)")
	f.DurationVar(&c.RedirectSigningExpiry, "redirect-signing-expiry", redirector.DefaultSigningExpiry, "how long a signed redirect stays valid, at least (rounded up to a quarter of it, so that URLs repeat)")
	f.BoolVar(&c.RedirectManifests, "redirect-manifests", false, "redirect manifest GETs to the blob base URL too (HEAD is always answered directly)")
	f.IntVar(&c.CacheSize, "cache-size", redirector.DefaultCacheSize, "entries of each cache (parsed repository files, manifests, catalog shards); 0 turns caching off")
	f.Int64Var(&c.CacheBytes, "cache-bytes", redirector.DefaultCacheBytes, "approximate memory of all the caches together, in bytes")
	f.Int64Var(&c.MemoryLimit, "memory-limit", 0, "soft memory limit of the Go runtime, in bytes (0: --cache-bytes + 16 MiB, or GOMEMLIMIT when set; -1: none)")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info (one line per request), warn or error")
	f.StringVar(&c.MetricsAddr, "metrics-addr", "", "serve /metrics, /healthz and /readyz on this address only (default: on --addr)")
	f.BoolVar(&c.FastPath, "fast-path", true, "answer GET and HEAD requests of /v2/ on heron's own HTTP/1.1 loop, handing every other request to Go's net/http (false: net/http for all; docs/operating.md)")
	f.IntVar(&c.MaxConnections, "max-connections", httpd.DefaultMaxConnections, "most client connections open at once; more wait to be accepted (0: no limit)")
	f.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", httpd.DefaultReadHeaderTimeout, "time a client has to send a request's headers")
	f.DurationVar(&c.IdleTimeout, "idle-timeout", httpd.DefaultIdleTimeout, "time an idle keep-alive connection is kept open")
	f.DurationVar(&c.WriteTimeout, "write-timeout", 0, "time to send a whole response, blobs included (0: no limit; set it only when blobs are redirected)")
	f.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", httpd.DefaultShutdownTimeout, "on SIGTERM, time given to the requests in flight before their connections are closed")
	push.addFlags(f)
	addTLSFlags(f, &c)
	addAuthFlags(f, &c)
	_ = cmd.MarkFlagRequired("root")
	return cmd
}
