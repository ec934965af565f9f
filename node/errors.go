package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/rexi-go/rexi/frame"
)

// Causes a worker's context is cancelled with (its Err, and context.Cause)
// and errors its Stream, Reply, Last and Ping return once it must stop.
// ErrKilled matches context.Canceled with errors.Is, and the other three
// context.DeadlineExceeded, as a context's Err must.
var (
	// ErrKilled: the coordinator cancelled the job (CANCEL, KILL_ALL), its
	// connection closed, or the node is closing. No EXIT is sent.
	ErrKilled error = &stopCause{"node: worker killed", context.Canceled}
	// ErrDeadline: the DOIT's deadline passed. EXIT DEADLINE is sent.
	ErrDeadline error = &stopCause{"node: job deadline exceeded", context.DeadlineExceeded}
	// ErrInitTimeout: no START or CANCEL arrived within the init timeout.
	ErrInitTimeout error = &stopCause{"node: timed out waiting for START", context.DeadlineExceeded}
	// ErrAckTimeout: no ACK arrived within the ack timeout while the window
	// was full.
	ErrAckTimeout error = &stopCause{"node: timed out waiting for ACK", context.DeadlineExceeded}
	// ErrPayloadTooLarge: the payload exceeds what the coordinator accepts.
	ErrPayloadTooLarge = errors.New("node: payload exceeds the coordinator's maximum")
	// ErrStreaming: Reply from a handler registered with Streaming, whose
	// job the coordinator already knows as a stream.
	ErrStreaming = errors.New("node: a Streaming handler must stream, not reply")
)

// stopCause is why a job was stopped; it unwraps to the context error it
// stands for.
type stopCause struct {
	msg  string
	base error
}

func (e *stopCause) Error() string { return e.msg }
func (e *stopCause) Unwrap() error { return e.base }

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
