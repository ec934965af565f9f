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
	Args          []byte // opaque handler arguments, the rest of the payload
}

func appendDoitPayload(dst []byte, d Doit) []byte {
	dst = binary.BigEndian.AppendUint32(dst, d.TimeoutMillis)
	dst = append(dst, byte(len(d.Handler)))
	dst = append(dst, d.Handler...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(d.Nonce)))
	dst = append(dst, d.Nonce...)
	return append(dst, d.Args...)
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
)

// ParseDoit parses a DOIT payload (decompressed, if it was compressed).
func ParseDoit(p []byte) (Doit, error) {
	var d Doit
	if len(p) < 5 {
		return d, errDoitShort
	}
	d.TimeoutMillis = binary.BigEndian.Uint32(p)
	hl := int(p[4])
	p = p[5:]
	if hl == 0 {
		return d, errDoitHandler
	}
	if len(p) < hl+2 {
		return d, errDoitShort
	}
	d.Handler = p[:hl:hl]
	nl := int(binary.BigEndian.Uint16(p[hl:]))
	p = p[hl+2:]
	if len(p) < nl {
		return d, errDoitShort
	}
	d.Nonce = p[:nl:nl]
	d.Args = p[nl:]
	return d, nil
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
