package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/heron-registry/heron/publish"
	"github.com/spf13/cobra"
)

// publishBatch is heron publish --batch FILE: it prints one line per tag
// published or pruned and per repository removed, then a summary on
// standard error; or the summary as JSON with --output json.
func publishBatch(cmd *cobra.Command, f publishFlags, pol publish.Policy, args []string) error {
	if len(args) > 0 || len(f.to) > 0 {
		return errors.New("--batch takes no SOURCE and no --to: the batch file lists them")
	}
	b, err := publish.ReadBatchFile(f.batch)
	if err != nil {
		return err
	}
	p, progress, err := f.publisher(cmd, pol)
	if err != nil {
		return err
	}
	res, err := p.RunBatch(cmd.Context(), b, publish.BatchOptions{Prune: f.prune, OpenSource: f.openSource})
	progress.finish(err == nil)
	if res == nil {
		return err
	}
	// The summary even when some repositories failed (each says why); the
	// exit status still says so.
	if perr := printBatch(cmd.OutOrStdout(), cmd.ErrOrStderr(), res.Summary(), f.output); perr != nil && err == nil {
		err = perr
	}
	return err
}

// printBatch prints what a batch did: a line per tag published or pruned
// and per repository removed on out, and the counts on errOut; or the
// summary as JSON.
func printBatch(out, errOut io.Writer, sum publish.BatchSummary, output string) error {
	if output == "json" {
		return writeJSON(out, sum)
	}
	for _, r := range sum.Repositories {
		for _, t := range r.Published {
			fmt.Fprintf(out, "published %s:%s\n", r.Name, t)
		}
		for _, t := range r.Pruned {
			fmt.Fprintf(out, "pruned %s:%s\n", r.Name, t)
		}
	}
	for _, n := range sum.Removed {
		fmt.Fprintf(out, "removed %s\n", n)
	}
	fmt.Fprintf(errOut, "%d repositories (%d failed): %d tag(s) published, %d unchanged, %d pruned; %d repositories removed; wrote %d blob(s) (%d bytes)\n",
		len(sum.Repositories), sum.RepositoriesFailed, sum.TagsPublished, sum.TagsUnchanged, sum.TagsPruned, len(sum.Removed), sum.BlobsWritten, sum.BytesWritten)
	return nil
}
