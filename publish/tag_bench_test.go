package publish_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/publish/source"
)

// BenchmarkTagOne measures Publisher.Tag adding one new tag to a
// repository of 10, 10,000 and 100,000 tags (issue 11: a publish rewrites
// the repository file and the one shard it changes, whatever the size).
// The setup publishes one image to the N tags t000000, t000001, … in one
// call (a few seconds at 100,000; not timed); each iteration adds the tag
// u0000000, u0000001, …, which sorts after every other, as a CI
// pipeline's build numbers do: it goes into the last shard (which splits
// in two the first time, when it passes layout.ShardMax). Every
// tagBatch tags, the timer stops while RemoveTags takes them away again,
// so that the repository keeps its size (and a repository of 10 tags is
// not sharded by the time the benchmark ends). Every file is synced, as
// heron tag does.
//
//	go test ./publish/ -run '^$' -bench TagOne -benchmem
func BenchmarkTagOne(b *testing.B) {
	const tagBatch = 25
	ctx := context.Background()
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	writeTinyLayout(b, src, "tag-one")
	for _, n := range []int{10, 10_000, 100_000} {
		b.Run(fmt.Sprintf("tags=%d", n), func(b *testing.B) {
			root := filepath.Join(dir, fmt.Sprintf("tree-%d", n))
			s, err := source.Parse("oci:" + src + ":latest")
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			targets := make([]publish.Target, n)
			for i := range targets {
				targets[i] = publish.Target{Repository: "app", Tag: fmt.Sprintf("t%06d", i)}
			}
			p := publish.New(publish.NewFSSink(layout.Root(root)))
			if _, err := p.Publish(ctx, s, targets); err != nil {
				b.Fatal(err)
			}
			var added []string
			next := 0
			for b.Loop() {
				tag := fmt.Sprintf("u%07d", next)
				next++
				if _, err := p.Tag(ctx, "app", "t000000", tag); err != nil {
					b.Fatal(err)
				}
				if added = append(added, tag); len(added) == tagBatch {
					b.StopTimer()
					if _, _, err := p.RemoveTags(ctx, "app", added...); err != nil {
						b.Fatal(err)
					}
					added = added[:0]
					b.StartTimer()
				}
			}
		})
	}
}
