package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress shows a bar on a terminal and a plain line per 10% otherwise.
type progress struct {
	w        io.Writer
	tty      bool
	total    int
	n        int
	lastDraw time.Time
	lastTen  int
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func newProgress(w io.Writer, total int) *progress {
	return &progress{w: w, tty: isTerminal(w), total: total}
}

func (p *progress) add(k int) {
	p.n += k
	if p.total <= 0 {
		return
	}
	if p.tty {
		if time.Since(p.lastDraw) > 50*time.Millisecond {
			p.draw()
		}
		return
	}
	if ten := p.n * 10 / p.total; ten > p.lastTen && ten <= 10 {
		p.lastTen = ten
		fmt.Fprintf(p.w, "progress: %d/%d (%d%%)\n", p.n, p.total, ten*10)
	}
}

func (p *progress) draw() {
	p.lastDraw = time.Now()
	const width = 40
	filled := min(width, p.n*width/max(p.total, 1))
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), p.n, p.total)
}

func (p *progress) done() {
	if p.tty && p.total > 0 {
		p.draw()
		fmt.Fprintln(p.w)
	}
}
