package coord

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/rexi-go/rexi/node"
	"github.com/rexi-go/rexi/secure"
)

// recordingProxy forwards one TCP address to another and keeps every byte
// that crosses it, both ways.
type recordingProxy struct {
	ln  net.Listener
	mu  sync.Mutex
	all []byte
	wg  sync.WaitGroup
}

func newRecordingProxy(t *testing.T, target string) *recordingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &recordingProxy{ln: ln}
	var conns []net.Conn
	var cmu sync.Mutex
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			cmu.Lock()
			conns = append(conns, in, out)
			cmu.Unlock()
			for _, pair := range [][2]net.Conn{{in, out}, {out, in}} {
				p.wg.Add(1)
				go func() {
					defer p.wg.Done()
					defer pair[1].Close()
					buf := make([]byte, 32<<10)
					for {
						n, err := pair[0].Read(buf)
						p.mu.Lock()
						p.all = append(p.all, buf[:n]...)
						p.mu.Unlock()
						if _, werr := pair[1].Write(buf[:n]); err != nil || werr != nil {
							return
						}
					}
				}()
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cmu.Lock()
		for _, c := range conns {
			c.Close()
		}
		cmu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *recordingProxy) saw(marker []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Contains(p.all, marker)
}

// A fan-out whose args and rows carry a marker: the marker never appears
// on the wire of an encrypted connection (and does on a plaintext one,
// which shows the check can see it).
func TestMarkerNeverOnTheWire(t *testing.T) {
	marker := []byte("MARKER-7f3a9c-SECRET-ROW")
	for _, plaintext := range []bool{false, true} {
		n, err := node.New(node.Config{Secret: secret, Logger: testLogger(), InsecurePlaintext: plaintext})
		if err != nil {
			t.Fatal(err)
		}
		n.Handle("marked", func(ctx context.Context, w *node.Worker) error {
			for i := 0; i < 20; i++ {
				if err := w.Stream(append(append([]byte(nil), w.Args()...), byte('a'+i))); err != nil {
					return err
				}
			}
			return w.Last(w.Args())
		})
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		proxy := newRecordingProxy(t, n.Addr())
		addr := proxy.ln.Addr().String()
		cl := connectedClient(t, Config{Nodes: []string{addr}, InsecurePlaintext: plaintext, Compression: true})
		co := mustNew(t, cl, context.Background(), 1)
		co.Submit(Job{Node: addr, Handler: "marked", Args: marker, Range: Range{0, 1<<32 - 1}})
		rows := 0
		err = co.Stream(StreamOptions{RecvOptions: RecvOptions{Timeout: waitFor}}, func(m Message) error {
			if m.Kind == KindRow && bytes.HasPrefix(m.Payload, marker) {
				rows++
			}
			return nil
		})
		co.Close()
		if err != nil || rows != 20 {
			t.Fatalf("plaintext=%v: Stream %v after %d rows", plaintext, err, rows)
		}
		if got := proxy.saw(marker); got != plaintext {
			t.Fatalf("plaintext=%v: marker seen on the wire: %v", plaintext, got)
		}
	}
}

// Every mismatch is refused during the handshake, before any job runs,
// with a reason a user can act on.
func TestRefusedBeforeAnyJobRuns(t *testing.T) {
	other := func() secure.PublicKey { k, _ := secure.GenerateKey(); return k.Public() }
	cases := []struct {
		name   string
		node   node.Config
		client Config
		reason string
	}{
		{"wrong secret", node.Config{}, Config{Secret: []byte("not the cluster secret")}, "secret"},
		{"coordinator key not allowed by the node", node.Config{AllowedKeys: []secure.PublicKey{other()}}, Config{}, "allowed"},
		{"node key not the one the client requires", node.Config{}, Config{NodeKeys: []secure.PublicKey{other()}}, "NodeKeys"},
		{"plaintext client, encrypted node", node.Config{}, Config{InsecurePlaintext: true}, "requires an encrypted connection"},
		{"encrypted client, plaintext node", node.Config{InsecurePlaintext: true}, Config{}, "runs without encryption"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nc := tc.node
			nc.Secret, nc.Logger = secret, testLogger()
			n, err := node.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			registerTestHandlers(n)
			if err := n.Start(); err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			cfg := tc.client
			cfg.Nodes, cfg.Logger = []string{n.Addr()}, testLogger()
			if cfg.Secret == nil {
				cfg.Secret = secret
			}
			cl, err := NewClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			err = cl.WaitConnected(ctx) // returns at once: the refusal is permanent
			var he *HandshakeError
			if !errors.As(err, &he) || !he.Permanent() {
				t.Fatalf("WaitConnected: %v, want a permanent handshake refusal", err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("refusal %q does not say %q", err, tc.reason)
			}
			co := mustNew(t, cl, context.Background(), 1)
			co.Submit(Job{Node: n.Addr(), Handler: "block"})
			co.Recv(RecvOptions{Timeout: waitFor}, func(m Message) (bool, error) {
				if !errors.Is(m.Err, ErrNodeDown) {
					t.Errorf("job on a refused node: %v, want node-down", m.Err)
				}
				return true, nil
			})
			co.Close()
			if s := n.Stats(); s.Started != 0 || s.Connections != 0 {
				t.Fatalf("node started %d jobs on %d connections", s.Started, s.Connections)
			}
		})
	}
}
