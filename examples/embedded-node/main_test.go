package main

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/internal/leak"
	"go.uber.org/goleak"
)

// Every node, worker and connection must be gone when run returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leak.IgnoreGnet...) }

func TestScanDeliversEveryRowOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		m     coord.ShardMap
		match string
	}{
		{"q8 n3", coord.ShardMap{Q: 8, N: 3}, ""},
		{"q1 n3", coord.ShardMap{Q: 1, N: 3}, ""},
		{"q64 n2, most ranges empty", coord.ShardMap{Q: 64, N: 2}, ""},
		{"q8 n3 filtered", coord.ShardMap{Q: 8, N: 3}, " NL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := run(context.Background(), tc.m, tc.match)
			if err != nil {
				t.Fatal(err)
			}
			var want, got []string
			for _, line := range table {
				if strings.Contains(line, tc.match) {
					want = append(want, line)
				}
			}
			for _, r := range rows {
				got = append(got, r.Line)
			}
			slices.Sort(want)
			slices.Sort(got) // rows arrive in any order
			if !slices.Equal(got, want) {
				t.Errorf("rows (sorted):\n%q\nwant each exactly once:\n%q", got, want)
			}
		})
	}
}

func TestBadArgsFailTheScan(t *testing.T) {
	if _, _, err := parseScanArgs([]byte("zz-0 x")); err == nil {
		t.Error("parseScanArgs accepted a bad range")
	}
	rg, match, err := parseScanArgs(scanArgs(coord.FullRing, "a b"))
	if err != nil || rg != coord.FullRing || match != "a b" {
		t.Errorf("round trip: %v %q %v", rg, match, err)
	}
}
