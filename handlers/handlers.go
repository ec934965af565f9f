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
	"time"

	"github.com/rexi-go/rexi/node"
)

// Register installs every built-in handler on n:
//
//	echo   replies with its args
//	rows   args "N[:S[:START]]": streams rows START..N-1 of S bytes (default
//	       100), then LAST; a replacement resumes with START = rows received
//	sleep  args a Go duration: sleeps (pinging every second), then replies
//	block  runs until killed
//	crash  panics with its args as the message
func Register(n *node.Node) {
	n.Handle("echo", Echo)
	n.Handle("rows", Rows)
	n.Handle("sleep", Sleep)
	n.Handle("block", Block)
	n.Handle("crash", Crash)
}

// Echo replies with its arguments.
func Echo(ctx context.Context, w *node.Worker) error { return w.Reply(w.Args()) }

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
		if i == len(nums) || err != nil || v < 0 {
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

// Rows streams numbered rows: row i starts with "i/" and is padded with
// dots to the row size, so a consumer can check order and duplicates.
func Rows(ctx context.Context, w *node.Worker) error {
	count, size, start, ok := parseRows(w.Args())
	if !ok {
		_, _, _, err := ParseRowsArgs(string(w.Args()))
		return err
	}
	row := make([]byte, max(size, 24))
	for i := range row {
		row[i] = '.'
	}
	for i := start; i < count; i++ {
		n := copy(row, strconv.AppendInt(row[:0:24], int64(i), 10))
		row[n] = '/'
		if err := w.Stream(row[:max(size, n+1)]); err != nil {
			return err
		}
		for j := 0; j <= n; j++ { // restore the padding the number overwrote
			row[j] = '.'
		}
	}
	var last [20]byte
	return w.Last(strconv.AppendInt(last[:0], int64(count-start), 10))
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
