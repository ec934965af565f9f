package frame

import (
	"bytes"
	"errors"
	"testing"
)

const fuzzMax = 1 << 16

// FuzzDecode feeds arbitrary bytes to the decoder. Byte 0 picks the
// receiver's settings (bits 0-1) and the DOIT fields in force (bits 2-3).
// Properties: no panic; every error is ErrIncomplete or a
// *ProtocolError; a decoded frame re-encodes to exactly its bytes; typed
// payloads that parse (DOIT, EXIT, ACK, KILL_ALL, HELLO, WELCOME, AUTH,
// ERROR and a BAD_VERSION's version list) re-encode to the same payload;
// decompression never yields more than the maximum.
func FuzzDecode(f *testing.F) {
	for _, v := range vectors() {
		f.Add(append([]byte{settingsByte(v.dec) | byte(v.doit)}, v.build()...))
	}
	e := Encoder{Checksum: true}
	two := e.AppendStream(nil, 1, []byte("a"))
	two = e.AppendAck(two, 1, 1)
	f.Add(append([]byte{1}, two...))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		d := Decoder{MaxPayload: fuzzMax, Checksum: in[0]&1 != 0, Compression: in[0]&2 != 0}
		buf := in[1:]
		for len(buf) > 0 {
			fr, n, err := d.Decode(buf)
			if err != nil {
				var pe *ProtocolError
				if !errors.Is(err, ErrIncomplete) && !errors.As(err, &pe) {
					t.Fatalf("error %v is neither ErrIncomplete nor *ProtocolError", err)
				}
				return
			}
			if re := AppendRaw(nil, fr); !bytes.Equal(re, buf[:n]) {
				t.Fatalf("re-encode differs:\n in %x\nout %x", buf[:n], re)
			}
			checkPayload(t, fr, Feature(in[0])&(FeatureRange|FeatureTraceContext))
			buf = buf[n:]
		}
	})
}

func settingsByte(d Decoder) byte {
	var b byte
	if d.Checksum {
		b |= 1
	}
	if d.Compression {
		b |= 2
	}
	return b
}

func checkPayload(t *testing.T, fr Frame, doit Feature) {
	p, scratch, err := Payload(fr, nil, fuzzMax)
	if cap(scratch) > fuzzMax {
		t.Fatalf("decompression buffer grew to %d, max %d", cap(scratch), fuzzMax)
	}
	if err != nil {
		return
	}
	var e Encoder
	var re []byte
	switch fr.Type {
	case TypeDoit:
		d, err := ParseDoit(p, doit)
		if err != nil {
			return
		}
		e.Doit = doit
		re = e.AppendDoit(nil, fr.Ref, d)
		if doit&FeatureTraceContext != 0 && !d.Trace.Valid() {
			// A dropped context (another version, zero ids) re-encodes
			// as none: compare meanings instead of bytes.
			d2, err := ParseDoit(re[HeaderSize:], doit)
			if err != nil || d2.TimeoutMillis != d.TimeoutMillis || !bytes.Equal(d2.Handler, d.Handler) ||
				!bytes.Equal(d2.Nonce, d.Nonce) || d2.RangeLo != d.RangeLo || d2.RangeHi != d.RangeHi ||
				d2.Trace != d.Trace || !bytes.Equal(d2.Args, d.Args) {
				t.Fatalf("DOIT %+v re-parses as %+v (%v)", d, d2, err)
			}
			return
		}
	case TypeExit:
		x, err := ParseExit(p)
		if err != nil {
			return
		}
		re = e.AppendExit(nil, fr.Ref, x)
	case TypeAck:
		n, err := ParseAck(p)
		if err != nil {
			return
		}
		re = e.AppendAck(nil, fr.Ref, n)
	case TypeKillAll:
		l, err := ParseKillAll(p)
		if err != nil {
			return
		}
		refs := make([]uint64, l.Len())
		for i := range refs {
			refs[i] = l.At(i)
		}
		re = e.AppendKillAll(nil, refs)
		re = re[:HeaderSize+len(p)]
	case TypeHello:
		h, err := ParseHello(p)
		if err != nil {
			return
		}
		re = AppendHello(nil, h)
	case TypeWelcome:
		w, err := ParseWelcome(p)
		if err != nil {
			return
		}
		re = AppendWelcome(nil, w)
	case TypeAuth:
		mac, err := ParseAuth(p)
		if err != nil {
			return
		}
		re = AppendAuth(nil, mac)
	case TypeError:
		code, msg, err := ParseError(p)
		if err != nil {
			return
		}
		// A BAD_VERSION's message lists versions a coordinator reads back.
		if vs, ok := ParseVersions(msg); ok && len(vs) == 0 {
			t.Fatalf("versions in %q parse as none", msg)
		}
		re = e.AppendError(nil, fr.Ref, code, string(msg))
	default:
		return
	}
	if !bytes.Equal(re[HeaderSize:], p) {
		t.Fatalf("%s payload re-encodes differently:\n in %x\nout %x", fr.Type, p, re[HeaderSize:])
	}
}
