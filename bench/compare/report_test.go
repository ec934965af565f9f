package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rexi-go/rexi/bench"
	"github.com/rexi-go/rexi/internal/leak"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leak.IgnoreGnet...) }

// The ratio columns are to the system marked as the baseline, wherever it
// is in the list, and the variants' to the first variant.
func TestReportRatiosToTheBaseline(t *testing.T) {
	names := []string{"gRPC-go", "rexi", "rexi, encrypted"}
	p50 := []time.Duration{4 * time.Millisecond, time.Millisecond, 2 * time.Millisecond}
	var row []result
	for _, d := range p50 {
		row = append(row, result{Result: bench.Summarize("w-cast", []time.Duration{d})})
	}
	out := t.TempDir()
	if err := report(io.Discard, names, 0, []map[string][]result{{"w-cast": row}}, []string{"w-cast"}, out); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(out, "compare.md"))
	for _, want := range []string{
		"| workload | metric | gRPC-go | rexi | rexi, encrypted | rexi / gRPC | rexi, encrypted / gRPC | rexi, encrypted / rexi |",
		"| w-cast | p50 | 4.000 ms | 1.000 ms | 2.000 ms | 0.250 | 0.500 | 2.000 |",
	} {
		if !strings.Contains(string(md), want) {
			t.Fatalf("compare.md lacks\n%s\n:\n%s", want, md)
		}
	}
}

// With several rounds a cell is the median of the rounds' figures, a ratio
// the median of each round's ratio (both sides from one sitting), leaked
// workers the sum; each round's own table follows.
func TestReportMediansOfRounds(t *testing.T) {
	names := []string{"rexi", "gRPC-go"}
	round := func(rexi, grpc time.Duration, leaked int64) map[string][]result {
		r := result{Result: bench.Summarize("w-reap", []time.Duration{rexi})}
		r.Leaked = leaked
		return map[string][]result{"w-reap": {r, {Result: bench.Summarize("w-reap", []time.Duration{grpc})}}}
	}
	runs := []map[string][]result{
		round(1*time.Millisecond, 10*time.Millisecond, 0), // ratio 0.100
		round(3*time.Millisecond, 10*time.Millisecond, 2), // ratio 0.300
		round(2*time.Millisecond, 40*time.Millisecond, 0), // ratio 0.050
	}
	out := t.TempDir()
	if err := report(io.Discard, names, 1, runs, []string{"w-reap"}, out); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(out, "compare.md"))
	for _, want := range []string{
		"Medians of 3 rounds",
		"| w-reap | p50 | 2.000 ms | 10.000 ms | 0.100 |", // not 2/10 = 0.200: the median of the rounds' ratios
		"| w-reap | leaked workers | 2 | 0 |",
		"Round 3:",
		"| w-reap | p50 | 2.000 ms | 40.000 ms | 0.050 |",
	} {
		if !strings.Contains(string(md), want) {
			t.Fatalf("compare.md lacks\n%s\n:\n%s", want, md)
		}
	}
	js, _ := os.ReadFile(filepath.Join(out, "compare.json"))
	if n := strings.Count(string(js), `"rexi": {`); n != 3 {
		t.Fatalf("compare.json holds %d rounds of rexi, want 3:\n%s", n, js)
	}
}

// Over n rounds each system runs once in each place.
func TestTurnOrderGivesEverySystemEveryPlace(t *testing.T) {
	const n = 4
	seen := make([][n]bool, n) // seen[system][place]
	for k := range n {
		order := turnOrder(k, n)
		for place, sys := range order {
			if seen[sys][place] {
				t.Fatalf("round %d: system %d runs in place %d again (orders %v)", k, sys, place, order)
			}
			seen[sys][place] = true
		}
	}
	if got := turnOrder(0, n); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("round 0 runs %v, want the systems in their order", got)
	}
}
