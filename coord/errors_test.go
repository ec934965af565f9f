package coord

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
)

// A node that closes a connection with ERROR leaves its code where
// errors.As finds it, and a client closed under a fan-out fails its jobs
// with an error that matches ErrClosed.
func TestConnectionEndingsAreTyped(t *testing.T) {
	c := newCluster(t, 1, nil, nil)
	co := mustNew(t, c.cl, context.Background(), 1)
	defer co.Close()
	co.Submit(Job{Node: c.addrs[0], Handler: "block"})
	c.waitLive(t, 1)
	go c.nodes[0].Close() // sends ERROR SHUTTING_DOWN to every connection
	var got error
	co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) { got = m.Err; return true, nil })
	var ne *NodeError
	if !errors.Is(got, ErrNodeDown) || !errors.As(got, &ne) || ne.Code != frame.CodeShuttingDown || ne.Node != c.addrs[0] {
		t.Fatalf("job ended with %v; want node-down caused by a NodeError SHUTTING_DOWN from %s", got, c.addrs[0])
	}

	d := newCluster(t, 1, nil, nil)
	co2 := mustNew(t, d.cl, context.Background(), 1)
	defer co2.Close()
	co2.Submit(Job{Node: d.addrs[0], Handler: "block"})
	d.waitLive(t, 1)
	go d.cl.Close()
	got = nil
	co2.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) { got = m.Err; return true, nil })
	if !errors.Is(got, ErrNodeDown) || !errors.Is(got, ErrClosed) {
		t.Fatalf("job ended with %v; want node-down matching ErrClosed", got)
	}
}

// A deadline shorter than a millisecond stays a deadline on the wire,
// where 0 means none.
func TestTimeoutMillisRoundsUp(t *testing.T) {
	for d, want := range map[time.Duration]uint32{0: 0, time.Microsecond: 1, 500 * time.Microsecond: 1,
		time.Millisecond: 1, 1500 * time.Microsecond: 2, time.Second: 1000} {
		if got := timeoutMillis(d); got != want {
			t.Errorf("timeoutMillis(%v) = %d, want %d", d, got, want)
		}
	}
}
