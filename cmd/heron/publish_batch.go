package main

import (
	"encoding/json"
	"fmt"

	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/publish/source"
	"github.com/spf13/cobra"
)

// runBatch is heron publish --batch FILE: it prints one line per tag
// published or pruned and per repository removed, then a summary on
// standard error. The batch's sources are opened with srcOpts.
func runBatch(cmd *cobra.Command, p *publish.Publisher, file string, prune, asJSON bool, srcOpts ...source.Option) error {
	b, err := publish.ReadBatchFile(file)
	if err != nil {
		return err
	}
	open := func(spec string) (source.Source, error) { return source.ParseWith(spec, srcOpts...) }
	res, err := p.RunBatch(cmd.Context(), b, publish.BatchOptions{Prune: prune, OpenSource: open})
	if res == nil {
		return err
	}
	out := cmd.OutOrStdout()
	sum := res.Summary()
	if asJSON {
		// The summary even when some repositories failed (each says why);
		// the exit status still says so.
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(sum); jerr != nil && err == nil {
			err = jerr
		}
		return err
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
	fmt.Fprintf(cmd.ErrOrStderr(), "%d repositories (%d failed): %d tag(s) published, %d unchanged, %d pruned; %d repositories removed; wrote %d blob(s) (%d bytes)\n",
		len(sum.Repositories), sum.RepositoriesFailed, sum.TagsPublished, sum.TagsUnchanged, sum.TagsPruned, len(sum.Removed), sum.BlobsWritten, sum.BytesWritten)
	return err
}
