// Package handlers holds the built-in handlers rexinode serves, for demos,
// tests and benchmarks. Library users register their own with node.Handle;
// these show how.
package handlers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rexi-go/rexi/node"
)

// Register installs every built-in handler on n:
//
//	echo   replies with its args (on the event loop)
//	rows   args "N[:S[:START]]": streams rows START..N-1 of S bytes (default
//	       100), then LAST; a replacement resumes with START = rows received
//	       (rows are pulled on the event loop)
//	sleep  args a Go duration: sleeps (pinging every second), then replies
//	block  runs until killed
//	crash  panics with its args as the message
func Register(n *node.Node) {
	n.HandleReply("echo", Echo)
	n.HandleStream("rows", Rows)
	n.Handle("sleep", Sleep)
	n.Handle("block", Block)
	n.Handle("crash", Crash)
}

// RegisterOnGoroutines installs the same handlers, with echo and rows
// run by node.Handle — a worker goroutine per job, as handlers that block
// (disk, locks) must be — instead of on the event loop; rows with
// node.Streaming, so that it runs only once STARTed. rexinode serve
// -handler-mode goroutine uses it, to measure that path.
func RegisterOnGoroutines(n *node.Node) {
	Register(n)
	n.Handle("echo", EchoOnGoroutine)
	n.Handle("rows", RowsOnGoroutine, node.Streaming())
}

// EchoOnGoroutine is Echo for node.Handle.
func EchoOnGoroutine(ctx context.Context, w *node.Worker) error { return w.Reply(w.Args()) }

// RowsOnGoroutine is Rows for node.Handle: it streams the same rows
// through Worker.Stream and sends the same LAST.
func RowsOnGoroutine(ctx context.Context, w *node.Worker) error {
	src, err := openRows(w.Args())
	if err != nil {
		return err
	}
	// Rows are built on the stack (Stream copies each), so a job with rows
	// up to its size allocates nothing for them.
	var stack [256]byte
	buf := stack[:0]
	for {
		row, ok := src.Next(buf[:0])
		if !ok {
			return w.Last(src.Last(buf[:0]))
		}
		buf = row
		if err := w.Stream(row); err != nil {
			return err
		}
	}
}

// Echo replies with its arguments. It never blocks, so it runs on the
// event loop (node.HandleReply).
func Echo(args, nonce, dst []byte) ([]byte, error) { return append(dst, args...), nil }

// RowsArgs formats the arguments of the rows handler.
func RowsArgs(count, size, start int) string { return fmt.Sprintf("%d:%d:%d", count, size, start) }

// ParseRowsArgs parses "N[:S[:START]]".
func ParseRowsArgs(s string) (count, size, start int, err error) {
	if c, sz, st, ok := parseRows([]byte(s)); ok {
		return c, sz, st, nil
	}
	return parseRowsSlow(s)
}

// parseRows is the allocation-free parse the handler runs per job.
func parseRows(b []byte) (count, size, start int, ok bool) {
	nums := [3]int{0, 100, 0}
	i, field, digits := 0, 0, 0
	for ; i <= len(b); i++ {
		if i == len(b) || b[i] == ':' {
			if digits == 0 || field == 3 {
				return 0, 0, 0, false
			}
			field++
			digits = 0
			continue
		}
		c := b[i]
		if field == 3 || c < '0' || c > '9' || (digits > 0 && nums[field] > (1<<31)/10) {
			return 0, 0, 0, false
		}
		if digits == 0 {
			nums[field] = 0
		}
		nums[field] = nums[field]*10 + int(c-'0')
		digits++
	}
	if nums[1] > 16<<20 {
		return 0, 0, 0, false
	}
	return nums[0], nums[1], nums[2], true
}

func parseRowsSlow(s string) (count, size, start int, err error) {
	size = 100
	nums := [...]*int{&count, &size, &start}
	rest := s
	for i := 0; ; i++ {
		p, r, more := strings.Cut(rest, ":")
		v, err := strconv.Atoi(p)
		if i == len(nums) || err != nil || p == "" || strings.Trim(p, "0123456789") != "" { // digits only: no sign
			return 0, 0, 0, fmt.Errorf("rows: args %q, want N[:SIZE[:START]] of non-negative integers", s)
		}
		*nums[i] = v
		if !more {
			break
		}
		rest = r
	}
	if size > 16<<20 {
		return 0, 0, 0, fmt.Errorf("rows: row size %d too large", size)
	}
	return count, size, start, nil
}

// Rows opens a stream of numbered rows: row i starts with "i/" and is
// padded with dots to the row size, so a consumer can check order and
// duplicates. Rows are computed as the window opens, on the event loop
// (node.HandleStream): no goroutine per job.
func Rows(args, nonce []byte) (node.RowSource, error) {
	src, err := openRows(args)
	if err != nil {
		return nil, err
	}
	r, _ := rowSources.Get().(*rowSource)
	if r == nil {
		r = new(rowSource)
	}
	*r = src
	return r, nil
}

// rowSources recycles the sources the node closes when their jobs end.
var rowSources sync.Pool

func openRows(args []byte) (rowSource, error) {
	count, size, start, ok := parseRows(args)
	if !ok { // an error, or a number the fast parse does not take (over 2^31)
		var err error
		if count, size, start, err = ParseRowsArgs(string(args)); err != nil {
			return rowSource{}, err
		}
	}
	return rowSource{next: start, start: start, count: count, size: size}, nil
}

type rowSource struct{ next, start, count, size int }

// Close implements io.Closer: the node closes a loop source once its job
// ended, and never uses it again.
func (r *rowSource) Close() error {
	rowSources.Put(r)
	return nil
}

func (r *rowSource) Next(dst []byte) ([]byte, bool) {
	if r.next >= r.count {
		return nil, false
	}
	base := len(dst)
	dst = strconv.AppendInt(dst, int64(r.next), 10)
	dst = append(dst, '/')
	for len(dst)-base < r.size {
		dst = append(dst, dots[:min(len(dots), r.size-(len(dst)-base))]...)
	}
	r.next++
	return dst, true
}

var dots = strings.Repeat(".", 1024)

// More implements node.MoreRows, so the LAST follows the last row at once.
func (r *rowSource) More() bool { return r.next < r.count }

func (r *rowSource) Last(dst []byte) []byte {
	return strconv.AppendInt(dst, int64(max(0, r.count-r.start)), 10)
}

// Sleep sleeps for its argument (a Go duration), pinging every second so
// the coordinator's per-message timer does not fire, then replies.
func Sleep(ctx context.Context, w *node.Worker) error {
	d, err := time.ParseDuration(string(w.Args()))
	if err != nil {
		return fmt.Errorf("sleep: %w", err)
	}
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
			if err := w.Ping(); err != nil {
				return err
			}
		case <-deadline.C:
			return w.Reply([]byte("slept " + d.String()))
		}
	}
}

// Block runs until the worker is killed.
func Block(ctx context.Context, w *node.Worker) error {
	<-ctx.Done()
	return context.Cause(ctx)
}

// Crash panics: the coordinator gets EXIT with the stack.
func Crash(ctx context.Context, w *node.Worker) error {
	msg := string(w.Args())
	if msg == "" {
		msg = "crash handler called"
	}
	panic(errors.New(msg))
}
