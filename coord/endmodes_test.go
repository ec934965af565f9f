package coord

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// A coordinator can end in the middle of its own receive loop: Close called
// from the callback, or a panic in the callback recovered by the caller
// (net/http recovers handler panics), with or without a Close afterwards,
// or dropped without Close. None of these may touch another coordinator's
// fan-out: every row of every ordinary fan-out arrives exactly once and
// none stalls.
func TestCallbackEndsDoNotCorruptOtherFanouts(t *testing.T) {
	c := newCluster(t, 3, nil, nil)
	const q, n, rowsPer = 16, 3, 40
	good := c.jobs(q, n, "rows", strconv.Itoa(rowsPer)+":20")
	rounds := 60
	if testing.Short() {
		rounds = 15
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 3; g++ { // ordinary fan-outs, concurrently with the bad ones
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := exactStream(c.cl, good, q*rowsPer); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	bad := c.jobs(q, n, "rows", "1000:20")
	for i := 0; i < rounds && len(errs) == 0; i++ {
		endInsideCallback(t, c.cl, bad, callbackEnd(i%len(callbackEnds)))
	}
	stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Whatever ended how, no worker is left once the abandoned ones are
	// collected.
	eventually(t, "no live worker on any node", func() bool {
		runtime.GC()
		return c.live() == 0
	})
}

type callbackEnd int

const (
	closeInStream callbackEnd = iota
	closeInRecv
	panicThenClose
	panicNoClose
	droppedMidStream
)

var callbackEnds = []string{"close in Stream callback", "close in Recv callback", "recovered panic, then Close", "recovered panic, no Close", "dropped mid-stream"}

// endInsideCallback runs a streaming fan-out that ends by mode after a few
// rows.
func endInsideCallback(t *testing.T, cl *Client, jobs []Job, mode callbackEnd) {
	t.Helper()
	co := mustNew(t, cl, context.Background(), len(jobs))
	if _, err := co.Submit(jobs...); err != nil {
		t.Fatal(err)
	}
	rows := 0
	opts := StreamOptions{RecvOptions: RecvOptions{Timeout: waitFor}}
	func() {
		defer func() {
			if r := recover(); r != nil && r != "callback bug" {
				panic(r)
			}
		}()
		switch mode {
		case closeInStream:
			_ = co.Stream(opts, func(m Message) error {
				if rows++; rows == 37 {
					co.Close()
				}
				return nil
			})
		case closeInRecv:
			_ = co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
				if m.Kind == KindStreamInit {
					co.Start(m.Worker.Slot)
				}
				if rows++; rows == 80 {
					co.Close()
				}
				return false, nil
			})
		case panicThenClose, panicNoClose:
			defer func() {
				if mode == panicThenClose {
					co.Close()
				}
			}()
			_ = co.Stream(opts, func(m Message) error {
				if rows++; rows == 23 {
					panic("callback bug")
				}
				return nil
			})
		case droppedMidStream:
			_ = co.Stream(opts, func(m Message) error {
				if rows++; rows == 51 {
					return fmt.Errorf("give up")
				}
				return nil
			})
		}
	}()
	if mode == closeInRecv || mode == closeInStream {
		// The loop returns once Close ran; a second receive loop must
		// report the coordinator closed, not touch released buffers.
		if err := co.Stream(opts, func(Message) error { return nil }); err == nil {
			t.Fatalf("%s: Stream after Close returned nil", callbackEnds[mode])
		}
	}
	runtime.GC() // collects the coordinators dropped without Close
}

// exactStream runs one fan-out that must deliver want rows, each once.
func exactStream(cl *Client, jobs []Job, want int) error {
	co, err := cl.New(context.Background(), len(jobs))
	if err != nil {
		return err
	}
	defer co.Close()
	if _, err := co.Submit(jobs...); err != nil {
		return err
	}
	seen := make(map[string]int, want)
	err = co.Stream(StreamOptions{RecvOptions: RecvOptions{Timeout: 20 * time.Second}}, func(m Message) error {
		if m.Kind == KindRow {
			seen[m.Worker.Range.String()+"/"+string(m.Payload)]++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ordinary fan-out failed: %w", err)
	}
	if len(seen) != want {
		return fmt.Errorf("ordinary fan-out: %d distinct rows, want %d", len(seen), want)
	}
	for k, v := range seen {
		if v != 1 {
			return fmt.Errorf("ordinary fan-out: row %q arrived %d times", k, v)
		}
	}
	return nil
}
