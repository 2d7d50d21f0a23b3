package main

import (
	"fmt"

	"github.com/heron-registry/heron/publish"
	"github.com/spf13/cobra"
)

func newCmdLs() *cobra.Command {
	var root treeRoot
	cmd := &cobra.Command{
		Use:   "ls --root DIR [NAME]",
		Short: "List the repositories of a heron tree, or the tags of one",
		Long: `Without NAME, ls prints the repository names of the catalog, one per line.
With NAME, it prints the repository's tags, one per line as TAG<TAB>DIGEST,
sorted by tag.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			sink, err := root.open(ctx)
			if err != nil {
				return err
			}
			if err := publish.CheckTree(ctx, sink); err != nil {
				return fmt.Errorf("%s: %w", root.root, err)
			}
			out := cmd.OutOrStdout()
			if len(args) == 0 {
				names, err := publish.CatalogNames(ctx, sink)
				if err != nil {
					return err
				}
				for _, n := range names {
					fmt.Fprintln(out, n)
				}
				return nil
			}
			r, err := publish.ReadRepository(ctx, sink, args[0])
			if err != nil {
				return err
			}
			for _, t := range r.SortedTags() {
				fmt.Fprintf(out, "%s\t%s\n", t, r.Tags[t])
			}
			return nil
		},
	}
	root.addFlags(cmd.Flags(), "the heron tree (required)")
	_ = cmd.MarkFlagRequired("root")
	return cmd
}
