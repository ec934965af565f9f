package node

import (
	"errors"
	"fmt"

	"github.com/rexi-go/rexi/frame"
)

// Causes a worker's context is cancelled with (context.Cause) and errors
// its Stream, Reply, Last and Ping return once it must stop.
var (
	// ErrKilled: the coordinator cancelled the job (CANCEL, KILL_ALL), its
	// connection closed, or the node is closing. No EXIT is sent.
	ErrKilled = errors.New("node: worker killed")
	// ErrDeadline: the DOIT's deadline passed. EXIT DEADLINE is sent.
	ErrDeadline = errors.New("node: job deadline exceeded")
	// ErrInitTimeout: no START or CANCEL arrived within the init timeout.
	ErrInitTimeout = errors.New("node: timed out waiting for START")
	// ErrAckTimeout: no ACK arrived within the ack timeout while the window
	// was full.
	ErrAckTimeout = errors.New("node: timed out waiting for ACK")
	// ErrPayloadTooLarge: the payload exceeds what the coordinator accepts.
	ErrPayloadTooLarge = errors.New("node: payload exceeds the coordinator's maximum")
)

// connError is a connection-fatal condition: the node sends ERROR{code,
// msg} and closes the connection.
type connError struct {
	code frame.ErrorCode
	msg  string
}

func (e *connError) Error() string { return fmt.Sprintf("%s: %s", e.code, e.msg) }

func newConnError(code frame.ErrorCode, format string, args ...any) *connError {
	return &connError{code: code, msg: fmt.Sprintf(format, args...)}
}

// peerError marks a connection closed because the coordinator sent ERROR:
// the node logs it and closes without answering.
type peerError struct {
	code frame.ErrorCode
	msg  string
}

func (e *peerError) Error() string {
	return fmt.Sprintf("coordinator sent ERROR %s: %s", e.code, e.msg)
}

func newPeerError(p []byte) *peerError {
	code, msg, _ := frame.ParseError(p)
	return &peerError{code: code, msg: string(msg)}
}

// exitKindFor maps a worker's cancellation cause to the EXIT it earns;
// ok is false when no EXIT is due (killed, or not cancelled).
func exitKindFor(cause error) (frame.ExitKind, bool) {
	switch {
	case errors.Is(cause, ErrDeadline):
		return frame.ExitDeadline, true
	case errors.Is(cause, ErrInitTimeout):
		return frame.ExitInitTimeout, true
	case errors.Is(cause, ErrAckTimeout):
		return frame.ExitAckTimeout, true
	}
	return 0, false
}
