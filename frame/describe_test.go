package frame

import (
	"fmt"
	"github.com/cespare/xxhash/v2"
	"strings"
)

// describe renders a decoded frame in the canonical text form used by
// testdata/golden.txt: type, ref, flags, then the typed payload fields.
func describe(f Frame, doit Feature) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s ref=%#x flags=%s", f.Type, f.Ref, flagString(f.Flags))
	p, _, err := Payload(f, nil, 0)
	if err != nil {
		fmt.Fprintf(&b, " payload-error=%q", err)
		return b.String()
	}
	switch f.Type {
	case TypeHello:
		h, err := ParseHello(p)
		if err != nil {
			return b.String() + fmt.Sprintf(" error=%q", err)
		}
		fmt.Fprintf(&b, " version=%d features=%#x max=%d heartbeat_ms=%d nonce=%x name=%q", h.Version, h.Features, h.MaxPayload, h.HeartbeatMs, h.Nonce, h.Name)
	case TypeWelcome:
		w, err := ParseWelcome(p)
		if err != nil {
			return b.String() + fmt.Sprintf(" error=%q", err)
		}
		fmt.Fprintf(&b, " version=%d features=%#x max=%d window=%d liveness_ms=%d nonce=%x name=%q mac=%x", w.Version, w.Features, w.MaxPayload, w.Window, w.LivenessMs, w.Nonce, w.Name, w.MAC)
	case TypeAuth:
		m, err := ParseAuth(p)
		if err != nil {
			return b.String() + fmt.Sprintf(" error=%q", err)
		}
		fmt.Fprintf(&b, " mac=%x", m)
	case TypeDoit:
		d, err := ParseDoit(p, doit)
		if err != nil {
			return b.String() + fmt.Sprintf(" error=%q", err)
		}
		fmt.Fprintf(&b, " timeout_ms=%d handler=%q nonce=%q", d.TimeoutMillis, d.Handler, d.Nonce)
		if doit&FeatureRange != 0 {
			fmt.Fprintf(&b, " range=%#08x-%#08x", d.RangeLo, d.RangeHi)
		}
		if doit&FeatureTraceContext != 0 {
			if d.Trace.Valid() {
				fmt.Fprintf(&b, " traceparent=00-%x-%x-%02x", d.Trace.TraceID, d.Trace.SpanID, d.Trace.Flags)
			} else {
				b.WriteString(" traceparent=none")
			}
		}
		fmt.Fprintf(&b, " args=%q", d.Args)
	case TypeAck:
		n, err := ParseAck(p)
		if err != nil {
			return b.String() + fmt.Sprintf(" error=%q", err)
		}
		fmt.Fprintf(&b, " count=%d", n)
	case TypeExit:
		x, err := ParseExit(p)
		if err != nil {
			return b.String() + fmt.Sprintf(" error=%q", err)
		}
		fmt.Fprintf(&b, " kind=%d reason=%q stack=%q", x.Kind, x.Reason, x.Stack)
	case TypeKillAll:
		l, err := ParseKillAll(p)
		if err != nil {
			return b.String() + fmt.Sprintf(" error=%q", err)
		}
		refs := make([]string, l.Len())
		for i := range refs {
			refs[i] = fmt.Sprintf("%#x", l.At(i))
		}
		fmt.Fprintf(&b, " refs=[%s]", strings.Join(refs, ","))
	case TypeError:
		c, msg, err := ParseError(p)
		if err != nil {
			return b.String() + fmt.Sprintf(" error=%q", err)
		}
		fmt.Fprintf(&b, " code=%d message=%q", c, msg)
	case TypeReply, TypeStream, TypeLast:
		if len(p) > 64 {
			fmt.Fprintf(&b, " payload=%d-bytes-xxhash-%x", len(p), xxhashOf(p))
		} else {
			fmt.Fprintf(&b, " payload=%q", p)
		}
	default:
		fmt.Fprintf(&b, " payload=%q", p)
	}
	return b.String()
}

func flagString(f Flags) string {
	var parts []string
	if f&FlagChecksum != 0 {
		parts = append(parts, "checksum")
	}
	if f&FlagCompressed != 0 {
		parts = append(parts, "compressed")
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "+")
}

func xxhashOf(p []byte) uint64 { return xxhash.Sum64(p) }
