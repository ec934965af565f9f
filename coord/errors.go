package coord

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/rexi-go/rexi/frame"
)

// Sentinels for errors.Is. Each error type below matches one of them.
var (
	// ErrNodeDown: the connection to a worker's node failed or was never up.
	ErrNodeDown = errors.New("coord: node down")
	// ErrWorkerExit: the worker ended with EXIT (error, panic, timeout...).
	ErrWorkerExit = errors.New("coord: worker exited")
	// ErrTimeout: a receive loop's global or per-message timeout passed.
	ErrTimeout = errors.New("coord: timeout")
	// ErrProgressImpossible: some part of the ring has no live copy and no
	// replacement was provided.
	ErrProgressImpossible = errors.New("coord: progress not possible")
	// ErrOverloaded: the node's outbound buffer was full; the job was not sent.
	ErrOverloaded = errors.New("coord: node outbound buffer full")
	// ErrNodeOverloaded: the node refused the job because it is at its
	// live-job limit (EXIT OVERLOADED); another copy may serve the range.
	// The error is a *WorkerError, and matches ErrWorkerExit too.
	ErrNodeOverloaded = errors.New("coord: node at its live-job limit")
	// ErrClosed: the coordinator or its client is closed.
	ErrClosed = errors.New("coord: closed")
	// ErrNoJobs: a receive loop was started before any job was submitted.
	ErrNoJobs = errors.New("coord: no jobs submitted")
	// ErrJobTooLarge: a Job's DOIT would exceed its node's max_payload
	// (announced in WELCOME); Submit refuses it before sending anything.
	ErrJobTooLarge = errors.New("coord: job larger than the node's max_payload")
	// ErrUnknownNode: a Job names a node the client was not configured with.
	ErrUnknownNode = errors.New("coord: unknown node")
	// ErrHeldBytes: the client held more unconsumed node output than
	// Config.MaxHeldBytes, and this coordinator held the most of it; it
	// was ended (its context cancelled, its jobs killed).
	ErrHeldBytes = errors.New("coord: unconsumed node output over the client's MaxHeldBytes")
)

// WorkerInfo identifies one job of a coordinator.
type WorkerInfo struct {
	Slot  int    // index in the coordinator's table, in submission order
	Node  string // node address as configured
	Ref   uint64
	Range Range
	Rows  uint64 // rows received from it so far
}

// String names the worker by node, range and ref.
func (w WorkerInfo) String() string {
	return fmt.Sprintf("(node %s, range %s, ref %#x)", w.Node, w.Range, w.Ref)
}

// NodeDownError reports a job lost with its node's connection.
type NodeDownError struct {
	Node  string
	Cause error // the connection error, or nil when the node was never reached
}

// Error implements error.
func (e *NodeDownError) Error() string {
	if e.Cause == nil {
		return fmt.Sprintf("coord: node %s down", e.Node)
	}
	return fmt.Sprintf("coord: node %s down: %v", e.Node, e.Cause)
}

// Is matches ErrNodeDown.
func (e *NodeDownError) Is(target error) bool { return target == ErrNodeDown }

// Unwrap returns the connection error.
func (e *NodeDownError) Unwrap() error { return e.Cause }

// NodeError is the ERROR a node sent before closing an established
// connection: SHUTTING_DOWN, IDLE_TIMEOUT, OUTPUT_OVERFLOW and the like.
// It is the Cause of the NodeDownErrors of the jobs that connection
// carried, so errors.As finds the code.
type NodeError struct {
	Node   string
	Code   frame.ErrorCode
	Reason string
}

// Error implements error.
func (e *NodeError) Error() string {
	return fmt.Sprintf("node %s sent ERROR %s: %s", e.Node, e.Code, printable(e.Reason))
}

// WorkerError is a remote worker's EXIT.
type WorkerError struct {
	Worker WorkerInfo
	Kind   frame.ExitKind
	Reason string
	Stack  string // the remote goroutine's stack, for a panic
}

// Error implements error.
func (e *WorkerError) Error() string {
	return fmt.Sprintf("coord: worker %v exited (%s): %s", e.Worker, e.Kind, printable(e.Reason))
}

// Is matches ErrWorkerExit, and ErrNodeOverloaded for EXIT OVERLOADED.
func (e *WorkerError) Is(target error) bool {
	return target == ErrWorkerExit || (target == ErrNodeOverloaded && e.Kind == frame.ExitOverloaded)
}

// TimeoutError names the workers that had not finished when a receive
// loop timed out.
type TimeoutError struct {
	What    string // "global timeout 5s" or "no message for 1s"
	Pending []WorkerInfo
}

// Error implements error; it lists up to 8 of the silent workers.
func (e *TimeoutError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "coord: %s; %d workers did not answer", e.What, len(e.Pending))
	for i, w := range e.Pending {
		if i == 8 {
			fmt.Fprintf(&b, " ... and %d more", len(e.Pending)-i)
			break
		}
		b.WriteString(" ")
		b.WriteString(w.String())
	}
	return b.String()
}

// Is matches ErrTimeout.
func (e *TimeoutError) Is(target error) bool { return target == ErrTimeout }

// ProgressError reports ranges of the ring that no live worker can cover.
type ProgressError struct {
	Missing []Range
	Cause   error // the failure that left the ranges uncovered
}

// Error implements error.
func (e *ProgressError) Error() string {
	return fmt.Sprintf("coord: progress not possible: no live copy of ranges %v (last failure: %v)", e.Missing, e.Cause)
}

// Is matches ErrProgressImpossible.
func (e *ProgressError) Is(target error) bool { return target == ErrProgressImpossible }

// Unwrap returns the last failure.
func (e *ProgressError) Unwrap() error { return e.Cause }

// OverloadError reports a job not sent because its node's outbound
// buffer was full (the node does not read fast enough).
type OverloadError struct {
	Node  string
	Limit int
}

// Error implements error.
func (e *OverloadError) Error() string {
	return fmt.Sprintf("coord: node %s outbound buffer over its %d-byte limit; job not sent", e.Node, e.Limit)
}

// Is matches ErrOverloaded.
func (e *OverloadError) Is(target error) bool { return target == ErrOverloaded }

// printable is a node's text as an error message shows it: as it is when
// every rune prints, else quoted with Go escapes, so that a node cannot
// put terminal escapes or forged lines into what an application prints
// or logs as text. The error's field keeps the text as sent.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
