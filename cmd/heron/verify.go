package main

import (
	"fmt"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/spf13/cobra"
)

func newCmdVerify() *cobra.Command {
	var (
		root   treeRoot
		deep   bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "verify --root DIR [--deep]",
		Short: "Check a heron tree, as fsck does",
		Long: `verify checks the tree at --root the way its readers rely on it, and prints
each problem on its own line as PATH: problem; it exits non-zero if it finds
any. It checks that:

  - heron-layout.json names the layout version this heron reads;
  - every repository file parses, is valid (its tags name listed manifests,
    its manifests list their blobs) and names the repository its path says;
  - every manifest a repository lists is in blobs/ with the listed size, hashes
    to its digest and declares the listed media type; every blob it lists is
    there with the listed size (--deep hashes blobs too, reading the whole tree);
  - blobs/ and repositories/ hold nothing else;
  - the catalog parses, its shards match their ids, and it lists exactly the
    repositories that have a repository file.

Blobs no repository lists are not a problem (heron gc deletes them): verify
counts them. verify reads a live tree file by file: run it while no publish
writes the tree, or expect a repository published meanwhile to be reported
as missing from the catalog.`,
		Example: `  heron verify --root /srv/heron
  heron verify --root /srv/heron --deep`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			sink, err := root.open(cmd.Context())
			if err != nil {
				return err
			}
			rep, err := publish.VerifyTree(cmd.Context(), sink, publish.VerifyOptions{Deep: deep})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				if err := writeJSON(out, rep); err != nil {
					return err
				}
			} else {
				for _, p := range rep.Problems {
					fmt.Fprintf(out, "%s: %s\n", root.path(p.Key), p.Message)
				}
				for _, name := range rep.Unlisted {
					key, _ := layout.RepositoryKey(name)
					fmt.Fprintf(cmd.ErrOrStderr(), "note: %s: repository %s is served but not in the catalog yet (a publish was interrupted before its catalog step); heron gc lists it\n", root.path(key), name)
				}
				hashed := "manifests hashed"
				if deep {
					hashed = "manifests and blobs hashed"
				}
				unref := fmt.Sprintf("%d unreferenced blob(s) (%d bytes) for gc", rep.Unreferenced, rep.UnreferencedBytes)
				if rep.Unreferenced < 0 {
					unref = "unreferenced blobs unknown (a repository file could not be read)"
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d repositories, %d manifests, %d blobs checked (%s, %d bytes); %s\n",
					rep.Repositories, rep.Manifests, rep.Blobs, hashed, rep.HashedBytes, unref)
			}
			if n := len(rep.Problems); n > 0 {
				return fmt.Errorf("%s: %d problem(s) found", root.root, n)
			}
			return nil
		},
	}
	f := cmd.Flags()
	root.addFlags(f, "the heron tree (required)")
	f.BoolVar(&deep, "deep", false, "hash every blob, not only the manifests")
	f.StringVarP(&output, "output", "o", "text", "text, or json (the whole report as one JSON object)")
	_ = cmd.MarkFlagRequired("root")
	return cmd
}
