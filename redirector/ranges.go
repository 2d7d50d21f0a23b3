package redirector

import (
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
)

// maxRanges is the most ranges heron answers in one request, after the
// overlapping ones are coalesced: a request that asks for more gets the
// whole blob (200), as nginx's max_ranges does. Clients of a registry ask
// for one range (to resume a download); a Range header of a thousand tiny
// ranges (4 KiB) would otherwise cost a thousand parts of a multipart
// answer, tens of milliseconds of CPU each time (docs/operating.md).
const maxRanges = 16

// maxRangeSpecs is the most range-specs of a Range header that are parsed
// (to be coalesced into at most maxRanges): past it, the header is ignored
// without parsing it.
const maxRangeSpecs = 256

// coalesceGap is the widest gap between two ranges that are sent as one:
// about what the part headers of a multipart answer cost.
const coalesceGap = 80

// byteRange is a satisfiable range of a content of known size: its first
// and last byte.
type byteRange struct{ first, last int64 }

// normalizeRanges returns r with a Range header that http.ServeContent
// answers cheaply and validly, for content of size bytes (RFC 9110, section
// 14.2 lets a server ignore a Range header, and coalesce ranges):
//
//   - more than maxRanges ranges: the header is dropped, the whole content
//     is sent;
//   - ranges that select no bytes (a suffix range of length 0, any suffix
//     range of empty content) are dropped: http.ServeContent answers them
//     with a 206 whose Content-Range is invalid ("bytes 3-2/3",
//     golang/go#81262); if none is left, the whole content is sent;
//   - ranges that overlap, or are closer than coalesceGap, are sent as one,
//     the others in the order asked for (section 14.6).
//
// A header that does not parse, or that selects nothing that exists, is
// left as it is for http.ServeContent to answer (416). r is returned as it
// is when nothing changes.
func normalizeRanges(r *http.Request, size int64) *http.Request {
	header := r.Header.Get("Range")
	spec, ok := strings.CutPrefix(header, "bytes=")
	if !ok {
		return r
	}
	if strings.Count(spec, ",") >= maxRangeSpecs {
		// Far too many to be a client's, even before coalescing:
		// not even parsed.
		return withRange(r, "")
	}
	var kept []byteRange
	changed, unsatisfiable := false, false
	for _, ra := range strings.Split(spec, ",") {
		br, ok, empty := parseRange(ra, size)
		switch {
		case empty:
			changed = true
			continue
		case !ok && br.first < 0:
			return r // malformed: http.ServeContent's 416
		case !ok:
			unsatisfiable = true
			continue
		}
		kept, changed = coalesce(kept, br, changed)
	}
	switch {
	case len(kept) == 0 && unsatisfiable:
		return r // nothing that exists: http.ServeContent's 416
	case len(kept) == 0, len(kept) > maxRanges:
		return withRange(r, "")
	case !changed:
		return r
	}
	var b strings.Builder
	b.WriteString("bytes=")
	for i, br := range kept {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(br.first, 10))
		b.WriteByte('-')
		b.WriteString(strconv.FormatInt(br.last, 10))
	}
	return withRange(r, b.String())
}

// parseRange parses one range-spec as net/http's parseRange does (the
// spec, then each side of its dash, trimmed). ok is false for a range that
// does not parse (then first < 0) or starts past the end (unsatisfiable);
// empty is true for a range that selects no bytes.
func parseRange(ra string, size int64) (br byteRange, ok, empty bool) {
	ra = textproto.TrimString(ra)
	if ra == "" {
		return byteRange{}, false, true // net/http skips empty specs too
	}
	start, end, ok := strings.Cut(ra, "-")
	if !ok {
		return byteRange{first: -1}, false, false
	}
	start, end = textproto.TrimString(start), textproto.TrimString(end)
	if start == "" {
		// A suffix range: the last n bytes.
		if end == "" || end[0] == '-' {
			return byteRange{first: -1}, false, false
		}
		n, err := strconv.ParseInt(end, 10, 64)
		if err != nil || n < 0 {
			return byteRange{first: -1}, false, false
		}
		if n == 0 || size == 0 {
			return byteRange{}, false, true
		}
		return byteRange{first: max(size-n, 0), last: size - 1}, true, false
	}
	first, err := strconv.ParseInt(start, 10, 64)
	if err != nil || first < 0 {
		return byteRange{first: -1}, false, false
	}
	if first >= size {
		// Past the end: net/http skips it without reading its end.
		return byteRange{}, false, false
	}
	last := size - 1
	if end != "" {
		if last, err = strconv.ParseInt(end, 10, 64); err != nil || first > last {
			return byteRange{first: -1}, false, false
		}
		last = min(last, size-1)
	}
	return byteRange{first: first, last: last}, true, false
}

// coalesce adds br to kept, merged with the ranges it overlaps or comes
// within coalesceGap of (and, through it, with each other); the merged
// range takes the place of the first of them. It reports whether anything
// was merged (or changed already).
func coalesce(kept []byteRange, br byteRange, changed bool) ([]byteRange, bool) {
	at := len(kept)
	for {
		i := slices.IndexFunc(kept, func(k byteRange) bool {
			return br.first <= k.last+coalesceGap && k.first <= br.last+coalesceGap
		})
		if i < 0 {
			break
		}
		k := kept[i]
		br = byteRange{first: min(br.first, k.first), last: max(br.last, k.last)}
		kept = slices.Delete(kept, i, i+1)
		at = min(at, i)
		changed = true
	}
	return slices.Insert(kept, min(at, len(kept)), br), changed
}

// rangesFor is normalizeRanges for content, whose size it finds by seeking
// (and then seeks back to its start).
func rangesFor(r *http.Request, content io.Seeker) *http.Request {
	size, err := content.Seek(0, io.SeekEnd)
	if err != nil {
		return r
	}
	if _, err := content.Seek(0, io.SeekStart); err != nil {
		return r
	}
	return normalizeRanges(r, size)
}

// withRange returns a copy of r whose Range header is value ("": none).
func withRange(r *http.Request, value string) *http.Request {
	r = r.Clone(r.Context())
	if value == "" {
		r.Header.Del("Range")
	} else {
		r.Header.Set("Range", value)
	}
	return r
}
