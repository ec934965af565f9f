package coord

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/node"
)

// forgingNode completes the handshake and answers each DOIT with what
// answer encodes: a node that breaks the protocol.
func forgingNode(t *testing.T, answer func(enc *frame.Encoder, doit frame.Frame) []byte) string {
	return scriptedNode(t, func(enc *frame.Encoder, f frame.Frame) []byte {
		if f.Type == frame.TypeDoit {
			return answer(enc, f)
		}
		return nil
	})
}

// scriptedNode is a plaintext fake node that writes, for every frame it
// reads after the handshake, what onFrame returns.
func scriptedNode(t *testing.T, onFrame func(enc *frame.Encoder, f frame.Frame) []byte) string {
	return fakeNode(t, func(conn net.Conn) {
		pending, err := welcomeAs(conn, frame.Welcome{Version: frame.Version, MaxPayload: frame.DefaultMaxPayload, Window: 5, Name: []byte("scripted")})
		if err != nil {
			return
		}
		dec := frame.Decoder{MaxPayload: frame.DefaultMaxPayload}
		var enc frame.Encoder
		tmp := make([]byte, 4096)
		for {
			for {
				g, used, err := dec.Decode(pending)
				if err != nil {
					break
				}
				if out := onFrame(&enc, g); len(out) > 0 {
					conn.Write(out)
				}
				pending = pending[used:]
			}
			n, err := conn.Read(tmp)
			if err != nil {
				return
			}
			pending = append(pending, tmp[:n]...)
		}
	})
}

// withForger starts one real plaintext node and a forging one, and a
// client connected to both.
func withForger(t *testing.T, answer func(enc *frame.Encoder, doit frame.Frame) []byte) (c *cluster, forger string, cl *Client) {
	c = newCluster(t, 1, func(cfg *Config) { cfg.InsecurePlaintext = true }, // the forger speaks plaintext
		func(cfg *node.Config) { cfg.InsecurePlaintext = true })
	forger = forgingNode(t, answer)
	cl = connectedClient(t, Config{Nodes: []string{c.addrs[0], forger}, InsecurePlaintext: true, Secret: secret})
	return c, forger, cl
}

// replyBelowOwnRef answers a DOIT with a REPLY for the ref just below its
// own (a job it does not run), then one for its own: a node that guesses
// refs.
func replyBelowOwnRef(enc *frame.Encoder, doit frame.Frame) []byte {
	out := enc.Append(nil, frame.TypeReply, doit.Ref-1, []byte("forged"))
	return enc.Append(out, frame.TypeReply, doit.Ref, []byte("own"))
}

// A node's frames reach only the jobs sent to that node: a REPLY naming
// another node's job is dropped, so that job is neither ended (and left
// out of KILL_ALL) nor fed.
func TestFramesForAnotherNodesJobAreDropped(t *testing.T) {
	c, forger, cl := withForger(t, replyBelowOwnRef)
	co := mustNew(t, cl, context.Background(), 2)
	defer co.Close()
	if _, err := co.Submit(Job{Node: c.addrs[0], Handler: "block"}, Job{Node: forger, Handler: "echo"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := co.Recv(RecvOptions{Timeout: 2 * time.Second}, func(m Message) (bool, error) {
		got = append(got, m.Worker.Node+":"+string(m.Payload))
		return false, nil
	})
	var te *TimeoutError
	if !errors.As(err, &te) || len(te.Pending) != 1 || te.Pending[0].Node != c.addrs[0] {
		t.Fatalf("Recv %v after %q; want a timeout naming the block job, still running", err, got)
	}
	if len(got) != 1 || got[0] != forger+":own" {
		t.Fatalf("messages %q, want only the forger's own reply", got)
	}
	if live := c.live(); live != 1 {
		t.Fatalf("%d live workers, want the block job", live)
	}
}

// A candidate that ends without being started (its node sends LAST right
// after STREAM_INIT) serves its range, as a LAST without rows does: the
// stream completes instead of waiting for a range nobody will serve.
func TestCandidateEndingWithoutStartServesItsRange(t *testing.T) {
	c, forger, cl := withForger(t, func(enc *frame.Encoder, doit frame.Frame) []byte {
		out := enc.Append(nil, frame.TypeStreamInit, doit.Ref, nil)
		return enc.Append(out, frame.TypeLast, doit.Ref, []byte("early"))
	})
	firstDone := make(chan struct{})
	c.nodes[0].Handle("after", func(ctx context.Context, w *node.Worker) error {
		select { // the other range's INIT comes once the forger's LAST was taken
		case <-firstDone:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := w.Stream([]byte("row")); err != nil {
			return err
		}
		return w.Last(nil)
	})
	co := mustNew(t, cl, context.Background(), 2)
	defer co.Close()
	rs := Ranges(2)
	if _, err := co.Submit(Job{Node: forger, Handler: "rows", Range: rs[0]}, Job{Node: c.addrs[0], Handler: "after", Range: rs[1]}); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := co.Stream(StreamOptions{RecvOptions: RecvOptions{Timeout: waitFor}}, func(m Message) error {
		got = append(got, m.Kind.String()+":"+string(m.Payload))
		if m.Kind == KindLast && m.Worker.Node == forger {
			close(firstDone)
		}
		return nil
	})
	if err != nil || len(got) != 3 {
		t.Fatalf("Stream %v, messages %q; want the forger's LAST, then the other range's row and LAST", err, got)
	}
}

// Close leaves out of KILL_ALL only the jobs whose own node ended them: a
// forged REPLY waiting unread in the inbox does not spare the real worker.
func TestCloseKillsAJobAnotherNodeClaimedEnded(t *testing.T) {
	c, forger, cl := withForger(t, replyBelowOwnRef)
	co := mustNew(t, cl, context.Background(), 2)
	if _, err := co.Submit(Job{Node: c.addrs[0], Handler: "block"}, Job{Node: forger, Handler: "echo"}); err != nil {
		t.Fatal(err)
	}
	c.waitLive(t, 1)
	eventually(t, "both replies wait in the inbox", func() bool {
		co.s.inbox.mu.Lock()
		defer co.s.inbox.mu.Unlock()
		return len(co.s.inbox.cur.entries) == 2
	})
	co.Close()
	c.waitLive(t, 0)
}

// A node whose read holds a good frame for a coordinator and then one
// that ends the session (a frame only coordinators send, or an ERROR)
// ends only its session: the reader lets go of the coordinator's inbox
// (it holds that lock over a run of frames) before it reports the bad
// frame, so the coordinator still gets its reply and closes.
func TestBadFrameAfterAGoodOneInOneRead(t *testing.T) {
	for name, tail := range map[string]func(enc *frame.Encoder, out []byte, ref uint64) []byte{
		"START": func(enc *frame.Encoder, out []byte, ref uint64) []byte {
			return enc.AppendEmpty(out, frame.TypeStart, ref)
		},
		"ERROR": func(enc *frame.Encoder, out []byte, ref uint64) []byte {
			return enc.AppendError(out, 0, frame.CodeInternal, "node failing")
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, forger, cl := withForger(t, func(enc *frame.Encoder, doit frame.Frame) []byte {
				return tail(enc, enc.Append(nil, frame.TypeReply, doit.Ref, []byte("own")), doit.Ref)
			})
			done := make(chan error, 1)
			go func() { done <- replyThenClose(cl, forger) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(waitFor):
				t.Fatal("the coordinator is stuck")
			}
			eventually(t, "the forger's session ended", func() bool { return cl.Stats().NodeDowns > 0 })
		})
	}
}

// replyThenClose runs one echo job on node and wants its reply.
func replyThenClose(cl *Client, node string) error {
	co, err := cl.New(context.Background(), 1)
	if err != nil {
		return err
	}
	defer co.Close()
	if _, err := co.Submit(Job{Node: node, Handler: "echo"}); err != nil {
		return err
	}
	var kinds []Kind
	err = co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		kinds = append(kinds, m.Kind)
		return false, nil
	})
	if err != nil || len(kinds) != 1 || kinds[0] != KindReply {
		return fmt.Errorf("Recv %v after %v, want the reply", err, kinds)
	}
	return nil
}

// A node that ignores the window cannot make the coordinator hold what it
// sends: once a job has the window's rows taken in and not acknowledged
// (the fan-out's buffer is past what it acknowledges on receipt), its next
// row ends the connection with ERROR UNEXPECTED, and the job fails as
// node-down. Rows with no payload count too: each costs an entry.
func TestRowsPastTheWindowEndTheConnection(t *testing.T) {
	for _, tc := range []struct {
		name string
		row  []byte
		sent int
	}{
		{"64 KiB rows", bytes.Repeat([]byte("r"), 64<<10), 40},
		{"empty rows", nil, 4 * ackBudget / entrySize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flooder, refused := rowFlooder(t, tc.sent, tc.row)
			_, co := oneJobOn(t, flooder, "rows")
			select { // nothing consumes meanwhile: the rows pile up in the coordinator
			case code := <-refused:
				if code != frame.CodeUnexpected {
					t.Fatalf("node got ERROR %v, want UNEXPECTED", code)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the coordinator took every row")
			}
			rows, down, err := rowsUntilDown(co)
			held := ackBudget/(len(tc.row)+entrySize) + 5 // acknowledged on receipt, then one window
			if err != nil || down == nil || rows > held {
				t.Fatalf("Recv %v after %d rows (at most %d), node down: %v", err, rows, held, down)
			}
			if !strings.Contains(down.Error(), "past its window") {
				t.Fatalf("node down: %v", down)
			}
		})
	}
}

// Rows the coordinator acknowledges on receipt count against the window
// too until their ACK is queued, after the read that brought them: a node
// that sends window+1 rows of a job in one burst, before any ACK could
// reach it, breaks the protocol however fast the application consumes.
// (Counting only the rows left to acknowledge on consumption, the
// coordinator caught such a node only once its buffer was full, so a
// flooding node read by a fast application streamed on for good.)
func TestRowsPastTheWindowAreCaughtWhileAcknowledgedOnReceipt(t *testing.T) {
	flooder, refused := rowFlooder(t, 6, []byte("row"))
	_, co := oneJobOn(t, flooder, "rows")
	rows, down, err := rowsUntilDown(co)
	if err != nil || down == nil || !strings.Contains(down.Error(), "past its window") || rows > 5 {
		t.Fatalf("Recv %v after %d rows (at most 5), node down: %v", err, rows, down)
	}
	if code := <-refused; code != frame.CodeUnexpected {
		t.Fatalf("node got ERROR %v, want UNEXPECTED", code)
	}
}

// rowFlooder is a node with a window of 5 that answers a DOIT with n
// copies of row in one write, ACKs or not; the code of the ERROR it gets
// comes on refused.
func rowFlooder(t *testing.T, n int, row []byte) (addr string, refused <-chan frame.ErrorCode) {
	return rowsNode(t, n, row, false)
}

// rowsNode answers each DOIT with n copies of row in one write, then a
// LAST if last is set; the code of the first ERROR it gets comes on
// refused.
func rowsNode(t *testing.T, n int, row []byte, last bool) (addr string, refused <-chan frame.ErrorCode) {
	codes := make(chan frame.ErrorCode, 1)
	addr = scriptedNode(t, func(enc *frame.Encoder, f frame.Frame) []byte {
		switch f.Type {
		case frame.TypeDoit:
			var out []byte
			for range n {
				out = enc.Append(out, frame.TypeStream, f.Ref, row)
			}
			if last {
				out = enc.Append(out, frame.TypeLast, f.Ref, nil)
			}
			return out
		case frame.TypeError:
			code, _, _ := frame.ParseError(f.Payload)
			select {
			case codes <- code:
			default: // the first is kept
			}
		}
		return nil
	})
	return addr, codes
}

// rowsUntilDown receives co's messages until its one job is over and
// returns the rows that came and the job's node-down error.
func rowsUntilDown(co *Coordinator) (rows int, down, err error) {
	err = co.Recv(RecvOptions{Timeout: 10 * time.Second}, func(m Message) (bool, error) {
		switch m.Kind {
		case KindRow:
			rows++
		case KindNodeDown:
			down = m.Err
		}
		return false, nil
	})
	return rows, down, err
}

// What a node may send at most once per job (STREAM_INIT, and one of
// REPLY, LAST or EXIT, after which nothing), or once per batch (PING: one
// resets the timer as well as many), is all the coordinator holds of it:
// the rest is dropped as it is read, so a node cannot grow a coordinator
// that is not consuming.
func TestRepeatedFramesAreNotHeld(t *testing.T) {
	node := forgingNode(t, func(enc *frame.Encoder, doit frame.Frame) []byte {
		var out []byte
		for _, run := range []struct {
			t frame.Type
			n int
		}{{frame.TypeStreamInit, 10}, {frame.TypePing, 1000}, {frame.TypeReply, 10}, {frame.TypePing, 10}} {
			for range run.n {
				out = enc.Append(out, run.t, doit.Ref, nil)
			}
		}
		return out
	})
	cl, co := oneJobOn(t, node, "echo")
	eventually(t, "the repeats dropped", func() bool { return cl.stats.dropped.Load() == 9+999+9+10 })
	co.s.inbox.mu.Lock()
	held := len(co.s.inbox.cur.entries)
	co.s.inbox.mu.Unlock()
	if held != 3 {
		t.Fatalf("%d frames held, want STREAM_INIT, one PING and the REPLY", held)
	}
}

// oneJobOn connects a client to node alone and submits one job for
// handler; the coordinator closes when the test ends.
func oneJobOn(t *testing.T, node, handler string) (*Client, *Coordinator) {
	t.Helper()
	cl := connectedClient(t, Config{Nodes: []string{node}, InsecurePlaintext: true, Secret: secret})
	co := mustNew(t, cl, context.Background(), 1)
	t.Cleanup(func() { co.Close() })
	if _, err := co.Submit(Job{Node: node, Handler: handler}); err != nil {
		t.Fatal(err)
	}
	return cl, co
}

// A frame whose type carries no payload (STREAM_INIT, PING, HEARTBEAT)
// but has one, or an EXIT that does not parse, ends the connection with
// ERROR MALFORMED and the job fails as node-down: held as it is, a 16 MiB
// STREAM_INIT would cost 16 MiB a job.
func TestMalformedPayloadsEndTheConnection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		t       frame.Type
		payload []byte
	}{
		{"STREAM_INIT", frame.TypeStreamInit, []byte("x")},
		{"PING", frame.TypePing, []byte("x")},
		{"HEARTBEAT", frame.TypeHeartbeat, []byte("x")},
		{"EXIT", frame.TypeExit, []byte{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refused := make(chan frame.ErrorCode, 1)
			node := scriptedNode(t, func(enc *frame.Encoder, f frame.Frame) []byte {
				switch f.Type {
				case frame.TypeDoit:
					return enc.Append(nil, tc.t, f.Ref, tc.payload)
				case frame.TypeError:
					code, _, _ := frame.ParseError(f.Payload)
					refused <- code
				}
				return nil
			})
			_, co := oneJobOn(t, node, "rows")
			select {
			case code := <-refused:
				if code != frame.CodeMalformed {
					t.Fatalf("node got ERROR %v, want MALFORMED", code)
				}
			case <-time.After(waitFor):
				t.Fatal("the coordinator took the frame")
			}
			if down := nodeDownOf(t, co); !errors.Is(down, ErrNodeDown) {
				t.Fatalf("job ended with %v, want node-down", down)
			}
		})
	}
}

// A node's ERROR message is cut to 1 KiB, on a UTF-8 boundary, in the
// errors of the jobs it fails: it is repeated in each, and logged.
func TestANodesErrorMessageIsCut(t *testing.T) {
	node := forgingNode(t, func(enc *frame.Encoder, doit frame.Frame) []byte {
		return enc.AppendError(nil, 0, frame.CodeInternal, strings.Repeat("é", 50_000))
	})
	_, co := oneJobOn(t, node, "rows")
	down := nodeDownOf(t, co)
	var ne *NodeError
	if !errors.As(down, &ne) {
		t.Fatalf("job ended with %v, want a NodeError", down)
	}
	if len(ne.Reason) > maxNodeReason+len(" …") || !utf8.ValidString(ne.Reason) || !strings.HasPrefix(ne.Reason, "éé") {
		t.Fatalf("reason of %d bytes (valid UTF-8: %v), want at most %d", len(ne.Reason), utf8.ValidString(ne.Reason), maxNodeReason)
	}
}

// nodeDownOf receives co's messages until its job fails as node-down and
// returns that error.
func nodeDownOf(t *testing.T, co *Coordinator) error {
	t.Helper()
	var down error
	err := co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
		if m.Kind == KindNodeDown {
			down = m.Err
			return true, nil
		}
		return false, nil
	})
	if err != nil || down == nil {
		t.Fatalf("Recv: %v, no node-down", err)
	}
	return down
}
