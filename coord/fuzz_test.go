package coord

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
)

// FuzzNodeOutput plays a node that answers a coordinator's two DOITs (an
// echo job in slot 0, a rows stream in slot 1) with arbitrary bytes and
// then hangs up. Whatever comes, the client must not panic or hang: the
// receive loop ends with both jobs finished or failed (a node gone fails
// what it left), and once the coordinator is closed the client holds
// nothing. A fresh client per input makes the refs known (its first
// coordinator is number 1), so the seeds can name the jobs.
func FuzzNodeOutput(f *testing.F) {
	inputs := make(chan []byte, 1)
	addr := fakeNode(f, func(conn net.Conn) {
		pending, err := welcomeAs(conn, frame.Welcome{Version: frame.Version, MaxPayload: frame.DefaultMaxPayload, Window: 5, Name: []byte("fuzz")})
		if err != nil {
			return
		}
		var in []byte
		select {
		case in = <-inputs:
		default:
			return // a reconnection: nothing to say
		}
		_ = conn.SetDeadline(time.Now().Add(waitFor))
		dec := frame.Decoder{MaxPayload: frame.DefaultMaxPayload}
		tmp := make([]byte, 4096)
		for doits := 0; doits < 2; {
			g, used, err := dec.Decode(pending)
			if err == nil {
				if g.Type == frame.TypeDoit {
					doits++
				}
				pending = pending[used:]
				continue
			}
			n, err := conn.Read(tmp)
			if err != nil {
				return
			}
			pending = append(pending, tmp[:n]...)
		}
		_, _ = conn.Write(in)
		// A FIN, not a reset: a reset could drop what the client has not
		// read yet. Then wait for the client's side to go.
		_ = conn.(*net.TCPConn).CloseWrite()
		for {
			if _, err := conn.Read(tmp); err != nil {
				return
			}
		}
	})
	ref := func(slot int) uint64 { return 1<<refSlotBits | uint64(slot) }
	var enc frame.Encoder
	answer := enc.AppendReply(nil, ref(0), []byte("a"))
	answer = enc.Append(answer, frame.TypeStreamInit, ref(1), nil)
	for range 3 {
		answer = enc.AppendStream(answer, ref(1), []byte("row"))
	}
	answer = enc.AppendLast(answer, ref(1), nil)
	for _, seed := range [][]byte{
		answer,
		enc.AppendExit(nil, ref(0), frame.Exit{Kind: frame.ExitError, Reason: []byte("no")}),
		enc.AppendError(nil, 0, frame.CodeInternal, "bye"),
		enc.AppendStream(nil, ref(1), make([]byte, 64)),
		answer[:len(answer)-3],
		{0, 0, 0, 3, 0xee},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		select { // what an earlier input's connection did not take
		case <-inputs:
		default:
		}
		inputs <- in
		cl := connectedClient(t, Config{Nodes: []string{addr}, InsecurePlaintext: true, ReconnectMax: 10 * time.Millisecond})
		co, err := cl.New(context.Background(), 2)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := co.Submit(Job{Node: addr, Handler: "echo"}, Job{Node: addr, Handler: "rows", Args: []byte("3:3")}); err != nil {
			t.Fatal(err)
		}
		err = co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
			if m.Kind == KindStreamInit {
				co.Start(m.Worker.Slot)
			}
			return false, nil
		})
		var te *TimeoutError
		if errors.As(err, &te) {
			t.Fatalf("the receive loop waited out its timeout: %v", err)
		}
		co.Close()
		if h := cl.Stats().HeldBytes; h != 0 {
			t.Fatalf("%d bytes held after Close", h)
		}
		cl.Close()
	})
}
