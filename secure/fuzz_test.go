package secure

import (
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

// fuzzPair is a fresh coordinator and node session pair.
func fuzzPair() (cs, ns *Session, err error) {
	ci, _ := NewHandshake(Config{Key: PrivateKey(fixed(1)), Secret: []byte("s")}, true)
	nr, _ := NewHandshake(Config{Key: PrivateKey(fixed(2)), Secret: []byte("s")}, false)
	m1, _, _ := ci.Write(nil, nil)
	if _, _, err := nr.Read(nil, m1); err != nil {
		return nil, nil, err
	}
	m2, _, _ := nr.Write(nil, nil)
	if _, _, err := ci.Read(nil, m2); err != nil {
		return nil, nil, err
	}
	m3, cs, _ := ci.Write(nil, nil)
	_, ns, err = nr.Read(nil, m3)
	return cs, ns, err
}
