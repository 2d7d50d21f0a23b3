package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/publish/source"
	"github.com/spf13/cobra"
)

func newCmdPublish() *cobra.Command {
	var (
		root        string
		to          []string
		blobBaseURL string
		batch       string
		prune       bool
		policy      string
		insecure    bool
		quiet       bool
		output      string
	)
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
			if root == "" {
				return errors.New("--root is required")
			}
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			pol, err := publish.ParsePolicy(policy)
			if err != nil {
				return fmt.Errorf("--policy: %w", err)
			}
			opts := []publish.Option{publish.WithBlobBaseURL(blobBaseURL), publish.WithPolicy(pol)}
			var progress *bars
			if !quiet && isTerminal(cmd.ErrOrStderr()) {
				progress = newBars(cmd.Context(), cmd.ErrOrStderr())
				opts = append(opts, publish.WithProgress(progress))
			}
			if batch != "" {
				if len(args) > 0 || len(to) > 0 {
					return errors.New("--batch takes no SOURCE and no --to: the batch file lists them")
				}
				err := runBatch(cmd, publish.New(publish.NewFSSink(layout.Root(root)), opts...), batch, prune, output == "json",
					source.WithInsecure(insecure), source.WithUserAgent("heron"))
				if progress != nil {
					progress.finish(err == nil)
				}
				return err
			}
			if prune {
				return errors.New("--prune goes with --batch")
			}
			if len(args) == 0 {
				return errors.New("give a SOURCE, or --batch FILE")
			}
			if len(to) == 0 {
				return fmt.Errorf("%w (--to NAME:TAG)", publish.ErrNoTargets)
			}
			targets := make([]publish.Target, 0, len(to))
			for _, s := range to {
				t, err := publish.ParseTarget(s)
				if err != nil {
					return err
				}
				targets = append(targets, t)
			}
			src, err := source.ParseWith(args[0], source.WithInsecure(insecure), source.WithUserAgent("heron"))
			if err != nil {
				return err
			}
			defer src.Close()
			res, err := publish.New(publish.NewFSSink(layout.Root(root)), opts...).Publish(cmd.Context(), src, targets)
			if progress != nil {
				progress.finish(err == nil)
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(res.Summary())
			}
			for _, t := range res.Targets {
				fmt.Fprintf(out, "%s@%s\n", t, res.Digest)
			}
			if !quiet {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d manifest(s), %d blob(s): wrote %d (%d bytes), already present %d (%d bytes)",
					res.Manifests, res.Blobs, res.BlobsWritten, res.BytesWritten, res.BlobsSkipped, res.BytesSkipped)
				if res.BlobsDeferred > 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), ", left upstream %d (%d bytes)", res.BlobsDeferred, res.BytesDeferred)
				}
				fmt.Fprintln(cmd.ErrOrStderr())
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&root, "root", "", "the heron tree to publish into (created if missing or empty)")
	cmd.Flags().StringArrayVar(&to, "to", nil, "NAME:TAG to publish the image as; repeat for several")
	cmd.Flags().StringVar(&blobBaseURL, "blob-base-url", "", "set the repositories' blobBaseURL: blobs are redirected to URL/blobs/<alg>/<hex>")
	cmd.Flags().StringVar(&batch, "batch", "", "publish the repositories, tags and sources a YAML or JSON batch file lists, incrementally (docs/publish-batch.md)")
	cmd.Flags().BoolVar(&prune, "prune", false, "with --batch: remove the tags and repositories the batch file does not list")
	cmd.Flags().StringVar(&policy, "policy", string(publish.PolicyImmediate), "immediate: store every blob; on_demand: store the manifests, list the blobs the tree lacks and record the registry to fetch them from")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP, and HTTPS without verifying the certificate, for a docker:// source")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bars and no summary on standard error")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text: NAME:TAG@DIGEST lines; json: a summary for CI (repositories, tags, bytes written and skipped)")
	return cmd
}
