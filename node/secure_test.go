package node

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/secure"
)

var coordKey = mustKey()

func mustKey() secure.PrivateKey {
	k, err := secure.GenerateKey()
	if err != nil {
		panic(err)
	}
	return k
}

func encryptedNode(t *testing.T, p *probe, mod func(*Config)) *Node {
	return startNode(t, p, func(c *Config) {
		c.InsecurePlaintext = false
		if mod != nil {
			mod(c)
		}
	})
}

func hello() frame.Hello {
	return frame.Hello{Version: frame.Version, Features: frame.FeatureChecksum | frame.FeatureCompression,
		MaxPayload: frame.DefaultMaxPayload, Name: []byte("enc-coord")}
}

func TestEncryptedConnectionServes(t *testing.T) {
	p := newProbe()
	n := encryptedNode(t, p, nil)
	c := dialRaw(t, n.Addr())
	w := c.EncryptedHandshake(coordKey, testSecret, hello())
	if w.Features&frame.FeatureChecksum != 0 || w.Features&frame.FeatureCompression == 0 {
		t.Fatalf("features %v: checksums are pointless under records, compression stays", w.Features)
	}
	big := strings.Repeat("z", 3<<20) // spans several records both ways
	c.Doit(1, "echo", big)
	if f := c.Expect(frame.TypeReply, 1); string(f.Payload) != big {
		t.Fatalf("reply of %d bytes", len(f.Payload))
	}
	c.Doit(2, "rows", "12")
	c.Expect(frame.TypeStreamInit, 2)
	c.Control(frame.TypeStart, 2)
	for i := 0; i < 12; i++ {
		if i > 0 && i%DefaultWindow == 0 {
			c.Ack(2, DefaultWindow)
		}
		c.Expect(frame.TypeStream, 2)
	}
	c.Expect(frame.TypeLast, 2)
}

// Each side's refusal names the mismatch, before any job can run.
func TestEncryptionRefusals(t *testing.T) {
	p := newProbe()
	enc := encryptedNode(t, p, nil)
	plain := startNode(t, p, nil)
	pinned := encryptedNode(t, p, func(c *Config) { c.AllowedKeys = []secure.PublicKey{mustKey().Public()} })

	t.Run("plaintext coordinator, encrypted node", func(t *testing.T) {
		c := dialRaw(t, enc.Addr())
		c.Write(frame.AppendHello(nil, hello()))
		if msg := c.ExpectClosedWith(frame.CodeBadHandshake); !strings.Contains(msg, "requires an encrypted connection") {
			t.Fatalf("refusal %q does not say why", msg)
		}
	})
	t.Run("encrypted coordinator, plaintext node", func(t *testing.T) {
		c := dialRaw(t, plain.Addr())
		if err := c.NoiseHandshake(secure.Config{Key: coordKey, Secret: testSecret}, hello()); err == nil {
			t.Fatal("a plaintext node completed a Noise handshake")
		}
		if msg := c.ExpectClosedWith(frame.CodeBadHandshake); !strings.Contains(msg, "runs without encryption") {
			t.Fatalf("refusal %q does not say why", msg)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		c := dialRaw(t, enc.Addr())
		if err := c.NoiseHandshake(secure.Config{Key: coordKey, Secret: []byte("not the secret")}, hello()); err != nil {
			t.Fatal(err) // message 3 is sent; the node finds out
		}
		c.Doit(1, "block", "must not run")
		if msg := c.ExpectClosedWith(frame.CodeAuthFailed); !strings.Contains(msg, "cluster secret") {
			t.Fatalf("refusal %q", msg)
		}
	})
	t.Run("coordinator key not allowed", func(t *testing.T) {
		c := dialRaw(t, pinned.Addr())
		if err := c.NoiseHandshake(secure.Config{Key: coordKey, Secret: testSecret}, hello()); err != nil {
			t.Fatal(err)
		}
		c.Doit(1, "block", "must not run")
		if msg := c.ExpectClosedWith(frame.CodeAuthFailed); !strings.Contains(msg, coordKey.Public().String()) {
			t.Fatalf("refusal %q does not name the key", msg)
		}
	})
	t.Run("node key not the one required", func(t *testing.T) {
		c := dialRaw(t, enc.Addr())
		err := c.NoiseHandshake(secure.Config{Key: coordKey, Secret: testSecret, Allowed: []secure.PublicKey{mustKey().Public()}}, hello())
		if !errors.Is(err, secure.ErrPeerKey) {
			t.Fatalf("handshake with a node whose key is not pinned: %v", err)
		}
	})
	for _, n := range []*Node{enc, plain, pinned} {
		if s := n.Stats(); s.Started != 0 {
			t.Fatalf("a refused connection started %d jobs", s.Started)
		}
	}
}

// A tampered record ends the connection and kills its workers: a flipped
// bit, a replayed record and a dropped record alike.
func TestTamperedRecordsEndTheConnection(t *testing.T) {
	cases := map[string]func(recs [][]byte) []byte{
		"flipped bit": func(recs [][]byte) []byte {
			r := bytes.Clone(recs[0])
			r[len(r)-20] ^= 0x04
			return r
		},
		"replayed record": func(recs [][]byte) []byte { return append(bytes.Clone(recs[0]), recs[0]...) },
		"dropped record":  func(recs [][]byte) []byte { return recs[1] },
	}
	for name, tamper := range cases {
		t.Run(name, func(t *testing.T) {
			p := newProbe()
			n := encryptedNode(t, p, nil)
			c := dialRaw(t, n.Addr())
			c.EncryptedHandshake(coordKey, testSecret, hello())
			c.Doit(1, "block", "victim")
			p.waitEvent(t, "block:victim")
			// Two records, each one ACK, sealed but written by the tamperer.
			var recs [][]byte
			for ref := uint64(10); ref < 12; ref++ {
				recs = append(recs, c.Sess.Send.Seal(nil, c.Enc.AppendAck(nil, ref, 1)))
			}
			c.Write(tamper(recs))
			c.ExpectClosedWith(frame.CodeBadRecord)
			if err := p.waitCause(t); !errors.Is(err, ErrKilled) {
				t.Fatalf("worker stopped by %v, want killed with its connection", err)
			}
		})
	}
}

// Both directions rekey at the sender's limit; the receiver follows.
func TestRekeyEndToEnd(t *testing.T) {
	n := encryptedNode(t, newProbe(), func(c *Config) { c.rekeyRecords = 2 })
	c := dialRaw(t, n.Addr())
	c.EncryptedHandshake(coordKey, testSecret, hello())
	c.Sess.Send.RekeyRecords = 3
	for ref := uint64(1); ref <= 20; ref++ {
		c.Doit(ref, "echo", "k")
		c.Expect(frame.TypeReply, ref)
	}
	if g := c.Sess.Send.Generation(); g < 5 {
		t.Fatalf("coordinator at key generation %d after 21 records at 3 per key", g)
	}
}
