package coord

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

func addrs(n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("10.0.0.%d:7070", i+1))
	}
	return out
}

func TestShardMapTilesTheRingWithDistinctCopies(t *testing.T) {
	m := ShardMap{Q: 64, N: 3}
	jobs, err := m.Jobs(addrs(5), "rows", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 64*3 {
		t.Fatalf("%d jobs, want 192", len(jobs))
	}
	var rs []Range
	perNode := map[string]int{}
	for r := 0; r < 64; r++ {
		copies := jobs[3*r : 3*r+3]
		seen := map[string]bool{}
		for _, j := range copies {
			if j.Range != copies[0].Range || seen[j.Node] {
				t.Fatalf("range %d: copies %v", r, copies)
			}
			seen[j.Node] = true
			perNode[j.Node]++
		}
		rs = append(rs, copies[0].Range)
	}
	if len(gaps(rs)) != 0 {
		t.Fatalf("ranges do not cover the ring: gaps %v", gaps(rs))
	}
	for n, c := range perNode {
		if c < 192/5/2 {
			t.Fatalf("node %s got %d copies of 192: placement badly skewed %v", n, c, perNode)
		}
	}
	// Order of the node list does not matter.
	rev := slices.Clone(addrs(5))
	slices.Reverse(rev)
	again, _ := m.Jobs(rev, "rows", nil)
	if fmt.Sprint(jobs) != fmt.Sprint(again) {
		t.Fatal("placement depends on the order of the nodes")
	}
}

// A node joining moves only the copies it wins.
func TestShardMapStableWhenANodeJoins(t *testing.T) {
	m := ShardMap{Q: 256, N: 3}
	before, _ := m.Place(addrs(5))
	after, _ := m.Place(addrs(6))
	joined := addrs(6)[5]
	moved := 0
	for r := range before {
		for _, n := range before[r] {
			if !slices.Contains(after[r], n) {
				moved++
				if !slices.Contains(after[r], joined) {
					t.Fatalf("range %d lost %s to a node other than the new one: %v -> %v", r, n, before[r], after[r])
				}
			}
		}
	}
	if moved == 0 || moved > 256*3/6*2 {
		t.Fatalf("%d copies moved to the new node; about %d expected", moved, 256*3/6)
	}
}

func TestShardMapNeedsNDistinctNodes(t *testing.T) {
	if _, err := (ShardMap{Q: 4, N: 3}).Jobs([]string{"a:1", "b:1", "a:1"}, "x", nil); !errors.Is(err, ErrNotEnoughNodes) {
		t.Fatalf("3 copies on 2 distinct nodes: %v", err)
	}
}
