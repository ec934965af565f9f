package frame

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/rexi-go/rexi/internal/goldendoc"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.txt from the vectors in golden_test.go")

const goldenPath = "testdata/golden.txt"

type vector struct {
	name  string
	dec   Decoder // settings the receiver negotiated
	doit  Feature // DOIT fields in force (FeatureRange, FeatureTraceContext)
	build func() []byte
	err   error // for bad vectors: the sentinel Decode returns
}

func fixedNonce(b byte) (n [NonceSize]byte) {
	for i := range n {
		n[i] = b + byte(i)
	}
	return n
}

// The vectors: every frame type, with and without checksum, one compressed
// payload, and the malformed inputs a receiver must refuse.
func vectors() []vector {
	plain := Encoder{}
	sum := Encoder{Checksum: true}
	comp := Encoder{Compress: true}
	var big []byte // 8 KiB of JSON-like rows: S2 halves it
	for i := 0; len(big) < 8192; i++ {
		big = fmt.Appendf(big, "{\"id\":%d,\"key\":\"k%x\",\"value\":%d}\n", i, i*2654435761%1000003, i*i%9973)
	}
	big = big[:8192]
	secret := []byte("test-secret")
	hello := Hello{Version: 1, Features: FeatureChecksum | FeatureCompression, MaxPayload: DefaultMaxPayload, HeartbeatMs: 1000, Nonce: fixedNonce(0x10), Name: []byte("coord-a")}
	helloFrame := AppendHello(nil, hello)
	welcome := Welcome{Version: 1, Features: FeatureChecksum, MaxPayload: DefaultMaxPayload, Window: 5, LivenessMs: 4000, Nonce: fixedNonce(0x80), Name: []byte("node1")}
	welcome.MAC = NodeMAC(secret, helloFrame[HeaderSize:], WelcomeBody(welcome))
	welcomeFrame := AppendWelcome(nil, welcome)
	auth := CoordMAC(secret, helloFrame[HeaderSize:], welcomeFrame[HeaderSize:])
	fields := Encoder{Doit: FeatureRange | FeatureTraceContext}
	traced := Doit{TimeoutMillis: 30000, Handler: []byte("rows"), Nonce: []byte("req-8"), RangeLo: 0x40000000, RangeHi: 0x7fffffff,
		Trace: TraceParent{ // the W3C specification's example traceparent
			TraceID: [16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
			SpanID:  [8]byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}, Flags: 1},
		Args: []byte(`{"n":10}`)}
	raw := func(s string) func() []byte {
		return func() []byte { b, _ := hex.DecodeString(s); return b }
	}
	return []vector{
		{name: "hello", build: func() []byte { return helloFrame }},
		{name: "welcome (secret \"test-secret\")", build: func() []byte { return welcomeFrame }},
		{name: "auth (secret \"test-secret\")", build: func() []byte { return AppendAuth(nil, auth) }},
		{name: "doit", build: func() []byte {
			return plain.AppendDoit(nil, 1, Doit{TimeoutMillis: 30000, Handler: []byte("rows"), Nonce: []byte("req-7"), Args: []byte(`{"n":10}`)})
		}},
		{name: "doit no deadline, empty nonce and args", build: func() []byte {
			return plain.AppendDoit(nil, 0xfedcba9876543210, Doit{Handler: []byte("echo")})
		}},
		{name: "doit with range and trace context", doit: fields.Doit, build: func() []byte { return fields.AppendDoit(nil, 1, traced) }},
		{name: "doit with range, no trace context", doit: fields.Doit, build: func() []byte {
			d := traced
			d.Trace = TraceParent{}
			return fields.AppendDoit(nil, 2, d)
		}},
		{name: "doit with range only (trace context not negotiated)", doit: FeatureRange, build: func() []byte {
			return (&Encoder{Doit: FeatureRange}).AppendDoit(nil, 3, traced)
		}},
		{name: "doit whose trace_len is 5 (payload malformed)", doit: fields.Doit, build: raw("0000001910000000" + "0000000000000004" +
			"00000000" + "04726f7773" + "0000" + "00000000ffffffff" + "050102030405")},
		{name: "reply", build: func() []byte { return plain.AppendReply(nil, 1, []byte("pong")) }},
		{name: "stream_init", build: func() []byte { return plain.AppendEmpty(nil, TypeStreamInit, 2) }},
		{name: "start", build: func() []byte { return plain.AppendEmpty(nil, TypeStart, 2) }},
		{name: "cancel", build: func() []byte { return plain.AppendEmpty(nil, TypeCancel, 3) }},
		{name: "stream", build: func() []byte { return plain.AppendStream(nil, 2, []byte("row-0")) }},
		{name: "ack", build: func() []byte { return plain.AppendAck(nil, 2, 3) }},
		{name: "last", build: func() []byte { return plain.AppendLast(nil, 2, []byte("done")) }},
		{name: "ping", build: func() []byte { return plain.AppendEmpty(nil, TypePing, 2) }},
		{name: "exit panic", build: func() []byte {
			return plain.AppendExit(nil, 4, Exit{Kind: ExitPanic, Reason: []byte("boom"), Stack: []byte("goroutine 7 [running]:")})
		}},
		{name: "exit overloaded", build: func() []byte {
			return plain.AppendExit(nil, 5, Exit{Kind: ExitOverloaded, Reason: []byte("node has 10000 live jobs, its limit")})
		}},
		{name: "exit panic cut to a max_payload of 64", build: func() []byte {
			x := Exit{Kind: ExitPanic, Reason: []byte("panic: index out of range [7] with length 3 in handler rows"), Stack: []byte("goroutine 7 [running]:\nmain.rows(...)")}
			return plain.AppendExit(nil, 6, x.Fit(MinMaxPayload))
		}},
		{name: "kill_all", build: func() []byte { return plain.AppendKillAll(nil, []uint64{1, 2, 0x1122334455667788}) }},
		{name: "heartbeat", build: func() []byte { return plain.AppendEmpty(nil, TypeHeartbeat, 42) }},
		{name: "error", build: func() []byte { return plain.AppendError(nil, 0, CodeAuthFailed, "authentication failed") }},
		{name: "error bad_version, listing the versions spoken", build: func() []byte {
			return plain.AppendError(nil, 0, CodeBadVersion, VersionsMessage()+": protocol version 2 not supported")
		}},
		{name: "error overloaded (handshake limit)", build: func() []byte {
			return plain.AppendError(nil, 0, CodeOverloaded, "256 connections are already in the handshake; retry later")
		}},
		{name: "error output_overflow", build: func() []byte {
			return plain.AppendError(nil, 0, CodeOutputOverflow, "more than 16777216 bytes of output queued")
		}},
		{name: "stream with checksum", dec: Decoder{Checksum: true}, build: func() []byte { return sum.AppendStream(nil, 2, []byte("row-0")) }},
		{name: "ack with checksum", dec: Decoder{Checksum: true}, build: func() []byte { return sum.AppendAck(nil, 2, 5) }},
		{name: "stream compressed (8 KiB row)", dec: Decoder{Compression: true}, build: func() []byte { return comp.AppendStream(nil, 9, big) }},
		{name: "stream compressed 327 times (8 KiB of a repeated pattern; counts against the expansion budget)", dec: Decoder{Compression: true},
			build: raw("0000001915020000000000000000000980403c3031323334353637383961626364656611101900e41e")}, // 8 KiB of "0123456789abcdef" in 25 bytes
		{name: "bad: unknown type 0x7f", err: ErrUnknownType, build: raw("000000007f0000000000000000000001")},
		{name: "bad: length above 16 MiB", err: ErrTooLarge, build: raw("0100000115000000000000000000000001")},
		{name: "bad: reserved flag bit", err: ErrMalformed, build: raw("00000000150400000000000000000001")},
		{name: "bad: reserved bytes not zero", err: ErrMalformed, build: raw("00000000150000010000000000000001")},
		{name: "bad: checksum mismatch", dec: Decoder{Checksum: true}, err: ErrBadChecksum, build: func() []byte {
			b := sum.AppendStream(nil, 2, []byte("row-0"))
			b[len(b)-1] ^= 1
			return b
		}},
		{name: "bad: checksum missing when negotiated", dec: Decoder{Checksum: true}, err: ErrMalformed, build: func() []byte { return plain.AppendStream(nil, 2, []byte("row-0")) }},
		{name: "bad: compressed when not negotiated", err: ErrMalformed, build: raw("00000000150200000000000000000001")},
	}
}

func decoderSettings(v vector) string {
	s := fmt.Sprintf("checksum=%t compression=%t", v.dec.Checksum, v.dec.Compression)
	if v.doit&FeatureRange != 0 {
		s += " range=true"
	}
	if v.doit&FeatureTraceContext != 0 {
		s += " trace_context=true"
	}
	return s
}

func TestGolden(t *testing.T) {
	vs := vectors()
	if *update {
		writeGolden(t, vs)
	}
	f, err := os.Open(goldenPath)
	if err != nil {
		t.Fatalf("open %s: %v (run go test -run TestGolden -update)", goldenPath, err)
	}
	defer f.Close()
	entries := readGolden(t, f)
	if len(entries) != len(vs) {
		t.Fatalf("%s has %d vectors, golden_test.go defines %d (run with -update)", goldenPath, len(entries), len(vs))
	}
	for i, v := range vs {
		e := entries[i]
		t.Run(v.name, func(t *testing.T) {
			if e.name != v.name || e.settings != decoderSettings(v) {
				t.Fatalf("vector %d is %q [%s] in the file, %q [%s] in code", i, e.name, e.settings, v.name, decoderSettings(v))
			}
			// Encode direction: building the frame yields the file's bytes.
			if got := v.build(); !bytes.Equal(got, e.bytes) {
				t.Fatalf("encoded\n %x\nfile has\n %x", got, e.bytes)
			}
			// Decode direction: the file's bytes mean what the file says.
			fr, n, err := v.dec.Decode(e.bytes)
			if v.err != nil {
				if !errors.Is(err, v.err) {
					t.Fatalf("decode error = %v, want errors.Is %v", err, v.err)
				}
				if e.meaning != "error: "+v.err.Error() {
					t.Fatalf("file meaning %q, want %q", e.meaning, "error: "+v.err.Error())
				}
				return
			}
			if err != nil || n != len(e.bytes) {
				t.Fatalf("decode = (n=%d, %v), want (n=%d, nil)", n, err, len(e.bytes))
			}
			if got := describe(fr, v.doit); got != e.meaning {
				t.Fatalf("decoded meaning\n %s\nfile says\n %s", got, e.meaning)
			}
			if re := AppendRaw(nil, fr); !bytes.Equal(re, e.bytes) {
				t.Fatalf("re-encoding the decoded frame gave %x", re)
			}
		})
	}
}

type goldenEntry struct {
	name, settings, meaning string
	bytes                   []byte
}

func readGolden(t *testing.T, f *os.File) []goldenEntry {
	var out []goldenEntry
	var cur *goldenEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		key, val, ok := strings.Cut(line, ": ")
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case ok && key == "name":
			out = append(out, goldenEntry{name: val})
			cur = &out[len(out)-1]
		case ok && cur != nil && key == "receiver":
			cur.settings = val
		case ok && cur != nil && key == "hex":
			b, err := hex.DecodeString(val)
			if err != nil {
				t.Fatalf("%s: bad hex for %q: %v", goldenPath, cur.name, err)
			}
			cur.bytes = b
		case ok && cur != nil && key == "meaning":
			cur.meaning = val
		default:
			t.Fatalf("%s: unexpected line %q", goldenPath, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func writeGolden(t *testing.T, vs []vector) {
	var b bytes.Buffer
	b.WriteString(`# Golden vectors for the rexi wire protocol, version 1 (see PROTOCOL.md).
# Each entry: a name; the receiver's negotiated settings; the frame's bytes in
# hex; and what a conforming decoder must make of them. For "bad:" entries
# the meaning is the error a receiver must report (then send ERROR and close).
# "range=true" and "trace_context=true" in the receiver's settings: those
# features are in force, so DOIT payloads carry their fields (section 4).
# Strings are Go-quoted; refs and features are hex; nonce and mac are hex.
# The compressed entry's bytes come from klauspost/compress/s2: another S2
# encoder may produce different (equally valid) bytes, so test that entry in
# the decode direction.
# Regenerate with: go test ./frame -run TestGolden -update
`)
	for _, v := range vs {
		bs := v.build()
		meaning := ""
		if v.err != nil {
			meaning = "error: " + v.err.Error()
		} else {
			fr, _, err := v.dec.Decode(bs)
			if err != nil {
				t.Fatalf("vector %q does not decode: %v", v.name, err)
			}
			meaning = describe(fr, v.doit)
		}
		fmt.Fprintf(&b, "\nname: %s\nreceiver: %s\nhex: %x\nmeaning: %s\n", v.name, decoderSettings(v), bs, meaning)
	}
	if err := os.WriteFile(goldenPath, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// PROTOCOL.md carries the vectors too (appendix B), for a client written
// from it alone: the copy there must be this file, byte for byte.
func TestGoldenInProtocol(t *testing.T) { goldendoc.Check(t, goldenPath) }
