package coord

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// ShardMap turns a node set into the jobs of a fan-out, the role CouchDB's
// mem3 plays for rexi: Q ranges that tile the 32-bit ring exactly (Ranges),
// and N copies of each on N distinct nodes. A range's copies go to the N
// nodes that score highest for it under rendezvous hashing (xxhash64 of the
// range's lower bound and the node's address), so the placement depends only
// on the set of nodes, not their order, and a node joining moves only the
// copies it now wins: every other copy stays where it was.
type ShardMap struct {
	Q int // shard ranges, at least 1
	N int // copies per range, at least 1
}

// ErrNotEnoughNodes: a shard map needs at least N distinct nodes.
var ErrNotEnoughNodes = errors.New("coord: fewer nodes than copies per range")

// Place returns, for each of the Q ranges in ring order, its N nodes,
// best first.
func (m ShardMap) Place(nodes []string) ([][]string, error) {
	if m.Q < 1 || m.N < 1 {
		return nil, fmt.Errorf("coord: shard map Q=%d N=%d: both must be at least 1", m.Q, m.N)
	}
	distinct := slices.Compact(slices.Sorted(slices.Values(nodes)))
	if len(distinct) < m.N {
		return nil, fmt.Errorf("%w: %d copies per range, %d nodes", ErrNotEnoughNodes, m.N, len(distinct))
	}
	out := make([][]string, m.Q)
	scores := make([]uint64, len(distinct))
	order := make([]int, len(distinct))
	for r, rg := range Ranges(m.Q) {
		for i, n := range distinct {
			scores[i], order[i] = score(rg.Lo, n), i
		}
		slices.SortFunc(order, func(a, b int) int {
			switch {
			case scores[a] > scores[b]:
				return -1
			case scores[a] < scores[b]:
				return 1
			}
			return 0
		})
		out[r] = make([]string, m.N)
		for c := range m.N {
			out[r][c] = distinct[order[c]]
		}
	}
	return out, nil
}

// Jobs places the fan-out and returns its Q×N jobs, copies of a range
// together, each running handler with args.
func (m ShardMap) Jobs(nodes []string, handler string, args []byte) ([]Job, error) {
	place, err := m.Place(nodes)
	if err != nil {
		return nil, err
	}
	jobs := make([]Job, 0, m.Q*m.N)
	for r, rg := range Ranges(m.Q) {
		for _, n := range place[r] {
			jobs = append(jobs, Job{Node: n, Handler: handler, Args: args, Range: rg})
		}
	}
	return jobs, nil
}

// score is a node's rendezvous weight for the range starting at lo.
func score(lo uint32, node string) uint64 {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], lo)
	d := xxhash.New()
	_, _ = d.Write(b[:])
	_, _ = d.WriteString(node)
	return d.Sum64()
}
