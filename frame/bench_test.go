package frame

import (
	"bytes"
	"testing"
)

func benchFrames() []struct {
	name  string
	enc   func(e *Encoder, dst []byte) []byte
	bytes int
} {
	row := bytes.Repeat([]byte("r"), 100)
	big := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	refs := make([]uint64, 192)
	for i := range refs {
		refs[i] = uint64(i + 1)
	}
	doit := Doit{TimeoutMillis: 30000, Handler: []byte("rows"), Nonce: []byte("req-12345678"), Args: []byte(`{"n":10,"s":100}`)}
	return []struct {
		name  string
		enc   func(e *Encoder, dst []byte) []byte
		bytes int
	}{
		{"DOIT", func(e *Encoder, dst []byte) []byte { return e.AppendDoit(dst, 1, doit) }, 0},
		{"STREAM-100B", func(e *Encoder, dst []byte) []byte { return e.AppendStream(dst, 1, row) }, 100},
		{"ACK", func(e *Encoder, dst []byte) []byte { return e.AppendAck(dst, 1, 1) }, 0},
		{"KILL_ALL-192", func(e *Encoder, dst []byte) []byte { return e.AppendKillAll(dst, refs) }, 192 * 8},
		{"STREAM-64KiB-S2", func(e *Encoder, dst []byte) []byte { return e.AppendStream(dst, 1, big) }, len(big)},
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, checksum := range []bool{false, true} {
		for _, bf := range benchFrames() {
			name := bf.name
			if checksum {
				name += "/checksum"
			}
			b.Run(name, func(b *testing.B) {
				e := Encoder{Checksum: checksum, Compress: true}
				buf := bf.enc(&e, nil)
				b.SetBytes(int64(max(len(buf), bf.bytes)))
				b.ReportAllocs()
				for b.Loop() {
					buf = bf.enc(&e, buf[:0])
				}
			})
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, checksum := range []bool{false, true} {
		for _, bf := range benchFrames() {
			name := bf.name
			if checksum {
				name += "/checksum"
			}
			b.Run(name, func(b *testing.B) {
				e := Encoder{Checksum: checksum, Compress: true}
				d := Decoder{Checksum: checksum, Compression: true}
				wire := bf.enc(&e, nil)
				var scratch []byte
				b.SetBytes(int64(max(len(wire), bf.bytes)))
				b.ReportAllocs()
				for b.Loop() {
					f, _, err := d.Decode(wire)
					if err != nil {
						b.Fatal(err)
					}
					var p []byte
					p, scratch, err = Payload(f, scratch, 0)
					if err != nil {
						b.Fatal(err)
					}
					parseTyped(b, f.Type, p)
				}
			})
		}
	}
}

// parseTyped does the receiver's typed parse so the benchmark measures what
// a receiver really pays per frame.
func parseTyped(b *testing.B, t Type, p []byte) {
	var err error
	switch t {
	case TypeDoit:
		_, err = ParseDoit(p, 0)
	case TypeAck:
		_, err = ParseAck(p)
	case TypeKillAll:
		var l RefList
		l, err = ParseKillAll(p)
		var sum uint64
		for i := 0; i < l.Len(); i++ {
			sum += l.At(i)
		}
		_ = sum
	}
	if err != nil {
		b.Fatal(err)
	}
}
