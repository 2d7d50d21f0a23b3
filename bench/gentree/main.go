// Command gentree writes a valid heron tree of N repositories × M tags for
// scale tests, through package layout (see bench/treegen):
//
//	go run ./bench/gentree -root /tmp/tree -repos 1000000 -tags 3
//
// Every repository serves the same small image (one manifest, one config,
// one 1 MiB layer), stored once. The root must be absent or empty.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/heron-registry/heron/bench/treegen"
)

type extras []treegen.Extra

func (e *extras) String() string { return fmt.Sprint(*e) }

func (e *extras) Set(s string) error {
	name, n, ok := strings.Cut(s, "=")
	tags, err := strconv.Atoi(n)
	if !ok || err != nil {
		return fmt.Errorf("want NAME=TAGS, got %q", s)
	}
	*e = append(*e, treegen.Extra{Name: name, Tags: tags})
	return nil
}

func main() {
	var (
		opts  treegen.Options
		extra extras
		quiet bool
	)
	flag.StringVar(&opts.Root, "root", "", "folder to write the tree in (absent or empty)")
	flag.IntVar(&opts.Repos, "repos", 1000, "number of generated repositories")
	flag.IntVar(&opts.Tags, "tags", 3, "tags per generated repository")
	flag.IntVar(&opts.LayerSize, "layer-size", treegen.DefaultLayerSize, "size of the shared layer in bytes (a multiple of 512)")
	flag.IntVar(&opts.Workers, "workers", 0, "file writers (0: 4 per CPU)")
	flag.Var(&extra, "repo", "add a repository NAME=TAGS (repeatable), e.g. -repo library/tags=100")
	flag.BoolVar(&quiet, "q", false, "print only the summary")
	flag.Parse()
	if flag.NArg() > 0 || opts.Root == "" {
		fmt.Fprintln(os.Stderr, "usage: gentree -root DIR [-repos N] [-tags M] [-repo NAME=TAGS]...")
		os.Exit(2)
	}
	opts.Extra = extra

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var done atomic.Int64
	opts.Progress = &done
	total := opts.Repos + len(extra)
	if !quiet {
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		go func() {
			for range tick.C {
				fmt.Fprintf(os.Stderr, "gentree: %d/%d repositories\n", done.Load(), total)
			}
		}()
	}
	st, err := treegen.Generate(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gentree:", err)
		os.Exit(1)
	}
	fmt.Printf("gentree: %s: %d repositories × %d tags, %d catalog shards, %d files, %.1f MiB in %s (names %s, repositories %s, catalog %s)\n",
		opts.Root, st.Repositories, opts.Tags, st.Shards, st.Files, float64(st.Bytes)/(1<<20),
		st.Total.Round(time.Millisecond), st.NamesTime.Round(time.Millisecond),
		st.RepositoriesTime.Round(time.Millisecond), st.CatalogTime.Round(time.Millisecond))
	fmt.Printf("gentree: manifest %s, config %s, layer %s\n", st.Image.ManifestDigest, st.Image.ConfigDigest, st.Image.LayerDigest)
}
