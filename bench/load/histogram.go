package load

import (
	"math/bits"
	"time"
)

// subBits sets the histogram's resolution: 2^subBits buckets per power of
// two, so a recorded value is off by less than 1/128 (0.8%).
const subBits = 7

const (
	subCount   = 1 << subBits
	numBuckets = subCount + (64-subBits-1)*subCount + subCount
)

// Histogram records durations in log-linear buckets (the idea of
// HdrHistogram): fixed size whatever the number of samples, exact below
// 128 ns, within 0.8% above.
type Histogram struct {
	counts [numBuckets]uint64
	n      uint64
	max    time.Duration
}

func bucket(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return subCount + shift*subCount + int(v>>shift) - subCount
}

// lowest returns the smallest value of bucket i; the next bucket's lowest
// is one past its largest.
func lowest(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	shift := (i - subCount) / subCount
	m := uint64(i-subCount-shift*subCount) + subCount
	return m << shift
}

// Record adds one sample.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucket(uint64(d))]++
	h.n++
	if d > h.max {
		h.max = d
	}
}

// Merge adds the samples of o.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Count is the number of samples.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest sample.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile returns the value below which the fraction q (0..1) of the
// samples lie: the middle of the bucket holding the sample of rank
// ceil(q·n), never more than Max.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := lowest(i), lowest(i+1)
			return min(time.Duration(lo+(hi-lo)/2), h.max)
		}
	}
	return h.max
}
