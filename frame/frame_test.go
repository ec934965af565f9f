package frame

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/klauspost/compress/s2"
)

func decodeAll(t *testing.T, d Decoder, b []byte) []Frame {
	t.Helper()
	var out []Frame
	for len(b) > 0 {
		f, n, err := d.Decode(b)
		if err != nil {
			t.Fatalf("decode after %d frames: %v", len(out), err)
		}
		out = append(out, f)
		b = b[n:]
	}
	return out
}

func TestRoundTripEveryType(t *testing.T) {
	for _, checksum := range []bool{false, true} {
		e := Encoder{Checksum: checksum}
		d := Decoder{Checksum: checksum}
		var b []byte
		b = e.AppendDoit(b, 7, Doit{TimeoutMillis: 9, Handler: []byte("h"), Nonce: []byte("n"), Args: []byte("a")})
		b = e.AppendReply(b, 7, []byte("r"))
		for _, typ := range []Type{TypeStreamInit, TypeStart, TypeCancel, TypePing, TypeHeartbeat} {
			b = e.AppendEmpty(b, typ, 7)
		}
		b = e.AppendStream(b, 7, []byte("row"))
		b = e.AppendAck(b, 7, 5)
		b = e.AppendLast(b, 7, []byte("last"))
		b = e.AppendExit(b, 7, Exit{Kind: ExitError, Reason: []byte("bad")})
		b = e.AppendKillAll(b, []uint64{7, 8})
		b = e.AppendError(b, 7, CodeMalformed, "m")
		fs := decodeAll(t, d, b)
		want := []Type{TypeDoit, TypeReply, TypeStreamInit, TypeStart, TypeCancel, TypePing, TypeHeartbeat,
			TypeStream, TypeAck, TypeLast, TypeExit, TypeKillAll, TypeError}
		if len(fs) != len(want) {
			t.Fatalf("checksum=%t: decoded %d frames, want %d", checksum, len(fs), len(want))
		}
		for i, f := range fs {
			if f.Type != want[i] || (f.Type != TypeKillAll && f.Ref != 7) {
				t.Errorf("frame %d: %s ref %d, want %s ref 7", i, f.Type, f.Ref, want[i])
			}
			if (f.Flags&FlagChecksum != 0) != checksum {
				t.Errorf("frame %d: flags %v, checksum=%t", i, f.Flags, checksum)
			}
		}
		dt, _ := ParseDoit(fs[0].Payload, 0)
		if dt.TimeoutMillis != 9 || string(dt.Handler) != "h" || string(dt.Nonce) != "n" || string(dt.Args) != "a" {
			t.Errorf("DOIT parsed as %+v", dt)
		}
		if n, err := ParseAck(fs[8].Payload); n != 5 || err != nil {
			t.Errorf("ACK parsed as %d, %v", n, err)
		}
		x, _ := ParseExit(fs[10].Payload)
		if x.Kind != ExitError || string(x.Reason) != "bad" || len(x.Stack) != 0 {
			t.Errorf("EXIT parsed as %+v", x)
		}
		l, _ := ParseKillAll(fs[11].Payload)
		if l.Len() != 2 || l.At(0) != 7 || l.At(1) != 8 {
			t.Errorf("KILL_ALL parsed as %d refs", l.Len())
		}
		c, msg, _ := ParseError(fs[12].Payload)
		if c != CodeMalformed || string(msg) != "m" {
			t.Errorf("ERROR parsed as %v %q", c, msg)
		}
	}
}

func TestDecodeIncompleteAtEveryCut(t *testing.T) {
	e := Encoder{Checksum: true}
	b := e.AppendStream(nil, 1, []byte("hello world"))
	d := Decoder{Checksum: true}
	for i := 0; i < len(b); i++ {
		if _, _, err := d.Decode(b[:i]); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("decode of %d/%d bytes: %v, want ErrIncomplete", i, len(b), err)
		}
	}
	if _, n, err := d.Decode(b); err != nil || n != len(b) {
		t.Fatalf("whole frame: n=%d err=%v", n, err)
	}
}

// DecodeTo fills the caller's Frame on success and leaves it alone on any
// error, so a loop can keep one Frame across reads.
func TestDecodeToLeavesTheFrameAloneOnError(t *testing.T) {
	e := Encoder{Checksum: true}
	b := e.AppendStream(nil, 7, []byte("row"))
	d := Decoder{Checksum: true}
	was := Frame{Type: TypeAck, Ref: 99, Payload: []byte("kept")}
	bad := append([]byte(nil), b...)
	bad[len(bad)-1] ^= 1 // checksum
	for name, in := range map[string][]byte{"incomplete": b[:len(b)-1], "bad checksum": bad, "short header": b[:3]} {
		f := was
		if n, err := d.DecodeTo(&f, in); err == nil || n != 0 {
			t.Fatalf("%s: n=%d err=%v, want an error", name, n, err)
		}
		if f.Type != was.Type || f.Ref != was.Ref || string(f.Payload) != "kept" {
			t.Fatalf("%s: frame changed to %+v", name, f)
		}
	}
	f := was
	n, err := d.DecodeTo(&f, b)
	if err != nil || n != len(b) || f.Type != TypeStream || f.Flags != FlagChecksum || f.Ref != 7 || string(f.Payload) != "row" {
		t.Fatalf("whole frame: n=%d err=%v frame %+v", n, err, f)
	}
}

func TestDecodePayloadAliasesInput(t *testing.T) {
	b := (&Encoder{}).AppendStream(nil, 1, []byte("abc"))
	f, _, _ := (&Decoder{}).Decode(b)
	b[HeaderSize] = 'X'
	if string(f.Payload) != "Xbc" {
		t.Fatalf("payload %q does not alias the input buffer", f.Payload)
	}
	if cap(f.Payload) != len(f.Payload) {
		t.Fatalf("payload capacity %d lets appends clobber the next frame", cap(f.Payload))
	}
}

func TestOversizeLengthRejectedFromHeader(t *testing.T) {
	d := Decoder{MaxPayload: 1024}
	b := (&Encoder{}).AppendStream(nil, 1, make([]byte, 1025))
	_, _, err := d.Decode(b[:HeaderSize]) // no payload buffered yet
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge from the header alone", err)
	}
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Code != CodeTooLarge {
		t.Fatalf("err %v is not a *ProtocolError with CodeTooLarge", err)
	}
	ok := (&Encoder{}).AppendStream(nil, 1, make([]byte, 1024))
	if _, _, err := d.Decode(ok); err != nil {
		t.Fatalf("payload of exactly MaxPayload: %v", err)
	}
}

func TestPayloadParsersRejectMalformed(t *testing.T) {
	cases := []struct {
		name  string
		parse func() error
	}{
		{"doit empty", func() error { _, err := ParseDoit(nil, 0); return err }},
		{"doit zero handler", func() error { _, err := ParseDoit([]byte{0, 0, 0, 0, 0, 0, 0}, 0); return err }},
		{"doit handler past end", func() error { _, err := ParseDoit([]byte{0, 0, 0, 0, 9, 'a'}, 0); return err }},
		{"doit nonce past end", func() error { _, err := ParseDoit([]byte{0, 0, 0, 0, 1, 'a', 0, 5, 'x'}, 0); return err }},
		{"doit range missing", func() error { _, err := ParseDoit([]byte{0, 0, 0, 0, 1, 'a', 0, 0, 0, 0, 0}, FeatureRange); return err }},
		{"doit range lo above hi", func() error {
			_, err := ParseDoit([]byte{0, 0, 0, 0, 1, 'a', 0, 0, 0, 0, 0, 2, 0, 0, 0, 1}, FeatureRange)
			return err
		}},
		{"doit trace_len missing", func() error { _, err := ParseDoit([]byte{0, 0, 0, 0, 1, 'a', 0, 0}, FeatureTraceContext); return err }},
		{"doit trace_len 5", func() error {
			_, err := ParseDoit([]byte{0, 0, 0, 0, 1, 'a', 0, 0, 5, 1, 2, 3, 4, 5}, FeatureTraceContext)
			return err
		}},
		{"doit trace past end", func() error {
			_, err := ParseDoit([]byte{0, 0, 0, 0, 1, 'a', 0, 0, 26, 0, 1}, FeatureTraceContext)
			return err
		}},
		{"ack short", func() error { _, err := ParseAck([]byte{0, 1}); return err }},
		{"ack zero", func() error { _, err := ParseAck([]byte{0, 0, 0, 0}); return err }},
		{"kill_all ragged", func() error { _, err := ParseKillAll(make([]byte, 12)); return err }},
		{"exit short", func() error { _, err := ParseExit([]byte{1, 0}); return err }},
		{"exit reason past end", func() error { _, err := ParseExit([]byte{1, 0, 9, 'x'}); return err }},
		{"error short", func() error { _, _, err := ParseError([]byte{1}); return err }},
		{"empty type with payload", func() error { return CheckEmpty([]byte{1}) }},
		{"hello bad magic", func() error { _, err := ParseHello([]byte("HTTP/1.1 GET /")); return err }},
		{"welcome short", func() error { _, err := ParseWelcome([]byte{0, 1}); return err }},
		{"auth short", func() error { _, err := ParseAuth([]byte{1, 2, 3}); return err }},
	}
	for _, c := range cases {
		err := c.parse()
		var pe *ProtocolError
		if !errors.As(err, &pe) {
			t.Errorf("%s: err = %v, want a *ProtocolError", c.name, err)
		}
	}
}

func TestCompressionOnlyAboveThreshold(t *testing.T) {
	e := Encoder{Compress: true, CompressThreshold: 100}
	d := Decoder{Compression: true}
	small := bytes.Repeat([]byte("a"), 100)
	large := bytes.Repeat([]byte("a"), 101)
	f, _, _ := d.Decode(e.AppendStream(nil, 1, small))
	if f.Flags&FlagCompressed != 0 {
		t.Fatalf("payload of exactly the threshold was compressed")
	}
	f, _, err := d.Decode(e.AppendStream(nil, 1, large))
	if err != nil || f.Flags&FlagCompressed == 0 {
		t.Fatalf("payload above the threshold: flags %v err %v, want compressed", f.Flags, err)
	}
	p, _, err := Payload(f, nil, 0)
	if err != nil || !bytes.Equal(p, large) {
		t.Fatalf("decompressed %d bytes, err %v", len(p), err)
	}
	// Incompressible data stays raw even above the threshold.
	noise := make([]byte, 200)
	for i := range noise {
		noise[i] = byte(i*7919 + i*i*31)
	}
	f, _, _ = d.Decode(e.AppendStream(nil, 1, noise))
	if f.Flags&FlagCompressed != 0 && len(f.Payload) >= len(noise) {
		t.Fatalf("compression made the payload larger")
	}
}

func TestDecompressionBombRefused(t *testing.T) {
	// 1 MiB of zeros compresses to a few hundred bytes; the receiver's max is 64 KiB.
	bomb := s2.Encode(nil, make([]byte, 1<<20))
	f := Frame{Type: TypeStream, Flags: FlagCompressed, Ref: 1, Payload: bomb}
	buf := make([]byte, 0, 16)
	_, got, err := Payload(f, buf, 64<<10)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if cap(got) != 16 {
		t.Fatalf("buffer grown to %d before the size check", cap(got))
	}
	f.Payload = []byte{0xff, 0xff, 0xff}
	if _, _, err := Payload(f, nil, 0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage S2 header: %v, want ErrMalformed", err)
	}
}

func TestHandshakeMACs(t *testing.T) {
	secret := []byte("s3cret")
	h := AppendHello(nil, Hello{Version: Version, Features: FeatureChecksum, MaxPayload: 1 << 20, Nonce: fixedNonce(1), Name: []byte("c")})
	w := Welcome{Version: Version, Features: Negotiate(FeatureChecksum|1<<9, FeatureChecksum|FeatureCompression), Nonce: fixedNonce(2), Name: []byte("n")}
	if w.Features != FeatureChecksum {
		t.Fatalf("negotiated %#x, want checksum only", w.Features)
	}
	w.MAC = NodeMAC(secret, h[HeaderSize:], WelcomeBody(w))
	wb := AppendWelcome(nil, w)
	f, _, err := (&Decoder{}).Decode(wb)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseWelcome(f.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if !VerifyMAC(got.MAC, NodeMAC(secret, h[HeaderSize:], WelcomeBody(got))) {
		t.Fatal("node MAC does not verify with the right secret")
	}
	if VerifyMAC(got.MAC, NodeMAC([]byte("wrong"), h[HeaderSize:], WelcomeBody(got))) {
		t.Fatal("node MAC verifies with a wrong secret")
	}
	if CoordMAC(secret, h[HeaderSize:], f.Payload) == CoordMAC([]byte("wrong"), h[HeaderSize:], f.Payload) {
		t.Fatal("coordinator MAC does not depend on the secret")
	}
}

func TestDoitValidate(t *testing.T) {
	if err := (Doit{}).Validate(); err == nil {
		t.Error("empty handler accepted")
	}
	if err := (Doit{Handler: make([]byte, 256)}).Validate(); err == nil {
		t.Error("256-byte handler accepted")
	}
	if err := (Doit{Handler: []byte("x"), Nonce: make([]byte, MaxNonce+1)}).Validate(); err == nil {
		t.Error("oversize nonce accepted")
	}
	if err := (Doit{Handler: []byte("x")}).Validate(); err != nil {
		t.Errorf("valid DOIT refused: %v", err)
	}
}

func TestExitFitKeepsTheReasonWholeRunes(t *testing.T) {
	x := Exit{Kind: ExitPanic, Reason: []byte(strings.Repeat("é", 40)), Stack: []byte(strings.Repeat("s", 500))}
	for _, max := range []int{MinMaxPayload, 100, 1024} {
		f := x.Fit(max)
		if n := 3 + len(f.Reason) + len(f.Stack); n > max {
			t.Fatalf("Fit(%d): %d bytes", max, n)
		}
		if !utf8.Valid(f.Reason) {
			t.Fatalf("Fit(%d) cut a rune: %q", max, f.Reason)
		}
	}
	if f := x.Fit(1024); len(f.Reason) != 80 || len(f.Stack) != 500 {
		t.Fatalf("Fit(1024) cut a payload that fits: %d+%d", len(f.Reason), len(f.Stack))
	}
	if f := x.Fit(MinMaxPayload); len(f.Reason) != 60 || len(f.Stack) > 1 {
		t.Fatalf("Fit(64): reason %d bytes, stack %d; the stack goes first", len(f.Reason), len(f.Stack))
	}
	if m := FitMessage("αβγδ", 2+5); m != "αβ" {
		t.Fatalf("FitMessage = %q", m)
	}
}

func TestNeedSaysWhenAFrameIsWhole(t *testing.T) {
	var d Decoder
	f := (&Encoder{Checksum: true}).AppendStream(nil, 1, make([]byte, 1000))
	if n := d.Need(f[:3]); n != HeaderSize {
		t.Fatalf("Need(partial header) = %d", n)
	}
	if n := d.Need(f[:HeaderSize]); n != len(f) {
		t.Fatalf("Need(header) = %d, want %d", n, len(f))
	}
	huge := []byte{0xff, 0xff, 0xff, 0xff, byte(TypeStream), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	if n := d.Need(huge); n != len(huge) {
		t.Fatalf("Need(oversize header) = %d: Decode must see it at once", n)
	}
}

func TestParseVersions(t *testing.T) {
	v, ok := ParseVersions([]byte(VersionsMessage() + ": protocol version 9 not supported"))
	if !ok || len(v) != 1 || v[0] != Version {
		t.Fatalf("ParseVersions = %v, %v", v, ok)
	}
	if _, ok := ParseVersions([]byte("no versions here")); ok {
		t.Fatal("parsed a message without versions")
	}
}

// DoitPayloadLen agrees with the encoder for every mix of optional fields.
func TestDoitPayloadLen(t *testing.T) {
	tc := TraceParent{TraceID: [16]byte{1}, SpanID: [8]byte{2}, Flags: 1}
	for _, features := range []Feature{0, FeatureRange, FeatureTraceContext, FeatureRange | FeatureTraceContext} {
		for _, trace := range []TraceParent{{}, tc} {
			d := Doit{TimeoutMillis: 5, Handler: []byte("rows"), Nonce: []byte("n1"), RangeLo: 1, RangeHi: 9, Trace: trace, Args: []byte("10:100")}
			if got, want := DoitPayloadLen(d, features), len(appendDoitPayload(nil, &d, features)); got != want {
				t.Errorf("features %v, trace %v: DoitPayloadLen %d, encoded %d", features, trace.Valid(), got, want)
			}
		}
	}
}

// Doit.Parse overwrites every field: a Doit reused for the next DOIT
// keeps nothing of the last one, whose optional fields may be absent now.
func TestDoitParseReused(t *testing.T) {
	full := Doit{TimeoutMillis: 5, Handler: []byte("rows"), Nonce: []byte("n1"), RangeLo: 1, RangeHi: 9,
		Trace: TraceParent{TraceID: [16]byte{1}, SpanID: [8]byte{2}, Flags: 1}, Args: []byte("10:100")}
	features := FeatureRange | FeatureTraceContext
	var d Doit
	if err := d.Parse(appendDoitPayload(nil, &full, features), features); err != nil || !reflect.DeepEqual(d, full) {
		t.Fatalf("parsed %+v, %v; want %+v", d, err, full)
	}
	bare := Doit{Handler: []byte("echo"), Nonce: []byte{}, Args: []byte{}}
	if err := d.Parse(appendDoitPayload(nil, &bare, features), features); err != nil || d.Trace.Valid() || d.RangeHi != 0 || d.TimeoutMillis != 0 || string(d.Handler) != "echo" {
		t.Fatalf("second parse %+v, %v: fields of the first DOIT left behind", d, err)
	}
	if got, err := ParseDoit(appendDoitPayload(nil, &full, features), features); err != nil || !reflect.DeepEqual(got, full) {
		t.Fatalf("ParseDoit %+v, %v", got, err)
	}
}

// A connection's compressed frames may decode, all together, to 64 times
// the compressed bytes plus 32 MiB: one bomb of any ratio is taken, the
// ones after it are refused before they are decompressed.
func TestExpansionBudget(t *testing.T) {
	bomb := Frame{Type: TypeStream, Ref: 1, Flags: FlagCompressed, Payload: s2.Encode(nil, make([]byte, 16<<20))}
	var b ExpansionBudget
	for i := range 2 { // 32 MiB of allowance, and a little credit
		if p, _, err := b.Payload(bomb, nil, 64<<20); err != nil || len(p) != 16<<20 {
			t.Fatalf("frame %d: %d bytes, %v; want it decoded", i, len(p), err)
		}
	}
	if _, _, err := b.Payload(bomb, nil, 64<<20); !errors.Is(err, ErrMalformed) {
		t.Fatalf("third 16 MiB bomb: %v, want ErrMalformed", err)
	}
	raw := Frame{Type: TypeStream, Ref: 1, Payload: make([]byte, 100)}
	if _, _, err := b.Payload(raw, nil, 0); err != nil {
		t.Fatalf("uncompressed frame after the budget ran out: %v", err)
	}
	// A declared size over the maximum is TOO_LARGE, before the budget.
	var fresh ExpansionBudget
	if _, _, err := fresh.Payload(bomb, nil, 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("16 MiB bomb, 1 MiB maximum: %v, want ErrTooLarge", err)
	}
	if _, _, err := b.Payload(bomb, nil, 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("16 MiB bomb, 1 MiB maximum, budget spent: %v, want ErrTooLarge", err)
	}
}
