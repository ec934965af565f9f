package coord

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/node"
)

// A job its node can never take is refused by Submit, typed, before
// anything is sent; one that fits exactly goes out and is answered.
func TestJobOverTheNodesMaxPayloadIsRefused(t *testing.T) {
	const max = 4096
	c := newCluster(t, 1, nil, func(cfg *node.Config) { cfg.MaxPayload = max })
	sess := c.cl.members.Load().peers[0].current()
	fixed := frame.DoitPayloadLen(frame.Doit{Handler: []byte("echo")}, sess.doitOpt)

	co := mustNew(t, c.cl, context.Background(), 2)
	defer co.Close()
	tooLarge := Job{Node: c.addrs[0], Handler: "echo", Args: make([]byte, max-fixed+1)}
	if _, err := co.Submit(Job{Node: c.addrs[0], Handler: "echo"}, tooLarge); !errors.Is(err, ErrJobTooLarge) {
		t.Fatalf("Submit %v, want ErrJobTooLarge", err)
	}
	if co.Len() != 0 {
		t.Fatalf("%d jobs submitted, want none", co.Len())
	}
	exact := bytes.Repeat([]byte("x"), max-fixed)
	if _, err := co.Submit(Job{Node: c.addrs[0], Handler: "echo", Args: exact}); err != nil {
		t.Fatal(err)
	}
	err := co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		if m.Err != nil || !bytes.Equal(m.Payload, exact) {
			t.Errorf("reply of %d bytes, err %v", len(m.Payload), m.Err)
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A burst of large DOITs does not leave the session's write buffers at
// the burst's size once it is written.
func TestWriteBuffersGivenBackAfterABurst(t *testing.T) {
	c := newCluster(t, 1, nil, nil)
	co := mustNew(t, c.cl, context.Background(), 8)
	defer co.Close()
	jobs := make([]Job, 8)
	for i := range jobs {
		jobs[i] = Job{Node: c.addrs[0], Handler: "echo", Args: make([]byte, 256<<10)}
	}
	if _, err := co.Submit(jobs...); err != nil {
		t.Fatal(err)
	}
	if err := co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) { return false, m.Err }); err != nil {
		t.Fatal(err)
	}
	sess := c.cl.members.Load().peers[0].current()
	sess.mu.Lock()
	out, wire := cap(sess.out), cap(sess.wireArr)
	sess.mu.Unlock()
	if out > readBufferSize || wire > readBufferSize {
		t.Fatalf("write buffers of %d and %d bytes kept after the burst, want at most %d", out, wire, readBufferSize)
	}
}
