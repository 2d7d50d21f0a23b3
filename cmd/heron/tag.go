package main

import (
	"fmt"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/spf13/cobra"
)

func newCmdTag() *cobra.Command {
	var root treeRoot
	cmd := &cobra.Command{
		Use:   "tag --root DIR NAME:TAG NEWTAG [NEWTAG ...]",
		Short: "Add a tag to a manifest a repository already holds",
		Long: `tag points NEWTAG of repository NAME at the manifest NAME:TAG names, and
prints NAME:NEWTAG@DIGEST for each, all in one edit of the repository
(every NEWTAG, or none on an error). A manifest NEWTAG named before stays in the
repository, untagged (pullable by digest), as after a publish that moves a
tag; heron rm NAME:TAG is how a tag goes. The edit is made under the
repository's lock, so tag is safe while other heron commands write the same
tree.`,
		Example: `  heron tag --root /srv/heron team/app:1.4.2 1.4 latest`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			from, err := publish.ParseTarget(args[0])
			if err != nil {
				return err
			}
			for _, t := range args[1:] {
				if err := layout.ValidateTag(t); err != nil {
					return fmt.Errorf("NEWTAG is a tag of the same repository, not NAME:TAG: %w", err)
				}
			}
			p, err := root.publisher(cmd.Context())
			if err != nil {
				return err
			}
			d, err := p.Tag(cmd.Context(), from.Repository, from.Tag, args[1:]...)
			if err != nil {
				return err
			}
			for _, t := range args[1:] {
				fmt.Fprintf(cmd.OutOrStdout(), "%s:%s@%s\n", from.Repository, t, d)
			}
			return nil
		},
	}
	root.addFlags(cmd.Flags(), "the heron tree (required)")
	_ = cmd.MarkFlagRequired("root")
	return cmd
}
