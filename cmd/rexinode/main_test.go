package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/rexi-go/rexi/internal/leak"
	"github.com/rexi-go/rexi/internal/proctest"
	"go.uber.org/goleak"
)

// binary is the rexinode built once for every test in this package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rexinode-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary, err = proctest.Build(".", dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "building rexinode:", err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, append(leak.IgnoreGnet, goleak.Cleanup(func(int) { os.RemoveAll(dir) }))...)
}
