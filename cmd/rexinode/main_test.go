package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rexi-go/rexi/internal/leak"
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
	binary = filepath.Join(dir, "rexinode")
	build := exec.Command("go", "build", "-race", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building rexinode:", err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, append(leak.IgnoreGnet, goleak.Cleanup(func(int) { os.RemoveAll(dir) }))...)
}
