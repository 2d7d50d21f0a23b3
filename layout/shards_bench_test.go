package layout

import (
	"fmt"
	"testing"
)

// BenchmarkShardedDecode measures what a request that misses the caches
// decodes in a repository of 100,000 tags (one image): the repository
// file, 100 shard references, and one shard of 1,000 tags.
func BenchmarkShardedDecode(b *testing.B) {
	r := bigRepository(1)
	d := r.Tags["build-000000"]
	for i := range 100_000 {
		r.Tags[fmt.Sprintf("t%06d", i)] = d
	}
	files := shardAll(b, r, InlineMax, ShardMax)
	entry, err := r.Encode()
	if err != nil {
		b.Fatal(err)
	}
	ref := r.TagShards[len(r.TagShards)/2]
	b.Run("entry", func(b *testing.B) {
		b.SetBytes(int64(len(entry)))
		for b.Loop() {
			if _, err := DecodeRepositoryView("ci/app", entry); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("shard", func(b *testing.B) {
		b.SetBytes(int64(len(files[ref.ID])))
		for b.Loop() {
			if _, err := DecodeShardView(files[ref.ID], TagKind, ref); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("shard/slow", func(b *testing.B) {
		for b.Loop() {
			s, err := DecodeRepositoryShard(files[ref.ID], TagKind, ref)
			if err != nil {
				b.Fatal(err)
			}
			ViewOfShard(s)
		}
	})
}
