package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newCmdReshard() *cobra.Command {
	var root treeRoot
	cmd := &cobra.Command{
		Use:   "reshard --root DIR [NAME ...]",
		Short: "Rewrite repository files in the form this heron writes (shards for large repositories)",
		Long: `reshard reads each repository NAME (every repository in the catalog when
none is given) whole, under its lock, and rewrites the ones whose form
changes: a repository with more than 1,000 tags (or manifests, blobs, or
referrer subjects) keeps them in shard files, so that a request reads the
repository file and one shard (docs/layout.md); one that shrank to 500 or
fewer keeps them in its file again. It prints the names it rewrote.

A tree written by an older heron needs nothing: it is served as it is, and
a publish into a large repository shards it. reshard does it at once, for
every repository, e.g. after an upgrade or after a copy made by another
writer. Shard files the old repository files named are removed; heron gc
removes any left by a writer that was killed.`,
		Example: `  heron reshard --root /srv/heron
  heron reshard --root /srv/heron ci/nightly`,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := root.publisher(cmd.Context())
			if err != nil {
				return err
			}
			rewritten, err := p.Reshard(cmd.Context(), args...)
			for _, name := range rewritten {
				fmt.Fprintf(cmd.OutOrStdout(), "rewrote %s\n", name)
			}
			return err
		},
	}
	root.addFlags(cmd.Flags(), "the heron tree (required)")
	_ = cmd.MarkFlagRequired("root")
	return cmd
}
