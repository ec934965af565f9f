package main

import (
	"io"
	"os"
	"path/filepath"
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
	if err := report(io.Discard, names, 0, map[string][]result{"w-cast": row}, []string{"w-cast"}, out); err != nil {
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
