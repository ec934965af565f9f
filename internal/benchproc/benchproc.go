// Package benchproc holds what the benchmark programs that run node
// processes share: the lock that keeps two timed runs off the cores at
// once, starting and stopping the node processes, and their CPU time.
package benchproc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// LockPath is the lock every timed benchmark run holds (make compare,
// make reference), so that no two measure each other.
const LockPath = "/tmp/rexi-bench.lock"

// Lock takes the exclusive flock on path, waiting for it, and returns
// its release.
func Lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, errors.Join(errors.New("flock"), err)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// CPUSeconds is the user and system time process pid has used so far,
// from /proc (Linux); 0 where that cannot be read.
func CPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the ")" of the command name: utime is field 14, stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // clock ticks (USER_HZ = 100)
}

// Start runs a node process, its stderr shared with ours, and passes the
// lines it prints to ready until ready says it has seen enough (its
// address, say); the rest of its output is discarded. Stop ends it.
func Start(bin string, args []string, ready func(line string) bool) (*exec.Cmd, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if ready(sc.Text()) {
			go io.Copy(io.Discard, stdout)
			return cmd, nil
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, fmt.Errorf("%s %s: ended its output before it was ready", bin, strings.Join(args, " "))
}

// Stop asks each process to end (SIGTERM) and waits for it.
func Stop(cmds []*exec.Cmd) {
	for _, c := range cmds {
		c.Process.Signal(syscall.SIGTERM)
		c.Wait()
	}
}
