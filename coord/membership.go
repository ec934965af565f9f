package coord

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// membership is the client's node set: every peer it ever had, in the
// order they joined (a job's node index stays valid for good), and the
// index of the ones not removed. It is replaced whole, never changed.
type membership struct {
	peers []*peer
	index map[string]int // address → position in peers, for peers not removed
}

func (m *membership) find(addr string) *peer {
	if i, ok := m.index[addr]; ok {
		return m.peers[i]
	}
	return nil
}

// active are the peers not removed.
func (m *membership) active() []*peer {
	out := make([]*peer, 0, len(m.index))
	for _, p := range m.peers {
		if !p.removed() {
			out = append(out, p)
		}
	}
	return out
}

// NodeState is a node's state as the client sees it.
type NodeState uint8

// Node states.
const (
	NodeConnecting NodeState = iota // dialling or in the handshake, never up since it joined or since its last loss
	NodeUp                          // a session is up
	NodeDown                        // the last attempt failed; retrying with backoff
	NodeRemoving                    // removed from the set; its session closes once its jobs are over
)

var nodeStateNames = [...]string{"connecting", "up", "down", "removing"}

// String names the state.
func (s NodeState) String() string { return nodeStateNames[s] }

// NodeInfo describes one node of the client's set.
type NodeInfo struct {
	Addr      string
	Name      string // from the node's last handshake; empty before one
	State     NodeState
	LastError error // why the last connection or attempt ended
}

// Nodes describes the nodes of the set, and those being removed, in the
// order they joined.
func (cl *Client) Nodes() []NodeInfo {
	var out []NodeInfo
	for _, p := range cl.members.Load().peers {
		if info, ok := p.info(); ok {
			out = append(out, info)
		}
	}
	return out
}

// LiveNodes are the addresses of the nodes up now: what a ShardMap
// places a fan-out on.
func (cl *Client) LiveNodes() []string {
	var out []string
	for _, p := range cl.members.Load().active() {
		if p.current() != nil {
			out = append(out, p.addr)
		}
	}
	return out
}

// SetNodes replaces the client's node set. A new address is dialled and
// becomes usable once its handshake completes. A removed one takes no new
// jobs (Submit reports ErrUnknownNode); its connection is closed once its
// running jobs have ended, or after RemoveGrace, when those still running
// fail with a NodeDownError whose cause is ErrNodeRemoved. Until then the
// reaper can still reach them. Addresses must be host:port; duplicates are
// ignored.
func (cl *Client) SetNodes(addrs []string) {
	cl.setMu.Lock()
	defer cl.setMu.Unlock()
	if cl.ctx.Err() != nil { // closed: Close cancels under setMu, then waits for the peers
		return
	}
	old := cl.members.Load()
	want := map[string]bool{}
	for _, a := range addrs {
		want[a] = true
	}
	next := &membership{peers: slices.Clone(old.peers), index: map[string]int{}}
	for addr, i := range old.index {
		if want[addr] {
			next.index[addr] = i
		} else {
			old.peers[i].remove()
		}
	}
	var started []*peer
	for _, a := range addrs {
		if _, ok := next.index[a]; ok {
			continue
		}
		p := newPeer(cl, a)
		next.index[a] = len(next.peers)
		next.peers = append(next.peers, p)
		started = append(started, p)
	}
	cl.members.Store(next)
	for _, p := range started {
		cl.wg.Add(1)
		go p.run()
	}
	if len(started) > 0 || len(next.index) != len(old.index) {
		cl.log.Info("rexi coord: node set changed", "nodes", len(next.index), "added", len(started))
	}
}

// ErrNodeRemoved is the cause of the node-down error of jobs still running
// on a node when its removal's grace ran out.
var ErrNodeRemoved = errors.New("coord: node removed from the set")

// Resolver tells the client its node set; Config.Resolver is polled every
// ResolveInterval and its answer replaces the set (an error keeps it).
type Resolver interface {
	Resolve(ctx context.Context) ([]string, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(ctx context.Context) ([]string, error)

// Resolve calls f.
func (f ResolverFunc) Resolve(ctx context.Context) ([]string, error) { return f(ctx) }

// resolve polls the resolver until the client closes.
func (cl *Client) resolve() {
	defer cl.wg.Done()
	t := time.NewTicker(cl.cfg.ResolveInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(cl.ctx, cl.cfg.ResolveInterval)
		addrs, err := cl.cfg.Resolver.Resolve(ctx)
		cancel()
		switch {
		case err != nil && cl.ctx.Err() == nil:
			cl.log.Warn("rexi coord: resolving the nodes failed; keeping the current set", "err", err)
		case err == nil && len(addrs) == 0:
			cl.log.Warn("rexi coord: the resolver found no node; keeping the current set")
		case err == nil:
			cl.SetNodes(addrs)
		}
		select {
		case <-cl.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// DNSResolver resolves host's A and AAAA records, each address with port:
// the pods behind a Kubernetes headless Service.
func DNSResolver(host string, port int) Resolver {
	return ResolverFunc(func(ctx context.Context) ([]string, error) {
		ips, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("coord: resolving %s: %w", host, err)
		}
		out := make([]string, 0, len(ips))
		for _, ip := range ips {
			out = append(out, net.JoinHostPort(ip, strconv.Itoa(port)))
		}
		slices.Sort(out)
		return out, nil
	})
}

// SRVResolver resolves the SRV records _service._proto.name (a Kubernetes
// headless Service with a named port publishes them): each target with
// its port.
func SRVResolver(service, proto, name string) Resolver {
	return ResolverFunc(func(ctx context.Context) ([]string, error) {
		_, srvs, err := net.DefaultResolver.LookupSRV(ctx, service, proto, name)
		if err != nil {
			return nil, fmt.Errorf("coord: resolving SRV _%s._%s.%s: %w", service, proto, name, err)
		}
		out := make([]string, 0, len(srvs))
		for _, s := range srvs {
			out = append(out, net.JoinHostPort(strings.TrimSuffix(s.Target, "."), strconv.Itoa(int(s.Port))))
		}
		slices.Sort(out)
		return out, nil
	})
}
