//go:build linux

package netns

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/handlers"
)

// fanout is one streaming fan-out of the built-in rows handler that counts
// every row it gets, so exactly-once delivery can be checked, and whose
// replacement function resumes a lost range on another node after the rows
// already received (the pattern of integration/stream_test.go's
// resumable, generalised to N copies per range).
type fanout struct {
	rows, size int
	jobs       []coord.Job                // the first submission; Handler and Args are set by run
	pick       func(failed string) string // node for a replacement, "" for none (the fan-out then fails)
	onRow      func(total int) error      // fault injection, called after each row is counted
	timeout    time.Duration              // the whole Stream; default 30 s

	starts   []int // first row of each slot's job, by slot
	seen     map[coord.Range][]int
	lasts    map[coord.Range]int
	replaced []coord.WorkerInfo
	causes   []error
	resumed  []int       // the start row of each replacement
	at       []time.Time // when each replacement was asked for
	total    int
}

// shardJobs places Q ranges × N copies on distinct nodes with the shard map.
func shardJobs(q, n int, nodes []string) ([]coord.Job, error) {
	return coord.ShardMap{Q: q, N: n}.Jobs(nodes, "rows", nil)
}

func (f *fanout) run(ctx context.Context, cl *coord.Client) error {
	f.seen, f.lasts = map[coord.Range][]int{}, map[coord.Range]int{}
	jobs := slices.Clone(f.jobs)
	args := []byte(handlers.RowsArgs(f.rows, f.size, 0))
	for i := range jobs {
		jobs[i].Handler, jobs[i].Args = "rows", args
		f.seen[jobs[i].Range] = make([]int, f.rows)
	}
	f.starts = make([]int, len(jobs))
	timeout := f.timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	co, err := cl.New(ctx, len(jobs))
	if err != nil {
		return err
	}
	defer co.Close()
	if _, err := co.Submit(jobs...); err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	return co.Stream(coord.StreamOptions{RecvOptions: coord.RecvOptions{Timeout: timeout}, Replace: f.replace}, f.message)
}

// replace resumes failed's range after the rows it delivered, on the node
// pick chooses. Replacements are submitted in order, so slot numbers keep
// matching starts.
func (f *fanout) replace(failed coord.WorkerInfo, cause error) ([]coord.Job, error) {
	f.replaced = append(f.replaced, failed)
	f.causes = append(f.causes, cause)
	f.at = append(f.at, time.Now())
	if f.pick == nil || len(f.replaced) > 4*len(f.jobs) {
		return nil, nil
	}
	next := f.pick(failed.Node)
	if next == "" {
		return nil, nil
	}
	from := f.starts[failed.Slot] + int(failed.Rows)
	f.starts = append(f.starts, from)
	f.resumed = append(f.resumed, from)
	return []coord.Job{{Node: next, Handler: "rows", Range: failed.Range,
		Args: []byte(handlers.RowsArgs(f.rows, f.size, from))}}, nil
}

// message counts a row ("<index>/" padded with dots to the row size) or a
// LAST; a malformed row fails the fan-out at once.
func (f *fanout) message(m coord.Message) error {
	switch m.Kind {
	case coord.KindLast:
		f.lasts[m.Worker.Range]++
	case coord.KindRow:
		counts := f.seen[m.Worker.Range]
		i := bytes.IndexByte(m.Payload, '/')
		n, err := strconv.Atoi(string(m.Payload[:max(i, 0)]))
		if err != nil || n < 0 || n >= len(counts) || len(m.Payload) != f.size {
			return fmt.Errorf("malformed row %.40q (%d bytes) from %v", m.Payload, len(m.Payload), m.Worker)
		}
		counts[n]++
		f.total++
		if f.onRow != nil {
			return f.onRow(f.total)
		}
	}
	return nil
}

// exact reports rows missing or delivered more than once, and ranges
// without exactly one LAST.
func (f *fanout) exact() error {
	var bad []string
	for rg, counts := range f.seen {
		for n, c := range counts {
			if c != 1 {
				bad = append(bad, fmt.Sprintf("range %v row %d x%d", rg, n, c))
			}
		}
		if f.lasts[rg] != 1 {
			bad = append(bad, fmt.Sprintf("range %v: %d LASTs", rg, f.lasts[rg]))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	return fmt.Errorf("%d rows or ranges wrong (replacements %v): %s", len(bad), f.replaced, strings.Join(bad[:min(len(bad), 10)], ", "))
}

// pickUp chooses a replacement node: the first of nodes() after the failed
// one, in order, that the client sees up.
func pickUp(cl *coord.Client, nodes func() []string) func(failed string) string {
	return func(failed string) string {
		ns := nodes()
		at := slices.Index(ns, failed)
		for k := 1; k <= len(ns); k++ {
			if next := ns[(at+k+len(ns))%len(ns)]; next != failed && cl.NodeUp(next) {
				return next
			}
		}
		return ""
	}
}
