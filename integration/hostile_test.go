package integration

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/internal/proctest"
	"github.com/rexi-go/rexi/secure"
)

// Hostile input against a live node, for 10 s (60 s in make soak): random
// bytes, random valid-looking frames, oversize lengths, KILL_ALL for
// another connection's refs, handshake replays. The node never crashes,
// never kills another connection's workers, and a well-behaved client
// keeps streaming throughout.
func TestHostileInput(t *testing.T) {
	dur := 10 * time.Second
	if soak() {
		dur = 60 * time.Second
	}
	c := startCluster(t, 1)
	node := c.procs[0]
	cl := newClient(t, c.addrs, nil)

	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var attacks atomic.Int64
	var wg sync.WaitGroup
	for a := 0; a < 3; a++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, seed))
			for ctx.Err() == nil {
				attack(t, c.addrs[0], rng)
				attacks.Add(1)
			}
		}(uint64(a) + 1)
	}

	// The well-behaved client: streaming fan-outs back to back, each
	// verified complete. Its refs (coordinator id << 24 | slot) are small
	// numbers the attackers' KILL_ALLs aim at.
	fanouts, rows := 0, 0
	for ctx.Err() == nil {
		co, err := cl.New(context.Background(), 16)
		if err != nil {
			t.Fatal(err)
		}
		for _, rg := range coord.Ranges(16) {
			co.Submit(coord.Job{Node: c.addrs[0], Handler: "rows", Range: rg, Args: []byte("50:50")})
		}
		n := 0
		err = co.Stream(coord.StreamOptions{RecvOptions: coord.RecvOptions{Timeout: proctest.WaitFor}}, func(m coord.Message) error {
			if m.Kind == coord.KindRow {
				n++
			}
			return nil
		})
		co.Close()
		if err != nil || n != 16*50 {
			t.Fatalf("well-behaved fan-out %d failed after %d rows: %v", fanouts, n, err)
		}
		fanouts++
		rows += n
	}
	wg.Wait()
	if !node.Running() {
		t.Fatalf("the node died under hostile input:\n%s", node.Stderr)
	}
	if killed := node.Metric("rexi_node_workers_killed_total"); killed != 0 {
		t.Fatalf("%v of the good client's workers were killed", killed)
	}
	proctest.Eventually(t, "no live workers", func() bool { return node.Metric("rexi_node_live_workers") == 0 })
	t.Logf("%v: %d hostile connections (%v refused at handshake, %v protocol errors); good client: %d fan-outs, %d rows",
		dur, attacks.Load(), node.Metric("rexi_node_connections_refused_total"), node.Metric("rexi_node_protocol_errors_total"), fanouts, rows)
}

// attackerKey is the hostile connections' static key: they know the
// cluster secret, so they get through the handshake.
var attackerKey = func() secure.PrivateKey {
	k, err := secure.GenerateKey()
	if err != nil {
		panic(err)
	}
	return k
}()

// attack opens one connection and misbehaves in one random way.
func attack(t *testing.T, addr string, rng *rand.Rand) {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(200 * time.Millisecond))
	var enc frame.Encoder
	junk := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	randomFrame := func() []byte {
		types := []frame.Type{frame.TypeHello, frame.TypeWelcome, frame.TypeAuth, frame.TypeNoise, frame.TypeRecord, frame.TypeDoit, frame.TypeReply,
			frame.TypeStart, frame.TypeCancel, frame.TypeStream, frame.TypeAck, frame.TypeKillAll, frame.TypeHeartbeat, frame.TypeError}
		return frame.AppendRaw(nil, frame.Frame{Type: types[rng.IntN(len(types))], Ref: uint64(rng.IntN(1 << 30)), Payload: junk(rng.IntN(64))})
	}
	// After a real (encrypted) handshake, send seals what it writes: the
	// attacker knows the secret and attacks from inside the channel.
	var sess *secure.Session
	send := func(b []byte) {
		if sess != nil {
			b = sess.Send.Seal(nil, b)
		}
		nc.Write(b)
	}
	authed := func() bool {
		hs, err := secure.NewHandshake(secure.Config{Key: attackerKey, Secret: []byte(secret)}, true)
		if err != nil {
			return false
		}
		m1, _, _ := hs.Write(nil, nil)
		if _, err := nc.Write(secure.NoiseFrame(nil, m1)); err != nil {
			return false
		}
		var in []byte
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			in = append(in, buf[:n]...)
			if f, _, derr := (&frame.Decoder{MaxPayload: 1024}).Decode(in); derr == nil {
				if f.Type != frame.TypeNoise {
					return false
				}
				if _, _, err := hs.Read(nil, f.Payload); err != nil {
					return false
				}
				break
			}
			if err != nil {
				return false
			}
		}
		h := frame.AppendHello(nil, frame.Hello{Version: frame.Version, MaxPayload: frame.DefaultMaxPayload})
		m3, s, err := hs.Write(nil, h[frame.HeaderSize:])
		if err != nil {
			return false
		}
		if _, err := nc.Write(secure.NoiseFrame(nil, m3)); err != nil {
			return false
		}
		sess = s
		return true
	}
	switch rng.IntN(7) {
	case 0: // random bytes
		nc.Write(junk(1 + rng.IntN(4096)))
	case 1: // random valid-looking frames before the handshake
		for i := 0; i < 8; i++ {
			nc.Write(randomFrame())
		}
	case 2: // random frames after a real handshake
		if authed() {
			for i := 0; i < 8; i++ {
				send(randomFrame())
			}
		}
	case 3: // oversize length
		b := frame.AppendRaw(nil, frame.Frame{Type: frame.TypeDoit, Ref: 1})
		binary.BigEndian.PutUint32(b, 0x7fffffff)
		if rng.IntN(2) == 0 && !authed() {
			return
		}
		send(b)
	case 4: // KILL_ALL for another connection's refs, with valid frames
		if authed() {
			refs := make([]uint64, 256)
			for i := range refs {
				refs[i] = uint64(1+rng.IntN(4096))<<24 | uint64(rng.IntN(16))
			}
			send(enc.AppendKillAll(nil, refs))
			send(enc.AppendEmpty(nil, frame.TypeCancel, refs[0]))
		}
	case 5: // handshake replay inside the channel
		if authed() {
			send(frame.AppendHello(nil, frame.Hello{Version: frame.Version, MaxPayload: 1024}))
		}
	case 6: // forged records after a real handshake
		if authed() {
			nc.Write(frame.AppendRaw(nil, frame.Frame{Type: frame.TypeRecord, Ref: uint64(rng.IntN(2)), Payload: junk(16 + rng.IntN(512))}))
		}
	}
	// Read whatever the node answers until it closes or goes quiet.
	buf := make([]byte, 4096)
	for {
		if _, err := nc.Read(buf); err != nil {
			return
		}
	}
}
