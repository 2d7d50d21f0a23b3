package main

import (
	"fmt"

	"github.com/heron-registry/heron/publish"
	"github.com/spf13/cobra"
)

func newCmdRm() *cobra.Command {
	var root treeRoot
	cmd := &cobra.Command{
		Use:   "rm --root DIR NAME[:TAG] [NAME[:TAG] ...]",
		Short: "Remove tags or whole repositories from a heron tree",
		Long: `rm NAME:TAG removes a tag from its repository, then drops from the
repository file the manifests that no remaining tag reaches (through index
children and referrers) and the blobs only they referenced. rm NAME removes
the repository: it is taken out of the catalog first, then its repository
file is deleted.

Content is never deleted from blobs/ by rm, since other repositories may
share it: heron gc removes what no repository lists. Every edit is made
under the tree's locks, so rm is safe while other heron commands write the
same tree. A tag or repository that does not exist is an error; the tags
are removed before the repositories.`,
		Example: `  heron rm --root /srv/heron team/app:1.0 team/app:1.1
  heron rm --root /srv/heron team/old-app`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rm, err := publish.ParseRemovals(args)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			p, err := root.publisher(cmd.Context())
			if err != nil {
				return err
			}
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			for _, rt := range rm.Tags {
				name := rt.Repository
				manifests, blobs, err := p.RemoveTags(ctx, name, rt.Tags...)
				if err != nil {
					return err
				}
				for _, t := range rt.Tags {
					fmt.Fprintf(out, "removed %s:%s\n", name, t)
				}
				if manifests+blobs > 0 {
					fmt.Fprintf(errOut, "%s: %d manifest(s) and %d blob(s) no tag reaches were dropped from the repository (heron gc deletes their bytes)\n", name, manifests, blobs)
				}
			}
			repos := rm.Repositories
			if len(repos) == 0 {
				return nil
			}
			removed, err := p.RemoveRepositories(ctx, repos...)
			for _, name := range removed {
				fmt.Fprintf(out, "removed %s\n", name)
			}
			if err != nil {
				return err
			}
			if len(removed) < len(repos) {
				return fmt.Errorf("%d of the repositories given did not exist", len(repos)-len(removed))
			}
			return nil
		},
	}
	root.addFlags(cmd.Flags(), "the heron tree (required)")
	_ = cmd.MarkFlagRequired("root")
	return cmd
}
