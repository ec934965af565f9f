package coord

import (
	"crypto/rand"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/rexi-go/rexi/frame"
)

// fakeNode listens on loopback and runs serve on every connection, each
// on its own goroutine; the test's cleanup closes the listener and every
// connection and waits for them. serve plays a node that a real one will
// not: frozen, flapping, or breaking the protocol.
func fakeNode(t testing.TB, serve func(conn net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				serve(conn)
			}()
		}
	}()
	return ln.Addr().String()
}

// welcomeAs plays a plaintext node's side of the handshake on conn: it
// reads HELLO, answers w (nonce and MAC filled in) and reads AUTH. It
// returns what came after AUTH in the same read.
func welcomeAs(conn net.Conn, w frame.Welcome) (rest []byte, err error) {
	f, _, _, err := readOneFrame(conn, frame.Decoder{MaxPayload: 1024})
	if err != nil {
		return nil, fmt.Errorf("reading HELLO: %w", err)
	}
	_, _ = rand.Read(w.Nonce[:])
	w.MAC = frame.NodeMAC(secret, f.Payload, frame.WelcomeBody(w))
	if _, err := conn.Write(frame.AppendWelcome(nil, w)); err != nil {
		return nil, err
	}
	if f, _, rest, err = readOneFrame(conn, frame.Decoder{MaxPayload: 1024}); err != nil || f.Type != frame.TypeAuth {
		return nil, fmt.Errorf("reading AUTH: got %s, %v", f.Type, err)
	}
	return rest, nil
}
