package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/publish/source"
	"github.com/spf13/cobra"
)

// publishFlags are the flags of heron publish, shared by its two modes:
// one SOURCE (publishImage) and --batch FILE (publishBatch, in
// publish_batch.go).
type publishFlags struct {
	root        treeRoot
	to          []string
	blobBaseURL string
	batch       string
	prune       bool
	policy      string
	insecure    bool
	quiet       bool
	output      string
}

func newCmdPublish() *cobra.Command {
	var f publishFlags
	cmd := &cobra.Command{
		Use:   "publish SOURCE --root DIR --to NAME:TAG [--to NAME:TAG ...] | publish --root DIR --batch FILE [--prune]",
		Short: "Publish an image into a heron tree",
		Long: `Publish copies an image, with every blob and manifest it references, into the
heron tree at --root, and tags it NAME:TAG in each repository given with --to.

SOURCE is one of:
  oci:DIR[:REF]                    an OCI image layout folder. REF is the
                                   org.opencontainers.image.ref.name annotation
                                   (or the digest) of an entry of index.json;
                                   without it, index.json must list one entry.
  oci-archive:FILE[:REF]           a tar of an OCI image layout.
  docker-archive:FILE[:NAME:TAG]   a "docker save" tarball; NAME:TAG or @N (the
  docker-archive:FILE[:@N]         N-th image, from 0) picks one image when it
                                   holds several.
  docker://HOST/NAME:TAG           an image in a registry, read with your docker
  docker://HOST/NAME@DIGEST        credentials (~/.docker/config.json or
                                   $DOCKER_CONFIG, credential helpers included).
                                   Plain HTTP needs --insecure. Requests that
                                   fail with 408, 429 or 5xx are retried.

Single-platform images, multi-platform indexes (with all their children), OCI
and Docker media types and OCI 1.1 artifacts are published with their
manifests byte for byte, so digests do not change. A docker save tarball holds
no registry manifest: the Docker schema 2 manifest that go-containerregistry
builds from it (with gzip-compressed layers) is what is published, and its
digest is the one printed.

Every byte is verified against its digest while it is written. Content the
tree already holds is not copied again (nor read from the source), and
publishing the same image again changes nothing. A failed publish leaves the
tree as it was.

With --policy on_demand (registry sources only), the tags and every manifest
are stored but no blob the tree lacks: the repository file lists those as
not stored and records the registry to fetch them from. A later publish with
the default --policy immediate stores them.

On a terminal, a progress bar per blob in flight and a total are drawn on
standard error (not with --quiet). --output json prints a summary for CI on
standard output instead of the NAME:TAG@DIGEST lines. See docs/publish.md.

With --batch FILE, publish brings the tree to what a batch file lists: many
repositories, each with its tags, the source of each tag (in the syntax
above) and optional settings (blobBaseURL, protected, policy). It is
incremental: a tag whose source's manifest it names already is skipped
without reading the source's blobs, and a run that changes nothing writes
nothing. --prune also removes the tags and repositories the file does not
list. See docs/publish-batch.md.`,
		Example: `  heron publish oci:./out:v1 --root /srv/heron --to team/app:v1 --to team/app:latest
  heron publish docker-archive:app.tar:app:1.0 --root /srv/heron --to app:1.0
  heron publish docker://registry.example.com/acme/app:1.4 --root /srv/heron --to acme/app:1.4 --output json
  heron publish docker://localhost:5000/app@sha256:… --insecure --policy on_demand --root /srv/heron --to app:mirror
  heron publish --root /srv/heron --batch export.yaml --prune`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(f.output); err != nil {
				return err
			}
			pol, err := publish.ParsePolicy(f.policy)
			if err != nil {
				return fmt.Errorf("--policy: %w", err)
			}
			if f.batch != "" {
				return publishBatch(cmd, f, pol, args)
			}
			return publishImage(cmd, f, pol, args)
		},
	}
	fs := cmd.Flags()
	f.root.addFlags(fs, "the heron tree to publish into (required; created if missing or empty)")
	fs.StringArrayVar(&f.to, "to", nil, "NAME:TAG to publish the image as; repeat for several")
	fs.StringVar(&f.blobBaseURL, "blob-base-url", "", "set the repositories' blobBaseURL: blobs are redirected to URL/blobs/<alg>/<hex>")
	fs.StringVar(&f.batch, "batch", "", "publish the repositories, tags and sources a YAML or JSON batch file lists, incrementally (docs/publish-batch.md)")
	fs.BoolVar(&f.prune, "prune", false, "with --batch: remove the tags and repositories the batch file does not list")
	fs.StringVar(&f.policy, "policy", string(publish.PolicyImmediate), "immediate: store every blob; on_demand: store the manifests, list the blobs the tree lacks and record the registry to fetch them from")
	fs.BoolVar(&f.insecure, "insecure", false, "allow plain HTTP, and HTTPS without verifying the certificate, for a docker:// source")
	fs.BoolVarP(&f.quiet, "quiet", "q", false, "no progress bars and no summary on standard error")
	fs.StringVarP(&f.output, "output", "o", "text", "text: NAME:TAG@DIGEST lines; json: a summary for CI (repositories, tags, bytes written and skipped)")
	_ = cmd.MarkFlagRequired("root")
	return cmd
}

// publisher returns the publisher of the flags for policy pol, and the
// progress bars it draws on standard error: nil with --quiet or when that
// is not a terminal. The caller finishes them when the publish is done.
func (f publishFlags) publisher(cmd *cobra.Command, pol publish.Policy) (*publish.Publisher, *bars, error) {
	sink, err := f.root.open(cmd.Context())
	if err != nil {
		return nil, nil, err
	}
	opts := []publish.Option{publish.WithBlobBaseURL(f.blobBaseURL), publish.WithPolicy(pol)}
	var progress *bars
	if !f.quiet && isTerminal(cmd.ErrOrStderr()) {
		progress = newBars(cmd.Context(), cmd.ErrOrStderr())
		opts = append(opts, publish.WithProgress(progress))
	}
	return publish.New(sink, opts...), progress, nil
}

// openSource opens a SOURCE as the flags say: --insecure, and heron's
// user agent for registries.
func (f publishFlags) openSource(spec string) (source.Source, error) {
	return source.ParseWith(spec, source.WithInsecure(f.insecure), source.WithUserAgent("heron"))
}

// publishImage is heron publish SOURCE --to NAME:TAG...: it prints
// NAME:TAG@DIGEST per target and a summary on standard error, or the JSON
// summary with --output json.
func publishImage(cmd *cobra.Command, f publishFlags, pol publish.Policy, args []string) error {
	if f.prune {
		return errors.New("--prune goes with --batch")
	}
	if len(args) == 0 {
		return errors.New("give a SOURCE, or --batch FILE")
	}
	targets, err := publish.ParseTargets(f.to)
	if errors.Is(err, publish.ErrNoTargets) {
		return fmt.Errorf("%w (--to NAME:TAG)", err)
	}
	if err != nil {
		return err
	}
	src, err := f.openSource(args[0])
	if err != nil {
		return err
	}
	defer src.Close()
	p, progress, err := f.publisher(cmd, pol)
	if err != nil {
		return err
	}
	res, err := p.Publish(cmd.Context(), src, targets)
	progress.finish(err == nil)
	if err != nil {
		return err
	}
	return printPublished(cmd.OutOrStdout(), cmd.ErrOrStderr(), res, f.output, f.quiet)
}

// printPublished prints what a publish did: NAME:TAG@DIGEST lines on out
// and, unless quiet, the counts on errOut; or the summary as JSON.
func printPublished(out, errOut io.Writer, res *publish.Result, output string, quiet bool) error {
	if output == "json" {
		return writeJSON(out, res.Summary())
	}
	for _, t := range res.Targets {
		fmt.Fprintf(out, "%s@%s\n", t, res.Digest)
	}
	if quiet {
		return nil
	}
	fmt.Fprintf(errOut, "%d manifest(s), %d blob(s): wrote %d (%d bytes), already present %d (%d bytes)",
		res.Manifests, res.Blobs, res.BlobsWritten, res.BytesWritten, res.BlobsSkipped, res.BytesSkipped)
	if res.BlobsDeferred > 0 {
		fmt.Fprintf(errOut, ", left upstream %d (%d bytes)", res.BlobsDeferred, res.BytesDeferred)
	}
	fmt.Fprintln(errOut)
	return nil
}
