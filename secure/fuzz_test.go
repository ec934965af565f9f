package secure

import (
	"bytes"
	"testing"

	"github.com/rexi-go/rexi/frame"
)

// FuzzOpen feeds arbitrary bytes to a receiving session as RECORDs: they
// must fail cleanly (never panic, never open) — only the peer's sealer can
// make a record that opens. The seeds are records and handshake messages.
func FuzzOpen(f *testing.F) {
	cs, _, err := fuzzPair()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cs.Send.Seal(nil, []byte("a frame")))
	f.Add(cs.Send.Seal(nil, nil))
	f.Add([]byte{0, 0, 0, 16, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, ns, err := fuzzPair()
		if err != nil {
			t.Fatal(err)
		}
		dec := frame.Decoder{MaxPayload: MaxRecordPayload}
		for len(b) >= frame.HeaderSize {
			fr, n, err := dec.Decode(b)
			if err != nil {
				return
			}
			if p, err := ns.Recv.Open(nil, b[:frame.HeaderSize], fr); err == nil {
				t.Fatalf("forged bytes opened as %q", p)
			}
			b = b[n:]
		}
	})
}

// fuzzPair is a fresh coordinator and node session pair (random
// ephemerals: a record sealed for one pair opens for no other).
func fuzzPair() (cs, ns *Session, err error) {
	ci, _ := NewHandshake(Config{Key: PrivateKey(fixed(1)), Secret: []byte("s")}, true)
	nr, _ := NewHandshake(Config{Key: PrivateKey(fixed(2)), Secret: []byte("s")}, false)
	_, _, _, cs, ns, err = exchange(ci, nr)
	return cs, ns, err
}

// exchange runs a handshake between coordinator ci and node nr: its three
// messages and the two sessions.
func exchange(ci, nr *Handshake) (m1, m2, m3 []byte, cs, ns *Session, err error) {
	m1, _, _ = ci.Write(nil, nil)
	if _, _, err = nr.Read(nil, m1); err != nil {
		return
	}
	m2, _, _ = nr.Write(nil, nil)
	if _, _, err = ci.Read(nil, m2); err != nil {
		return
	}
	m3, cs, _ = ci.Write(nil, nil)
	_, ns, err = nr.Read(nil, m3)
	return
}

// fixedHandshake is one side of a handshake whose ephemeral key is fixed,
// so that a genuine exchange is the same bytes every time.
func fixedHandshake(initiator bool) *Handshake {
	key, eph := fixed(1), fixed(0x81)
	if !initiator {
		key, eph = fixed(2), fixed(0xc1)
	}
	h, _ := NewHandshake(Config{Key: PrivateKey(key), Secret: []byte("s"), Random: bytes.NewReader(eph)}, initiator)
	return h
}

// FuzzHandshake feeds arbitrary bytes to a node's handshake as the
// coordinator's messages 1 and 3, and to a coordinator's as the node's
// message 2: they fail cleanly (never panic), and nothing but the genuine
// exchange, made with the cluster secret, completes the node's side (the
// coordinator's completes only when it writes message 3).
func FuzzHandshake(f *testing.F) {
	m1, m2, m3, _, _, err := exchange(fixedHandshake(true), fixedHandshake(false))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(m1, m3, m2)
	f.Add(m1, m3[:len(m3)-1], m2[1:])
	f.Add(append(m1, 0), m3, append(m2, 0))
	f.Fuzz(func(t *testing.T, first, third, second []byte) {
		node := fixedHandshake(false)
		if _, s, err := node.Read(nil, first); err == nil {
			if s != nil {
				t.Fatal("message 1 completed the node's handshake")
			}
			node.Write(nil, nil)
			_, s, err := node.Read(nil, third)
			if err == nil && s != nil && !(bytes.Equal(first, m1) && bytes.Equal(third, m3)) {
				t.Fatalf("a forged exchange completed the node's handshake:\n1 %x\n3 %x", first, third)
			}
		}
		coord := fixedHandshake(true)
		coord.Write(nil, nil)
		if _, s, err := coord.Read(nil, second); err == nil && s != nil {
			t.Fatal("message 2 completed the coordinator's handshake")
		}
	})
}
