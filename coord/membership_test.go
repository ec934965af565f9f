package coord

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

func nodeStates(cl *Client) map[string]NodeState {
	out := map[string]NodeState{}
	for _, n := range cl.Nodes() {
		out[n.Addr] = n.State
	}
	return out
}

// Nodes join and leave a running client: a new one is dialled and used; a
// removed one takes no new job, keeps its connection for the jobs still on
// it, and closes it once they end — or fails them as node-down when its
// grace runs out.
func TestSetNodesAddsAndRemoves(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	cl := connectedClient(t, Config{Nodes: c.addrs[:2], RemoveGrace: 300 * time.Millisecond})
	if got := cl.Nodes(); len(got) != 2 || got[0].Name != "n0" || got[0].State != NodeUp {
		t.Fatalf("Nodes() = %+v, want n0 and n1 up, named from their handshake", got)
	}
	cl.SetNodes(c.addrs)
	eventually(t, "the new node up", func() bool { return cl.NodeUp(c.addrs[2]) })
	if err := exactReplies(cl, c.addrs[2], 3); err != nil {
		t.Fatalf("a job on the new node: %v", err)
	}

	// Two coordinators with a worker each on node 0, which then leaves.
	closing := mustNew(t, cl, context.Background(), 1)
	closing.Submit(Job{Node: c.addrs[0], Handler: "block"})
	lingering := mustNew(t, cl, context.Background(), 1)
	defer lingering.Close()
	lingering.Submit(Job{Node: c.addrs[0], Handler: "block"})
	eventually(t, "2 workers on node 0", func() bool { return c.nodes[0].Stats().Live == 2 })
	cl.SetNodes(c.addrs[1:])
	if nodeStates(cl)[c.addrs[0]] != NodeRemoving {
		t.Fatalf("node 0 while its jobs run: %v, want removing", nodeStates(cl))
	}
	probe := mustNew(t, cl, context.Background(), 1)
	if _, err := probe.Submit(Job{Node: c.addrs[0], Handler: "echo"}); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("Submit to a removed node: %v, want ErrUnknownNode", err)
	}
	probe.Close()
	closing.Close() // its KILL_ALL still reaches node 0
	eventually(t, "the closed coordinator's worker killed", func() bool { return c.nodes[0].Stats().Live == 1 })
	// The other one's worker outlives the grace: it fails as node-down.
	err := lingering.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) { return false, m.Err })
	if !errors.Is(err, ErrNodeDown) || !errors.Is(err, ErrNodeRemoved) {
		t.Fatalf("job on a removed node after the grace: %v, want node-down caused by ErrNodeRemoved", err)
	}
	eventually(t, "node 0's connection closed and its workers gone", func() bool {
		_, listed := nodeStates(cl)[c.addrs[0]]
		return !listed && c.nodes[0].Stats().Live == 0
	})
	if err := exactReplies(cl, c.addrs[1], 3); err != nil {
		t.Fatalf("the remaining nodes still serve: %v", err)
	}
}

func TestResolverDrivesTheNodeSet(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	var mu sync.Mutex
	set := c.addrs[:1]
	r := ResolverFunc(func(context.Context) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(set), nil
	})
	cl := connectedClient(t, Config{Nodes: nil, Resolver: r, ResolveInterval: 10 * time.Millisecond})
	eventually(t, "the resolver's first answer", func() bool { return len(cl.LiveNodes()) == 1 })
	mu.Lock()
	set = c.addrs[1:]
	mu.Unlock()
	eventually(t, "the set follows the resolver", func() bool {
		live := cl.LiveNodes()
		slices.Sort(live)
		want := slices.Sorted(slices.Values(c.addrs[1:]))
		return slices.Equal(live, want) && len(cl.Nodes()) == 2
	})
	jobs, err := (ShardMap{Q: 8, N: 2}).Jobs(cl.LiveNodes(), "echo", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	co := mustNew(t, cl, context.Background(), len(jobs))
	defer co.Close()
	co.Submit(jobs...)
	replies := 0
	if err := co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) { replies++; return false, m.Err }); err != nil || replies != 16 {
		t.Fatalf("fan-out over the resolved nodes: %v after %d replies", err, replies)
	}
}

func TestDNSResolver(t *testing.T) {
	addrs, err := DNSResolver("localhost", 7070).Resolve(context.Background())
	if err != nil {
		t.Skipf("no localhost in this machine's resolver: %v", err)
	}
	if !slices.Contains(addrs, "127.0.0.1:"+strconv.Itoa(7070)) && !slices.Contains(addrs, "[::1]:7070") {
		t.Fatalf("localhost resolved to %v", addrs)
	}
}

// SetNodes racing Close: either SetNodes goes first and Close waits for
// the peers it started, or it comes second and starts none. A SetNodes
// that passed its closed check just before Close cancelled used to add to
// the WaitGroup while Close waited on it: -race reports that (Add from
// zero concurrent with Wait) within a few rounds.
func TestSetNodesRacingClose(t *testing.T) {
	// Refused at once: the peers fail fast and wait in backoff, so Close
	// can find the WaitGroup at zero while SetNodes is adding to it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	more := make([]string, 16)
	for i := range more {
		more[i] = "127.0.0.1:" + strconv.Itoa(i+1) // never dialled: SetNodes is called with the client closing
	}
	for i := 0; i < 200; i++ {
		cl, err := NewClient(Config{Nodes: []string{dead}, Secret: secret, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { <-start; cl.SetNodes(more) })
		wg.Go(func() { <-start; cl.Close() })
		close(start)
		wg.Wait()
		before := len(cl.members.Load().peers)
		cl.SetNodes([]string{"127.0.0.1:9"})
		if after := len(cl.members.Load().peers); after != before {
			t.Fatalf("SetNodes after Close added %d peers", after-before)
		}
	}
}
