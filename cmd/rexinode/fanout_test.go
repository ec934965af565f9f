package main

import (
	"slices"
	"testing"

	"github.com/rexi-go/rexi/coord"
)

// A fan-out's copies go where the shard map puts them, and a range whose
// copies all failed is resumed on the peer the shard map would pick were
// the failed peers gone: its rendezvous order, not the peers' names.
func TestPlaceFanout(t *testing.T) {
	peers := []string{"10.0.0.5:7070", "10.0.0.1:7070", "10.0.0.3:7070", "10.0.0.2:7070", "10.0.0.4:7070", "10.0.0.1:7070"} // one twice
	spec := fanoutSpec{Handler: "echo", Q: 32, N: 2, Args: "hi"}
	jobs, order, n, err := placeFanout(spec, peers)
	if err != nil || n != 2 {
		t.Fatalf("placeFanout: n=%d, %v", n, err)
	}
	want, _ := coord.ShardMap{Q: spec.Q, N: 2}.Jobs(peers, "echo", []byte("hi"))
	if !slices.EqualFunc(jobs, want, func(a, b coord.Job) bool {
		return a.Node == b.Node && a.Range == b.Range && a.Handler == b.Handler && string(a.Args) == string(b.Args)
	}) {
		t.Fatalf("jobs %v, want the shard map's %v", jobs, want)
	}
	up := func(string) bool { return true }
	for r := range spec.Q {
		if len(order[r]) != 5 {
			t.Fatalf("range %d ranks %v, want every distinct peer", r, order[r])
		}
		failed := order[r][:n]
		var rest []string
		for _, p := range peers {
			if !slices.Contains(failed, p) {
				rest = append(rest, p)
			}
		}
		place, _ := coord.ShardMap{Q: spec.Q, N: 1}.Place(rest)
		if got := nextPeer(order[r], failed, up); got != place[r][0] {
			t.Fatalf("range %d: replacement on %s, want %s (its placement without %v)", r, got, place[r][0], failed)
		}
	}
	if got := nextPeer(order[0], nil, func(p string) bool { return p != order[0][0] }); got != order[0][1] {
		t.Fatalf("with the first choice down: %s, want the second, %s", got, order[0][1])
	}
	if got := nextPeer(order[0], order[0], up); got != "" {
		t.Fatalf("every peer tried: %q, want none", got)
	}
	if _, _, n, err := placeFanout(fanoutSpec{Handler: "echo", Q: 4, N: 9}, peers); err != nil || n != 5 {
		t.Fatalf("N above the peers: n=%d, %v; want the 5 distinct peers", n, err)
	}
}
