package coord

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// setWriteHook installs a socket-write hook for one test.
func setWriteHook(t *testing.T, h writeHook) {
	t.Helper()
	testWriteHook.Store(&h)
	t.Cleanup(func() { testWriteHook.Store(nil) })
}

// A write stalled while its connection is lost must not deliver its bytes
// on the next connection: its jobs were already failed with the old one,
// so neither Close nor the reaper would ever kill them.
func TestStalledWriteNeverReachesTheNextConnection(t *testing.T) {
	c := newCluster(t, 1, nil, nil)
	stalled, release := make(chan *session, 1), make(chan struct{})
	var armed atomic.Bool
	setWriteHook(t, func(s *session, buf []byte, blocking bool) (int, error, bool) {
		// Submit's DOIT is the first direct (non-blocking) write once armed;
		// the bytes are sealed, so they cannot be told apart by content.
		if !blocking && armed.CompareAndSwap(true, false) {
			stalled <- s
			<-release // the write goes on once the connection is gone
		}
		return 0, nil, false
	})
	co := mustNew(t, c.cl, context.Background(), 1)
	armed.Store(true)
	submitted := make(chan struct{})
	go func() {
		defer close(submitted)
		co.Submit(Job{Node: c.addrs[0], Handler: "block"})
	}()
	old := <-stalled
	old.conn.Close() // the connection is lost while the DOIT's write is held
	eventually(t, "a new session", func() bool {
		cur := c.cl.members.Load().peers[0].current()
		return cur != nil && cur != old
	})
	close(release)
	<-submitted

	var got []Kind
	if err := co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		got = append(got, m.Kind)
		if !errors.Is(m.Err, ErrNodeDown) {
			t.Errorf("message %v: %v, want node-down", m.Kind, m.Err)
		}
		return false, nil
	}); err != nil || len(got) != 1 {
		t.Fatalf("Recv: %v, messages %v; want one node-down", err, got)
	}
	co.Close()

	// Everything queued on the new connection is written in order: once an
	// echo round trip is done there, a DOIT written before it would have
	// started.
	if err := exactReplies(c.cl, c.addrs[0], 1); err != nil {
		t.Fatal(err)
	}
	if s := c.nodes[0].Stats(); s.Started != 1 || s.Live != 0 {
		t.Fatalf("node started %d workers (live %d); want only the echo: the stalled DOIT reached the new connection", s.Started, s.Live)
	}
}

// A short non-blocking write puts the rest back at the front of its
// session's queue, ahead of frames queued meanwhile, and the writer
// goroutine takes over: every frame arrives whole and in order.
func TestShortWriteIsHandedToTheWriter(t *testing.T) {
	c := newCluster(t, 1, nil, nil)
	other := mustNew(t, c.cl, context.Background(), 1)
	defer other.Close()
	var short, blockingAfter atomic.Int32
	setWriteHook(t, func(s *session, buf []byte, blocking bool) (int, error, bool) {
		if blocking {
			if short.Load() > 0 {
				blockingAfter.Add(1)
			}
			return 0, nil, false
		}
		if len(buf) < 64 || !short.CompareAndSwap(0, 1) {
			return 0, nil, false
		}
		// Queued while this write is in progress: must go after the rest.
		other.Submit(Job{Node: c.addrs[0], Handler: "echo", Args: []byte("queued meanwhile")})
		half := len(buf) / 2
		n, err := s.conn.Write(buf[:half])
		return n, err, true
	})
	if err := exactReplies(c.cl, c.addrs[0], 192); err != nil {
		t.Fatal(err)
	}
	if short.Load() != 1 || blockingAfter.Load() == 0 {
		t.Fatalf("short writes %d, writer-goroutine writes after it %d: the hand-over did not run", short.Load(), blockingAfter.Load())
	}
	var reply string
	if err := other.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		reply = string(m.Payload)
		return false, m.Err
	}); err != nil || reply != "queued meanwhile" {
		t.Fatalf("the frame queued during the short write: %q, %v", reply, err)
	}
}

// exactReplies runs one cast fan-out of n echo jobs on addr and checks
// every reply.
func exactReplies(cl *Client, addr string, n int) error {
	co, err := cl.New(context.Background(), n)
	if err != nil {
		return err
	}
	defer co.Close()
	jobs := make([]Job, n)
	for i := range jobs {
		jobs[i] = Job{Node: addr, Handler: "echo", Args: []byte{byte(i), byte(i >> 8), 'x'}}
	}
	if _, err := co.Submit(jobs...); err != nil {
		return err
	}
	got := 0
	err = co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		if m.Kind != KindReply {
			return false, m.Err
		}
		if !bytes.Equal(m.Payload, jobs[m.Worker.Slot].Args) {
			return false, errors.New("reply does not match its job")
		}
		got++
		return false, nil
	})
	if err == nil && got != n {
		err = errors.New("missing replies")
	}
	return err
}

// Reconnect delays are spread over [d/2, d): processes that lost a node
// together do not redial it in lockstep.
func TestBackoffIsJittered(t *testing.T) {
	const d = 100 * time.Millisecond
	seen := map[time.Duration]bool{}
	for i := 0; i < 1000; i++ {
		j := jitter(d)
		if j < d/2 || j >= d {
			t.Fatalf("jitter(%v) = %v, want within [%v, %v)", d, j, d/2, d)
		}
		seen[j] = true
	}
	if len(seen) < 100 {
		t.Fatalf("only %d distinct delays in 1000: not jittered", len(seen))
	}
}

// A job's final frame takes back the receipt-ACK of its rows queued in
// the same read: the worker no longer waits for it.
func TestFinalFrameDropsItsPendingAck(t *testing.T) {
	rb := readBatch{acks: []refCount{{1, 5}, {2, 5}, {3, 4}}}
	rb.dropAck(2)
	rb.dropAck(9) // none pending: nothing changes
	if want := []refCount{{1, 5}, {3, 4}}; !slices.Equal(rb.acks, want) {
		t.Fatalf("acks %v, want %v", rb.acks, want)
	}
}
