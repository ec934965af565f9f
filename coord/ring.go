package coord

import (
	"fmt"
	"math"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// Range is an interval [Lo, Hi] (both inclusive) of the 32-bit hash ring,
// as CouchDB's shard ranges are. Ranges of one fan-out need not be equal:
// split shards give unequal ones, and any set that covers the ring exactly
// once works.
type Range struct {
	Lo, Hi uint32
}

// FullRing is the whole ring.
var FullRing = Range{0, math.MaxUint32}

// String prints the range as two 8-digit hex bounds.
func (r Range) String() string { return fmt.Sprintf("%08x-%08x", r.Lo, r.Hi) }

// Contains reports whether the ring position h falls in r.
func (r Range) Contains(h uint32) bool { return r.Lo <= h && h <= r.Hi }

func (r Range) overlaps(o Range) bool { return r.Lo <= o.Hi && o.Lo <= r.Hi }

// KeyHash maps a key onto the ring with xxhash64 (its low 32 bits).
func KeyHash(key []byte) uint32 { return uint32(xxhash.Sum64(key)) }

// Ranges splits the ring into q equal ranges, as a database with q shards
// does; the last range absorbs the remainder.
func Ranges(q int) []Range {
	if q <= 0 {
		return nil
	}
	out := make([]Range, q)
	step := uint64(math.MaxUint32+1) / uint64(q)
	for i := range out {
		lo := uint64(i) * step
		hi := lo + step - 1
		if i == q-1 {
			hi = math.MaxUint32
		}
		out[i] = Range{uint32(lo), uint32(hi)}
	}
	return out
}

// tiling finds a subset of cands (indices into ranges) that, together with
// the fixed ranges, covers the ring exactly once, preferring earlier
// candidates. It returns the chosen candidate indices, in chosen's array,
// and ok. fixed must not overlap one another; tiling sorts it.
func tiling(fixed []Range, ranges []Range, cands []int, chosen []int) ([]int, bool) {
	slices.SortFunc(fixed, func(a, b Range) int { return cmpU32(a.Lo, b.Lo) })
	t := tiler{fixed: fixed, ranges: ranges, cands: cands, chosen: chosen[:0]}
	if t.walk(0, 0) {
		return t.chosen, true
	}
	return t.chosen[:0], false
}

// tiler is tiling's depth-first search: a struct and not a closure, so
// that a fan-out's search allocates nothing unless it meets a dead end.
type tiler struct {
	fixed, ranges []Range
	cands, chosen []int
	dead          map[uint64]bool // positions from which no tiling exists
}

func (t *tiler) walk(pos uint64, fi int) bool {
	if pos > math.MaxUint32 {
		return true
	}
	if t.dead[pos] {
		return false
	}
	if fi < len(t.fixed) && uint64(t.fixed[fi].Lo) == pos {
		return t.walk(uint64(t.fixed[fi].Hi)+1, fi+1)
	}
	for _, c := range t.cands {
		r := t.ranges[c]
		if uint64(r.Lo) != pos || (fi < len(t.fixed) && r.Hi >= t.fixed[fi].Lo) {
			continue
		}
		t.chosen = append(t.chosen, c)
		if t.walk(uint64(r.Hi)+1, fi) {
			return true
		}
		t.chosen = t.chosen[:len(t.chosen)-1]
	}
	if t.dead == nil {
		t.dead = map[uint64]bool{}
	}
	t.dead[pos] = true
	return false
}

// gaps lists the parts of the ring that no range in rs covers.
func gaps(rs []Range) []Range {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b Range) int { return cmpU32(a.Lo, b.Lo) })
	var out []Range
	var pos uint64
	for _, r := range s {
		if uint64(r.Lo) > pos {
			out = append(out, Range{uint32(pos), r.Lo - 1})
		}
		pos = max(pos, uint64(r.Hi)+1)
	}
	if pos <= math.MaxUint32 {
		out = append(out, Range{uint32(pos), math.MaxUint32})
	}
	return out
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
