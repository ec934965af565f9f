package node

import (
	"sync"
	"time"

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
