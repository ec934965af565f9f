package secure

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/internal/goldendoc"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.txt")

const goldenPath = "testdata/golden.txt"

// fixed is 32 bytes counting up from b: the keys and ephemerals of the
// vectors.
func fixed(b byte) []byte {
	out := make([]byte, 32)
	for i := range out {
		out[i] = b + byte(i)
	}
	return out
}

// goldenTranscript runs a whole encrypted connection start with fixed
// keys, ephemerals and nonces, and returns its named values and messages.
func goldenTranscript(t *testing.T) [][2]string {
	t.Helper()
	var out [][2]string
	add := func(name string, b []byte) { out = append(out, [2]string{name, hex.EncodeToString(b)}) }
	secret := []byte("test-secret")
	ck, nk := PrivateKey(fixed(0x01)), PrivateKey(fixed(0x41))
	psk := PSK(secret)
	add("cluster secret (ASCII \"test-secret\")", secret)
	add("psk = HKDF-SHA256(secret, salt empty, info \"rexi noise psk v1\", 32)", psk[:])
	add("coordinator static private key", ck[:])
	cpub := ck.Public()
	add("coordinator static public key", cpub[:])
	add("node static private key", nk[:])
	npub := nk.Public()
	add("node static public key", npub[:])
	add("coordinator ephemeral private key", fixed(0x81))
	add("node ephemeral private key", fixed(0xc1))
	ci, err := NewHandshake(Config{Key: ck, Secret: secret, Random: bytes.NewReader(fixed(0x81))}, true)
	if err != nil {
		t.Fatal(err)
	}
	nr, err := NewHandshake(Config{Key: nk, Secret: secret, Random: bytes.NewReader(fixed(0xc1))}, false)
	if err != nil {
		t.Fatal(err)
	}
	m1, _, _ := ci.Write(nil, nil)
	add("message 1, coordinator → node: NOISE frame (e, and the tag of an empty payload)", NoiseFrame(nil, m1))
	if _, _, err := nr.Read(nil, m1); err != nil {
		t.Fatal(err)
	}
	m2, _, _ := nr.Write(nil, nil)
	add("message 2, node → coordinator: NOISE frame (e, encrypted s, tag of an empty payload)", NoiseFrame(nil, m2))
	if _, _, err := ci.Read(nil, m2); err != nil {
		t.Fatal(err)
	}
	h := frame.Hello{Version: 1, Features: frame.FeatureCompression, MaxPayload: frame.DefaultMaxPayload, HeartbeatMs: 1000,
		Nonce: [frame.NonceSize]byte(fixed(0x10)), Name: []byte("coord-a")}
	hello := frame.AppendHello(nil, h)[frame.HeaderSize:]
	add("HELLO payload carried by message 3", hello)
	m3, cs, _ := ci.Write(nil, hello)
	add("message 3, coordinator → node: NOISE frame (encrypted s, encrypted HELLO payload)", NoiseFrame(nil, m3))
	if _, ns, err := nr.Read(nil, m3); err != nil || ns == nil {
		t.Fatal(err)
	} else {
		w := frame.Welcome{Version: 1, Features: frame.FeatureCompression, MaxPayload: frame.DefaultMaxPayload, Window: 5, LivenessMs: 4000,
			Nonce: [frame.NonceSize]byte(fixed(0x80)), Name: []byte("node1")}
		welcome := frame.AppendWelcome(nil, w)
		add("WELCOME frame (MAC all zero) sealed in the node's first record", welcome)
		add("node's first record: generation 0, counter 0", ns.Send.Seal(nil, welcome))
		doit := (&frame.Encoder{}).AppendDoit(nil, 1, frame.Doit{TimeoutMillis: 30000, Handler: []byte("rows"), Nonce: []byte("req-7"), Args: []byte(`{"n":10}`)})
		add("DOIT frame sealed in the coordinator's first record", doit)
		add("coordinator's first record: generation 0, counter 0", cs.Send.Seal(nil, doit))
		add("coordinator's second record: the same DOIT, counter 1", cs.Send.Seal(nil, doit))
		cs.Send.RekeyRecords = 2
		add("coordinator's third record after a rekey at 2 records: generation 1, counter 2", cs.Send.Seal(nil, doit))
	}
	return out
}

func render(entries [][2]string) string {
	var b strings.Builder
	b.WriteString("# Golden vectors for rexi's encrypted connections (PROTOCOL.md section 8):\n")
	b.WriteString("# Noise_XXpsk3_25519_AESGCM_SHA256, prologue \"rexi/1\", with fixed keys and\n")
	b.WriteString("# ephemerals. Each entry: a description, then its bytes in hex.\n")
	b.WriteString("# Regenerate with: go test ./secure -run TestGolden -update\n")
	for _, e := range entries {
		fmt.Fprintf(&b, "\n%s\n%s\n", e[0], e[1])
	}
	return b.String()
}

func TestGolden(t *testing.T) {
	got := render(goldenTranscript(t))
	if *update {
		if err := os.WriteFile(goldenPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("the transcript differs from %s (rerun with -update if the change is meant)\n%s", goldenPath, got)
	}
}

// The file's messages, read back by a fresh node, open: the vectors are a
// transcript a client in another language can replay.
func TestGoldenTranscriptReplays(t *testing.T) {
	b, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	msgs := map[string][]byte{}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i++ {
		if strings.HasPrefix(lines[i], "message ") || strings.HasPrefix(lines[i], "coordinator's first record") {
			v, err := hex.DecodeString(lines[i+1])
			if err != nil {
				t.Fatalf("%s: %v", lines[i], err)
			}
			msgs[lines[i][:9]] = v
		}
	}
	nr, _ := NewHandshake(Config{Key: PrivateKey(fixed(0x41)), Secret: []byte("test-secret"), Random: bytes.NewReader(fixed(0xc1))}, false)
	strip := func(f []byte) []byte { return f[frame.HeaderSize:] }
	if _, _, err := nr.Read(nil, strip(msgs["message 1"])); err != nil {
		t.Fatal(err)
	}
	if m2, _, _ := nr.Write(nil, nil); !bytes.Equal(NoiseFrame(nil, m2), msgs["message 2"]) {
		t.Fatal("message 2 differs")
	}
	_, ns, err := nr.Read(nil, strip(msgs["message 3"]))
	if err != nil {
		t.Fatal(err)
	}
	rec := msgs["coordinat"]
	f, _, err := (&frame.Decoder{MaxPayload: MaxRecordPayload}).Decode(rec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ns.Recv.Open(nil, rec[:frame.HeaderSize], f)
	if err != nil || !bytes.Contains(p, []byte("rows")) {
		t.Fatalf("the coordinator's first record: %q %v", p, err)
	}
}

// PROTOCOL.md carries the vectors too (appendix B), for a client written
// from it alone: the copy there must be this file, byte for byte.
func TestGoldenInProtocol(t *testing.T) { goldendoc.Check(t, goldenPath) }
