package handlers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rexi-go/rexi/coord"
	"github.com/rexi-go/rexi/internal/leak"
	"github.com/rexi-go/rexi/internal/testcluster"
	"github.com/rexi-go/rexi/node"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leak.IgnoreGnet...) }

func TestParseRowsArgs(t *testing.T) {
	good := map[string][3]int{"10": {10, 100, 0}, "10:20": {10, 20, 0}, "10:20:3": {10, 20, 3}, "0": {0, 100, 0}, "03": {3, 100, 0}}
	for in, want := range good {
		c, s, st, err := ParseRowsArgs(in)
		if err != nil || [3]int{c, s, st} != want {
			t.Errorf("%q: %d %d %d %v, want %v", in, c, s, st, err, want)
		}
	}
	for _, in := range []string{"", "x", "1:2:3:4", "-1", "1:", "1::2", "1:99999999999", "+3", "3:+2", "-0", "3:2: 1"} {
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

// Numbers past what the fast parse takes (2^31) still make the rows asked
// for; they made an empty stream once.
func TestRowsBeyondTheFastParse(t *testing.T) {
	src, got := rowsOf(t, "3000000002:2:3000000000")
	if len(got) != 2 || got[0] != "3000000000/" || string(src.Last(nil)) != "2" {
		t.Fatalf("rows %q, LAST %q; want 2 rows from 3000000000 and LAST 2", got, src.Last(nil))
	}
}

// rowsOf opens the rows handler's source for args and reads all its rows.
func rowsOf(t *testing.T, args string) (node.RowSource, []string) {
	t.Helper()
	src, err := Rows([]byte(args), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		row, ok := src.Next(nil)
		if !ok {
			return src, got
		}
		got = append(got, string(row))
	}
}

func TestRowsArgsNeverPanic(t *testing.T) {
	for _, s := range []string{"1:2:3:4", "::", "0:0:0", "1:16777217"} {
		ParseRowsArgs(s)
	}
}

func TestRowsSource(t *testing.T) {
	src, got := rowsOf(t, "5:8:2")
	if strings.Join(got, ",") != "2/......,3/......,4/......" || string(src.Last(nil)) != "3" {
		t.Fatalf("rows %q, last %q", got, src.Last(nil))
	}
	if _, err := Rows([]byte("x"), nil); err == nil {
		t.Fatal("bad args accepted")
	}
	if r, _ := Echo([]byte("hi"), nil, []byte("> ")); string(r) != "> hi" {
		t.Fatalf("echo %q", r)
	}
}

// The rows handler on a worker goroutine streams exactly what the loop one
// does, rows and LAST, for rows that fit its stack buffer and rows that
// do not.
func TestRowsOnGoroutineMatchesTheLoopHandler(t *testing.T) {
	loopNode := testcluster.Start(t, 1, Register)
	goroutineNode := testcluster.Start(t, 1, RegisterOnGoroutines)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream := func(c *testcluster.Cluster, args string) []string {
		cl, addr := c.Client, c.Addrs[0]
		co, err := cl.New(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer co.Close()
		if _, err := co.Submit(coord.Job{Node: addr, Handler: "rows", Args: []byte(args), Range: coord.FullRing}); err != nil {
			t.Fatal(err)
		}
		var got []string
		err = co.Stream(coord.StreamOptions{RecvOptions: coord.RecvOptions{Timeout: 5 * time.Second}}, func(m coord.Message) error {
			got = append(got, fmt.Sprintf("%v %s", m.Kind, m.Payload))
			return nil
		})
		if err != nil {
			t.Fatalf("rows %s on %s: %v", args, addr, err)
		}
		return got
	}
	for _, args := range []string{"12:100:3", "12:300", "0"} {
		loop, gor := stream(loopNode, args), stream(goroutineNode, args)
		if len(loop) == 0 || !slices.Equal(loop, gor) {
			t.Fatalf("rows %s: loop handler sent %q, goroutine handler %q", args, loop, gor)
		}
	}
}
