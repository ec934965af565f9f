package handlers

import (
	"testing"

	"github.com/rexi-go/rexi/internal/leak"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leak.IgnoreGnet...) }

func TestParseRowsArgs(t *testing.T) {
	good := map[string][3]int{"10": {10, 100, 0}, "10:20": {10, 20, 0}, "10:20:3": {10, 20, 3}, "0": {0, 100, 0}}
	for in, want := range good {
		c, s, st, err := ParseRowsArgs(in)
		if err != nil || [3]int{c, s, st} != want {
			t.Errorf("%q: %d %d %d %v, want %v", in, c, s, st, err, want)
		}
	}
	for _, in := range []string{"", "x", "1:2:3:4", "-1", "1:", "1::2", "1:99999999999"} {
		if _, _, _, err := ParseRowsArgs(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	if got := RowsArgs(5, 6, 7); got != "5:6:7" {
		t.Errorf("RowsArgs = %q", got)
	}
}

// FuzzParseRows: the fast parser agrees with the slow one on what it accepts.
func FuzzParseRows(f *testing.F) {
	for _, s := range []string{"10", "10:20", "10:20:3", "", "1:2:3:4", "1:", "x", "99999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, sz, st, ok := parseRows([]byte(s))
		c2, sz2, st2, err := parseRowsSlow(s)
		if ok && (err != nil || c != c2 || sz != sz2 || st != st2) {
			t.Fatalf("%q: fast %d %d %d, slow %d %d %d %v", s, c, sz, st, c2, sz2, st2, err)
		}
	})
}

func TestRowsArgsNeverPanic(t *testing.T) {
	for _, s := range []string{"1:2:3:4", "::", "0:0:0", "1:16777217"} {
		ParseRowsArgs(s)
	}
}
