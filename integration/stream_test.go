package integration

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/handlers"
)

// resumable is a streaming fan-out whose replacement function resumes a
// lost range on another node after the rows already received, and which
// checks that every row arrives exactly once.
type resumable struct {
	q, rows, size int
	place         func(r int) string    // node of range r's first job
	spares        []string              // nodes replacements go to, in turn
	onRow         func(total int) error // fault injection
	seen          map[string]int
	starts        []int // first row of each slot's job
	replaced      []coord.WorkerInfo
	causes        []error
}

func (r *resumable) run(ctx context.Context, cl *coord.Client, timeout time.Duration) error {
	r.seen = map[string]int{}
	co, err := cl.New(ctx, r.q)
	if err != nil {
		return err
	}
	defer co.Close()
	for i, rg := range coord.Ranges(r.q) {
		if _, err := co.Submit(coord.Job{Node: r.place(i), Handler: "rows", Range: rg,
			Args: []byte(handlers.RowsArgs(r.rows, r.size, 0))}); err != nil {
			return err
		}
		r.starts = append(r.starts, 0)
	}
	total := 0
	return co.Stream(coord.StreamOptions{
		RecvOptions: coord.RecvOptions{Timeout: timeout},
		Replace: func(failed coord.WorkerInfo, cause error) ([]coord.Job, error) {
			r.replaced = append(r.replaced, failed)
			r.causes = append(r.causes, cause)
			if len(r.replaced) > 4*r.q {
				return nil, nil
			}
			next := r.spares[len(r.replaced)%len(r.spares)]
			if next == failed.Node {
				next = r.spares[(len(r.replaced)+1)%len(r.spares)]
			}
			from := r.starts[failed.Slot] + int(failed.Rows)
			r.starts = append(r.starts, from)
			return []coord.Job{{Node: next, Handler: "rows", Range: failed.Range,
				Args: []byte(handlers.RowsArgs(r.rows, r.size, from))}}, nil
		},
	}, func(m coord.Message) error {
		if m.Kind != coord.KindRow {
			return nil
		}
		i := bytes.IndexByte(m.Payload, '/')
		n, err := strconv.Atoi(string(m.Payload[:max(i, 0)]))
		if err != nil {
			return fmt.Errorf("bad row %q", m.Payload)
		}
		r.seen[m.Worker.Range.String()+"#"+strconv.Itoa(n)]++
		total++
		if r.onRow != nil {
			return r.onRow(total)
		}
		return nil
	})
}

// checkExactlyOnce fails unless every row of every range arrived once.
func (r *resumable) checkExactlyOnce(t *testing.T) {
	t.Helper()
	if want := r.q * r.rows; len(r.seen) != want {
		t.Fatalf("%d distinct rows arrived, want %d (replacements: %v)", len(r.seen), want, r.replaced)
	}
	var dup []string
	for k, n := range r.seen {
		if n != 1 {
			dup = append(dup, fmt.Sprintf("%s x%d", k, n))
		}
	}
	slices.Sort(dup)
	if len(dup) > 0 {
		t.Fatalf("rows delivered more than once: %v", dup[:min(len(dup), 10)])
	}
}
