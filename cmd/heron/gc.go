package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/heron-registry/heron/publish"
	"github.com/spf13/cobra"
)

func newCmdGC() *cobra.Command {
	var (
		root   treeRoot
		grace  time.Duration
		dryRun bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "gc --root DIR [--grace 1h] [--dry-run]",
		Short: "Delete the blobs no repository references",
		Long: `gc deletes from the tree at --root the blobs and manifests that no repository
file lists (after heron rm, a moved tag or a pruning batch), the temporary
files writers that died left behind, and the catalog shards the catalog does
not name. It prints each file it deletes and the total.

Nothing written or used by a publish less than --grace ago is deleted, so gc
is safe while publishes write the same tree: a publish marks the content it
is about to reference just before it writes the repository file, and gc only
deletes content unmarked since it started minus the grace period. The grace
period must be longer than any publish could stall between the two (the
default hour is a wide margin, also for clocks that differ between the
machines writing a shared file system).

gc reads every repository file first, and stops before deleting anything if
one of them cannot be read or parsed (run heron verify).`,
		Example: `  heron gc --root /srv/heron --dry-run
  heron gc --root /srv/heron --grace 24h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if grace < 0 {
				return errors.New("--grace must not be negative")
			}
			p, err := root.publisher(cmd.Context())
			if err != nil {
				return err
			}
			res, err := p.GC(cmd.Context(), publish.GCOptions{Grace: grace, DryRun: dryRun})
			if res != nil {
				if werr := printGC(cmd.OutOrStdout(), cmd.ErrOrStderr(), &root, grace, output, res); werr != nil && err == nil {
					err = werr
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	root.addFlags(f, "the heron tree (required)")
	f.DurationVar(&grace, "grace", publish.DefaultGCGrace, "keep anything written or used by a publish less than this long ago")
	f.BoolVar(&dryRun, "dry-run", false, "print what would be deleted, delete nothing")
	f.StringVarP(&output, "output", "o", "text", "text, or json (the whole result as one JSON object)")
	_ = cmd.MarkFlagRequired("root")
	return cmd
}

// printGC prints what gc deleted: one line per file and a total, or JSON.
func printGC(out, errOut io.Writer, root *treeRoot, grace time.Duration, output string, res *publish.GCResult) error {
	if output == "json" {
		return writeJSON(out, res)
	}
	verb, total := "deleted", "deleted"
	if res.DryRun {
		verb, total = "would delete", "would delete"
	}
	listVerb := "listed"
	if res.DryRun {
		listVerb = "would list"
	}
	for _, name := range res.Listed {
		fmt.Fprintf(out, "%s %s in the catalog (its publish was interrupted before the catalog step)\n", listVerb, name)
	}
	for _, it := range res.Deleted {
		fmt.Fprintf(out, "%s %s (%s, %d bytes)\n", verb, root.path(it.Key), it.Kind, it.Size)
	}
	fmt.Fprintf(errOut, "%s %d file(s), %d bytes; %d repository file(s) reference %d manifests and blobs; %d unreferenced file(s) (%d bytes) are younger than %s and kept\n",
		total, res.Files, res.Bytes, res.Repositories, res.Referenced, res.Young, res.YoungBytes, grace)
	if res.Uploads > 0 {
		fmt.Fprintf(errOut, "%s %d blob upload(s) idle for longer than %s\n", total, res.Uploads, grace)
	}
	return nil
}
