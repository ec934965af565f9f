package frame

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Limits on DOIT fields.
const (
	MaxHandlerName = 255   // bytes; a handler name is 1..255 bytes
	MaxNonce       = 65535 // bytes
	MaxReason      = 65535 // bytes of an EXIT reason
)

// Doit is the payload of a DOIT frame. Byte slices returned by ParseDoit
// alias the frame's payload.
type Doit struct {
	// TimeoutMillis is the job's deadline relative to the node's receipt of
	// the DOIT, in milliseconds; 0 means no deadline.
	TimeoutMillis uint32
	Handler       []byte // registered handler name, 1..255 bytes
	Nonce         []byte // opaque request id, up to 65535 bytes
	// RangeLo and RangeHi bound the shard range the job serves, inclusive,
	// on the 32-bit ring. On the wire only when FeatureRange is in force.
	RangeLo, RangeHi uint32
	// Trace is the caller's trace context. On the wire only when
	// FeatureTraceContext is in force; the zero value means none.
	Trace TraceParent
	Args  []byte // opaque handler arguments, the rest of the payload
}

// TraceParent is a W3C trace context (the traceparent header, version
// 00) in binary form: the DOIT's sender's span is the parent of the job.
type TraceParent struct {
	TraceID [16]byte
	SpanID  [8]byte // the parent span
	Flags   byte    // W3C trace flags; bit 0 is "sampled"
}

// traceFieldSize is the DOIT trace field's length when a context is
// present: version byte, trace-id, parent span id, flags.
const traceFieldSize = 1 + 16 + 8 + 1

// Valid reports a usable context: W3C forbids all-zero ids.
func (t TraceParent) Valid() bool {
	return t.TraceID != [16]byte{} && t.SpanID != [8]byte{}
}

// appendDoitPayload encodes d; features says which optional fields the
// connection carries.
func appendDoitPayload(dst []byte, d *Doit, features Feature) []byte {
	dst = binary.BigEndian.AppendUint32(dst, d.TimeoutMillis)
	dst = append(dst, byte(len(d.Handler)))
	dst = append(dst, d.Handler...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(d.Nonce)))
	dst = append(dst, d.Nonce...)
	if features&FeatureRange != 0 {
		dst = binary.BigEndian.AppendUint32(dst, d.RangeLo)
		dst = binary.BigEndian.AppendUint32(dst, d.RangeHi)
	}
	if features&FeatureTraceContext != 0 {
		if d.Trace.Valid() {
			dst = append(dst, traceFieldSize, 0) // length, version 00
			dst = append(dst, d.Trace.TraceID[:]...)
			dst = append(dst, d.Trace.SpanID[:]...)
			dst = append(dst, d.Trace.Flags)
		} else {
			dst = append(dst, 0)
		}
	}
	return append(dst, d.Args...)
}

// DoitPayloadLen is the length of d's DOIT payload with the optional
// fields in features: what a receiver checks against its max_payload.
func DoitPayloadLen(d Doit, features Feature) int {
	n := 4 + 1 + len(d.Handler) + 2 + len(d.Nonce) + len(d.Args)
	if features&FeatureRange != 0 {
		n += 8
	}
	if features&FeatureTraceContext != 0 {
		n++
		if d.Trace.Valid() {
			n += traceFieldSize
		}
	}
	return n
}

// Validate reports a Doit that cannot be encoded faithfully.
func (d Doit) Validate() error {
	if len(d.Handler) == 0 || len(d.Handler) > MaxHandlerName {
		return fmt.Errorf("frame: handler name must be 1..%d bytes, got %d", MaxHandlerName, len(d.Handler))
	}
	if len(d.Nonce) > MaxNonce {
		return fmt.Errorf("frame: nonce must be at most %d bytes, got %d", MaxNonce, len(d.Nonce))
	}
	return nil
}

var (
	errDoitShort   = &ProtocolError{Code: CodeMalformed, Detail: "DOIT payload shorter than its length fields say"}
	errDoitHandler = &ProtocolError{Code: CodeMalformed, Detail: "DOIT handler name is empty"}
	errDoitRange   = &ProtocolError{Code: CodeMalformed, Detail: "DOIT range_lo is above range_hi"}
	errDoitTrace   = &ProtocolError{Code: CodeMalformed, Detail: "DOIT trace_len must be 0 or 26"}
)

// ParseDoit parses a DOIT payload (decompressed, if it was compressed).
// features are those in force on the connection: they say which optional
// fields the payload has. A trace context of a version other than 00, or
// with an all-zero id, is dropped (Trace stays zero), as W3C asks.
func ParseDoit(p []byte, features Feature) (Doit, error) {
	var d Doit
	err := d.Parse(p, features)
	return d, err
}

// Parse is ParseDoit into d, which it overwrites: a node parses every
// DOIT it reads, and a Doit returned by value is copied twice on its way.
// On error d holds what was parsed before the fault.
func (d *Doit) Parse(p []byte, features Feature) error {
	*d = Doit{}
	if len(p) < 5 {
		return errDoitShort
	}
	d.TimeoutMillis = binary.BigEndian.Uint32(p)
	hl := int(p[4])
	p = p[5:]
	if hl == 0 {
		return errDoitHandler
	}
	if len(p) < hl+2 {
		return errDoitShort
	}
	d.Handler = p[:hl:hl]
	nl := int(binary.BigEndian.Uint16(p[hl:]))
	p = p[hl+2:]
	if len(p) < nl {
		return errDoitShort
	}
	d.Nonce = p[:nl:nl]
	p = p[nl:]
	if features&FeatureRange != 0 {
		if len(p) < 8 {
			return errDoitShort
		}
		d.RangeLo, d.RangeHi = binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:])
		if d.RangeLo > d.RangeHi {
			return errDoitRange
		}
		p = p[8:]
	}
	if features&FeatureTraceContext != 0 {
		if len(p) < 1 {
			return errDoitShort
		}
		tl := int(p[0])
		if tl != 0 && tl != traceFieldSize {
			return errDoitTrace
		}
		if len(p) < 1+tl {
			return errDoitShort
		}
		if tl == traceFieldSize && p[1] == 0 {
			copy(d.Trace.TraceID[:], p[2:18])
			copy(d.Trace.SpanID[:], p[18:26])
			d.Trace.Flags = p[26]
			if !d.Trace.Valid() {
				d.Trace = TraceParent{}
			}
		}
		p = p[1+tl:]
	}
	d.Args = p
	return nil
}

var errAckSize = &ProtocolError{Code: CodeMalformed, Detail: "ACK payload must be exactly 4 bytes"}
var errAckZero = &ProtocolError{Code: CodeMalformed, Detail: "ACK count must be at least 1"}

// ParseAck parses an ACK payload: the number of rows consumed, at least 1.
func ParseAck(p []byte) (uint32, error) {
	if len(p) != 4 {
		return 0, errAckSize
	}
	n := binary.BigEndian.Uint32(p)
	if n == 0 {
		return 0, errAckZero
	}
	return n, nil
}

// RefList is the payload of a KILL_ALL frame: packed big-endian 64-bit refs.
// It aliases the frame's payload.
type RefList []byte

var errKillAllSize = &ProtocolError{Code: CodeMalformed, Detail: "KILL_ALL payload length is not a multiple of 8"}

// ParseKillAll validates a KILL_ALL payload.
func ParseKillAll(p []byte) (RefList, error) {
	if len(p)%8 != 0 {
		return nil, errKillAllSize
	}
	return RefList(p), nil
}

// Len is the number of refs.
func (l RefList) Len() int { return len(l) / 8 }

// At returns the i-th ref.
func (l RefList) At(i int) uint64 { return binary.BigEndian.Uint64(l[i*8:]) }

// ExitKind says why a worker ended with EXIT.
type ExitKind uint8

// Exit kinds. A worker that was killed (KILL_ALL, CANCEL, connection loss)
// sends no EXIT at all.
const (
	ExitError          ExitKind = 1 // the handler returned an error
	ExitPanic          ExitKind = 2 // the handler panicked; Stack is set
	ExitUnknownHandler ExitKind = 3 // no handler of that name is registered
	ExitDeadline       ExitKind = 4 // the DOIT's deadline passed
	ExitInitTimeout    ExitKind = 5 // no START or CANCEL in time after STREAM_INIT
	ExitAckTimeout     ExitKind = 6 // no ACK in time while the window was full
	ExitShuttingDown   ExitKind = 7 // the node is draining and refused the job
	ExitBadRequest     ExitKind = 8 // reserved: a bad DOIT is a connection error (ERROR MALFORMED)
	ExitOverloaded     ExitKind = 9 // the node is at its live-job limit and did not start the job
)

var exitNames = [...]string{
	ExitError: "error", ExitPanic: "panic", ExitUnknownHandler: "unknown handler",
	ExitDeadline: "deadline exceeded", ExitInitTimeout: "stream init timeout",
	ExitAckTimeout: "stream ack timeout", ExitShuttingDown: "shutting down",
	ExitBadRequest: "bad request", ExitOverloaded: "overloaded",
}

// String names the kind as PROTOCOL.md does.
func (k ExitKind) String() string {
	if int(k) < len(exitNames) && exitNames[k] != "" {
		return exitNames[k]
	}
	return fmt.Sprintf("exit kind %d", uint8(k))
}

// Exit is the payload of an EXIT frame. Slices returned by ParseExit alias
// the frame's payload.
type Exit struct {
	Kind   ExitKind
	Reason []byte // human-readable, UTF-8, up to 65535 bytes
	Stack  []byte // goroutine stack for ExitPanic, else usually empty
}

// Fit returns x cut to fit a payload of at most max bytes: the stack goes
// first, then the end of the reason (never inside a UTF-8 sequence). A
// payload of MinMaxPayload bytes keeps 61 bytes of reason.
func (x Exit) Fit(max int) Exit {
	room := max - 3
	if room < 0 {
		room = 0
	}
	x.Reason = cutUTF8(x.Reason, min(room, MaxReason))
	x.Stack = cutUTF8(x.Stack, room-len(x.Reason))
	return x
}

// FitMessage cuts an ERROR message so that the payload (code u16 and
// message) is at most max bytes, never inside a UTF-8 sequence.
func FitMessage(msg string, max int) string {
	return string(cutUTF8([]byte(msg), max-2))
}

// cutUTF8 returns the longest prefix of b of at most n bytes that does not
// end inside a UTF-8 sequence.
func cutUTF8(b []byte, n int) []byte {
	if n <= 0 {
		return b[:0]
	}
	if len(b) <= n {
		return b
	}
	for i := n; i > 0 && i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			return b[:i]
		}
	}
	return b[:n]
}

func appendExitPayload(dst []byte, x Exit) []byte {
	reason := x.Reason
	if len(reason) > MaxReason {
		reason = reason[:MaxReason]
	}
	dst = append(dst, byte(x.Kind))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(reason)))
	dst = append(dst, reason...)
	return append(dst, x.Stack...)
}

var errExitShort = &ProtocolError{Code: CodeMalformed, Detail: "EXIT payload shorter than its length fields say"}

// ParseExit parses an EXIT payload. Unknown kinds are accepted (a newer node
// may add some); callers treat them as ExitError.
func ParseExit(p []byte) (Exit, error) {
	var x Exit
	if len(p) < 3 {
		return x, errExitShort
	}
	x.Kind = ExitKind(p[0])
	rl := int(binary.BigEndian.Uint16(p[1:]))
	p = p[3:]
	if len(p) < rl {
		return x, errExitShort
	}
	x.Reason = p[:rl:rl]
	x.Stack = p[rl:]
	return x, nil
}

var errErrorShort = &ProtocolError{Code: CodeMalformed, Detail: "ERROR payload shorter than 2 bytes"}

// ParseError parses an ERROR payload into its code and message (aliasing p).
func ParseError(p []byte) (ErrorCode, []byte, error) {
	if len(p) < 2 {
		return 0, nil, errErrorShort
	}
	return ErrorCode(binary.BigEndian.Uint16(p)), p[2:], nil
}

var errNotEmpty = &ProtocolError{Code: CodeMalformed, Detail: "frame type carries no payload but has one"}

// CheckEmpty validates the payload of a type that carries none (STREAM_INIT,
// START, CANCEL, PING, HEARTBEAT).
func CheckEmpty(p []byte) error {
	if len(p) != 0 {
		return errNotEmpty
	}
	return nil
}
