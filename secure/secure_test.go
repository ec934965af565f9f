package secure

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/rexi-go/rexi/frame"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var secret = []byte("cluster secret")

func key(b byte) PrivateKey {
	var k PrivateKey
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

// handshake runs the three messages between a coordinator (initiator) and
// a node, with the payloads the protocol carries, and returns both
// sessions or the first error.
func handshake(t *testing.T, coord, node Config) (cs, ns *Session, err error) {
	t.Helper()
	ci, err := NewHandshake(coord, true)
	if err != nil {
		t.Fatal(err)
	}
	nr, err := NewHandshake(node, false)
	if err != nil {
		t.Fatal(err)
	}
	m1, _, err := ci.Write(nil, nil)
	if err != nil {
		return nil, nil, err
	}
	if _, _, err := nr.Read(nil, m1); err != nil {
		return nil, nil, err
	}
	m2, _, err := nr.Write(nil, nil)
	if err != nil {
		return nil, nil, err
	}
	if _, _, err := ci.Read(nil, m2); err != nil {
		return nil, nil, err
	}
	m3, cs, err := ci.Write(nil, []byte("hello payload"))
	if err != nil {
		return nil, nil, err
	}
	p, ns, err := nr.Read(nil, m3)
	if err != nil {
		return nil, nil, err
	}
	if string(p) != "hello payload" || cs == nil || ns == nil {
		t.Fatalf("message 3 payload %q, sessions %v %v", p, cs, ns)
	}
	if k, ok := nr.PeerKey(); !ok || k != coord.Key.Public() {
		t.Fatalf("node learned coordinator key %v, want %v", k, coord.Key.Public())
	}
	return cs, ns, nil
}

func TestHandshakeAuthenticatesBothSides(t *testing.T) {
	c := Config{Key: key(1), Secret: secret}
	n := Config{Key: key(100), Secret: secret}
	if _, _, err := handshake(t, c, n); err != nil {
		t.Fatalf("good handshake: %v", err)
	}
	bad := n
	bad.Secret = []byte("another secret")
	if _, _, err := handshake(t, c, bad); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong secret: %v, want ErrAuth", err)
	}
	pinned := n
	pinned.Allowed = []PublicKey{key(2).Public()}
	if _, _, err := handshake(t, c, pinned); !errors.Is(err, ErrPeerKey) {
		t.Fatalf("coordinator key not allowed by the node: %v, want ErrPeerKey", err)
	}
	pinned.Allowed = append(pinned.Allowed, c.Key.Public())
	if _, _, err := handshake(t, c, pinned); err != nil {
		t.Fatalf("allowed coordinator key: %v", err)
	}
	wantNode := c
	wantNode.Allowed = []PublicKey{key(7).Public()}
	if _, _, err := handshake(t, wantNode, n); !errors.Is(err, ErrPeerKey) {
		t.Fatalf("node key not the required one: %v, want ErrPeerKey", err)
	}
}

// records splits a byte stream of records into decoded frames with their
// header bytes.
func records(t *testing.T, b []byte) (hdrs [][]byte, fs []frame.Frame) {
	t.Helper()
	dec := frame.Decoder{MaxPayload: MaxRecordPayload}
	for len(b) > 0 {
		f, n, err := dec.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		hdrs, fs = append(hdrs, b[:frame.HeaderSize]), append(fs, f)
		b = b[n:]
	}
	return hdrs, fs
}

func TestRecordsOpenInOrderOnly(t *testing.T) {
	cs, ns, err := handshake(t, Config{Key: key(1), Secret: secret}, Config{Key: key(100), Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	var wire []byte
	for _, m := range []string{"one", "two", "three", "four"} {
		wire = cs.Send.Seal(wire, []byte(m))
	}
	hdrs, fs := records(t, wire)
	open := func(o *Opener, i int) ([]byte, error) { return o.Open(nil, hdrs[i], fs[i]) }
	if p, err := open(ns.Recv, 0); err != nil || string(p) != "one" {
		t.Fatalf("record 0: %q %v", p, err)
	}
	if _, err := open(ns.Recv, 0); !errors.Is(err, ErrRecord) {
		t.Fatalf("replayed record: %v, want ErrRecord", err)
	}
	// A fresh pair of sessions for each way a record can go wrong.
	cases := map[string]func(o *Opener) error{
		"dropped": func(o *Opener) error { _, err := open(o, 1); return err },
		"flipped bit": func(o *Opener) error {
			f := fs[0]
			f.Payload = bytes.Clone(f.Payload)
			f.Payload[2] ^= 0x10
			_, err := o.Open(nil, hdrs[0], f)
			return err
		},
		"header changed": func(o *Opener) error {
			h := bytes.Clone(hdrs[0])
			h[6] = 1 // reserved byte, authenticated as associated data
			_, err := o.Open(nil, h, fs[0])
			return err
		},
		"wrong generation": func(o *Opener) error {
			f := fs[0]
			f.Ref = 5
			_, err := o.Open(nil, hdrs[0], f)
			return err
		},
	}
	for name, bad := range cases {
		c2, n2, _ := handshake(t, Config{Key: key(1), Secret: secret}, Config{Key: key(100), Secret: secret})
		wire = nil
		for _, m := range []string{"one", "two", "three"} {
			wire = c2.Send.Seal(wire, []byte(m))
		}
		hdrs, fs = records(t, wire)
		if err := bad(n2.Recv); !errors.Is(err, ErrRecord) {
			t.Errorf("%s: %v, want ErrRecord", name, err)
		}
	}
}

// A sender moves to its next key at the limit; the receiver follows the
// generation in the record header.
func TestRekeyAtTinyLimits(t *testing.T) {
	cs, ns, err := handshake(t, Config{Key: key(1), Secret: secret}, Config{Key: key(100), Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	cs.Send.RekeyRecords = 3
	var wire []byte
	for i := 0; i < 10; i++ {
		wire = cs.Send.Seal(wire, []byte{byte(i)})
	}
	if g := cs.Send.Generation(); g != 3 {
		t.Fatalf("generation %d after 10 records at 3 per key, want 3", g)
	}
	hdrs, fs := records(t, wire)
	for i := range fs {
		p, err := ns.Recv.Open(nil, hdrs[i], fs[i])
		if err != nil || len(p) != 1 || p[0] != byte(i) {
			t.Fatalf("record %d (generation %d): %v %v", i, fs[i].Ref, p, err)
		}
	}
	cs.Send.RekeyBytes = 2
	wire = cs.Send.Seal(nil, []byte("abc"))
	wire = cs.Send.Seal(wire, []byte("d")) // the first record reached 3 bytes
	hdrs, fs = records(t, wire)
	for i := range fs {
		if _, err := ns.Recv.Open(nil, hdrs[i], fs[i]); err != nil {
			t.Fatalf("byte-limited record %d: %v", i, err)
		}
	}
}

// Records deleted just before a rekey do not go unnoticed: the counter
// runs across keys, so the first record under the next key fails to open,
// and the receiver keeps its key until a record opens with the next one.
func TestRecordsDroppedBeforeARekeyAreCaught(t *testing.T) {
	cs, ns, err := handshake(t, Config{Key: key(1), Secret: secret}, Config{Key: key(100), Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	cs.Send.RekeyRecords = 2
	var wire []byte
	for _, m := range []string{"zero", "one", "two"} { // "two" is the first under generation 1
		wire = cs.Send.Seal(wire, []byte(m))
	}
	hdrs, fs := records(t, wire)
	if fs[2].Ref != 1 {
		t.Fatalf("third record of generation %d, want 1", fs[2].Ref)
	}
	if p, err := ns.Recv.Open(nil, hdrs[0], fs[0]); err != nil || string(p) != "zero" {
		t.Fatalf("record 0: %q %v", p, err)
	}
	if _, err := ns.Recv.Open(nil, hdrs[2], fs[2]); !errors.Is(err, ErrRecord) {
		t.Fatalf("record 2 with record 1 deleted: %v, want ErrRecord", err)
	}
	for i, want := range []string{"one", "two"} { // the failed attempt changed nothing
		if p, err := ns.Recv.Open(nil, hdrs[i+1], fs[i+1]); err != nil || string(p) != want {
			t.Fatalf("record %d after the refused one: %q %v", i+1, p, err)
		}
	}
}

func TestLargeWritesSplitIntoRecords(t *testing.T) {
	cs, ns, _ := handshake(t, Config{Key: key(1), Secret: secret}, Config{Key: key(100), Secret: secret})
	big := bytes.Repeat([]byte("x"), 2*MaxRecordPlaintext+5)
	hdrs, fs := records(t, cs.Send.Seal(nil, big))
	if len(fs) != 3 {
		t.Fatalf("%d records for %d bytes", len(fs), len(big))
	}
	var got []byte
	for i := range fs {
		var err error
		if got, err = ns.Recv.Open(got, hdrs[i], fs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, big) {
		t.Fatal("plaintext differs")
	}
}

func TestKeyFiles(t *testing.T) {
	k := key(9)
	got, err := ParsePrivateKey(MarshalPrivateKey(k))
	if err != nil || got != k {
		t.Fatalf("private key round trip: %v", err)
	}
	list := append([]byte("# nodes\n\n"), MarshalPublicKey(k.Public())...)
	list = append(list, k.Public().String()+"\n"...)
	keys, err := ParsePublicKeys(list)
	if err != nil || len(keys) != 2 || keys[0] != k.Public() || keys[1] != k.Public() {
		t.Fatalf("public keys %v %v", keys, err)
	}
	if _, err := ParsePublicKeys([]byte("not a key\n")); !errors.Is(err, ErrBadKey) {
		t.Fatalf("bad key line: %v", err)
	}
	if _, err := ParsePrivateKey(MarshalPublicKey(k.Public())); !errors.Is(err, ErrBadKey) {
		t.Fatalf("a public key file read as a private key: %v", err)
	}
	// A private key where public keys must be is refused without being
	// echoed; a list with no key pins nothing, so it is refused too.
	priv := MarshalPrivateKey(k)
	_, err = ParsePublicKeys(priv)
	if !errors.Is(err, ErrBadKey) || strings.Contains(err.Error(), strings.TrimSpace(strings.TrimPrefix(string(priv), privatePrefix))) {
		t.Fatalf("a private key read as public keys: %v", err)
	}
	empty := t.TempDir() + "/empty.pub"
	os.WriteFile(empty, []byte("# every key revoked\n"), 0o644)
	if _, err := ReadPublicKeysFile(empty); !errors.Is(err, ErrBadKey) {
		t.Fatalf("a list without keys: %v, want ErrBadKey", err)
	}
}

func TestWorldReadableKeyFileRefused(t *testing.T) {
	path := t.TempDir() + "/k"
	if err := os.WriteFile(path, MarshalPrivateKey(key(3)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivateKeyFile(path); !errors.Is(err, ErrKeyFileMode) {
		t.Fatalf("a world-readable key file: %v, want ErrKeyFileMode", err)
	}
	os.Chmod(path, 0o640)
	if k, err := ReadPrivateKeyFile(path); err != nil || k != key(3) {
		t.Fatalf("a group-readable key file: %v", err)
	}
}

// Sealing and opening a record allocate nothing once the buffers have
// grown: they run for every write and read of an encrypted connection.
func TestRecordsAllocateNothing(t *testing.T) {
	cs, ns, err := handshake(t, Config{Key: key(1), Secret: secret}, Config{Key: key(100), Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	var dec frame.Decoder
	var wire, plain []byte
	payload := []byte("a batch of frames")
	allocs := testing.AllocsPerRun(100, func() {
		wire = cs.Send.Seal(wire[:0], payload)
		f, n, err := dec.Decode(wire)
		if err != nil || n != len(wire) {
			t.Fatalf("decode: %v", err)
		}
		if plain, err = ns.Recv.Open(plain[:0], wire[:frame.HeaderSize], f); err != nil || string(plain) != string(payload) {
			t.Fatalf("open: %q %v", plain, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per record sealed and opened, want 0", allocs)
	}
}
