package node

import (
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rexi-go/rexi/frame"
)

// ErrorRecord is one worker failure kept for inspection.
type ErrorRecord struct {
	Time    time.Time      `json:"time"`
	Handler string         `json:"handler"`
	Nonce   string         `json:"nonce"`
	Kind    frame.ExitKind `json:"kind"`
	Reason  string         `json:"reason"`
	Stack   string         `json:"stack,omitempty"`
}

// What a record keeps of a failure: reasons often quote the job's input,
// which may be megabytes, and the ring lives as long as the node.
const (
	recordMaxNonce  = 256
	recordMaxReason = 4 << 10
	recordMaxStack  = 16 << 10
)

// newErrorRecord records x, each field cut to its bound.
func newErrorRecord(at time.Time, handler, nonce []byte, x frame.Exit) ErrorRecord {
	return ErrorRecord{Time: at, Handler: clip(handler, 255), Nonce: clip(nonce, recordMaxNonce), Kind: x.Kind,
		Reason: clip(x.Reason, recordMaxReason), Stack: clip(x.Stack, recordMaxStack)}
}

// clip is b as a string of at most max bytes (cut at a character
// boundary), marked when cut.
func clip(b []byte, max int) string {
	if len(b) <= max {
		return string(b)
	}
	for max > 0 && !utf8.RuneStart(b[max]) {
		max--
	}
	return string(b[:max]) + "…"
}

// errorRing keeps the last cap(buf) records.
type errorRing struct {
	mu   sync.Mutex
	buf  []ErrorRecord
	next int
	full bool
}

func newErrorRing(n int) *errorRing { return &errorRing{buf: make([]ErrorRecord, n)} }

func (r *errorRing) add(rec ErrorRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.buf) == 0 {
		return
	}
	r.buf[r.next] = rec
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// list returns the records, oldest first.
func (r *errorRing) list() []ErrorRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]ErrorRecord{}, r.buf[:r.next]...) // [] rather than null in JSON
	}
	out := make([]ErrorRecord, 0, len(r.buf))
	out = append(out, r.buf[r.next:]...)
	return append(out, r.buf[:r.next]...)
}
