// Package proctest runs real rexinode processes for tests: build once,
// start `serve` on free ports, read /metrics and /live, send signals.
package proctest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// WaitFor bounds every wait: generous, for a busy 2-core CI machine.
const WaitFor = 20 * time.Second

// Build compiles the rexinode command into dir, with -race unless
// REXI_NORACE is set (soak runs measure memory without the detector's
// shadow memory).
func Build(pkgDir, dir string) (string, error) {
	bin := filepath.Join(dir, "rexinode")
	args := []string{"build", "-race", "-o", bin, "."}
	if os.Getenv("REXI_NORACE") != "" {
		args = []string{"build", "-o", bin, "."}
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = pkgDir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return bin, cmd.Run()
}

// Proc is a running rexinode serve.
type Proc struct {
	t      testing.TB
	Cmd    *exec.Cmd
	Addr   string // rexi protocol address
	Admin  string // admin HTTP address
	TLS    bool   // the admin listener speaks HTTPS
	Stderr *SyncBuffer
	done   chan struct{}
	Err    error
}

// SyncBuffer is a bytes.Buffer safe for concurrent use.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// SecretFile writes secret to a file in a test temp dir.
func SecretFile(t testing.TB, secret string) string {
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// StartServe runs `bin serve` on free ports and waits until it prints
// where it listens. The process is killed at cleanup if still running.
func StartServe(t testing.TB, bin string, args ...string) *Proc {
	t.Helper()
	base := []string{"serve", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-log-level", "debug"}
	p := &Proc{t: t, Stderr: &SyncBuffer{}, done: make(chan struct{})}
	p.Cmd = exec.Command(bin, append(base, args...)...)
	p.Cmd.Stderr = p.Stderr
	out, err := p.Cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		p.Err = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.Running() {
			p.Cmd.Process.Signal(syscall.SIGCONT) // in case a test froze it
			p.Cmd.Process.Kill()
			<-p.done
		}
	})
	timeout := time.After(WaitFor)
	for p.Addr == "" || p.Admin == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("rexinode serve exited before listening: %v\nstderr:\n%s", p.Err, p.Stderr)
			}
			if _, a, ok := strings.Cut(line, " listening on "); ok {
				p.Addr = a
			}
			if a, ok := strings.CutPrefix(line, "admin http://"); ok {
				p.Admin = a
			}
			if a, ok := strings.CutPrefix(line, "admin https://"); ok {
				p.Admin, p.TLS = a, true
			}
		case <-timeout:
			t.Fatalf("rexinode serve printed no addresses within %v\nstderr:\n%s", WaitFor, p.Stderr)
		}
	}
	go func() {
		for range lines {
		}
	}()
	return p
}

// Running reports whether the process has not exited.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Stop sends sig and waits for the exit code.
func (p *Proc) Stop(sig syscall.Signal) int {
	p.t.Helper()
	p.Cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(WaitFor):
		p.t.Fatalf("rexinode did not exit within %v of %v\nstderr:\n%s", WaitFor, sig, p.Stderr)
	}
	return p.Cmd.ProcessState.ExitCode()
}

// HTTP is the client tests use: no keep-alive, so no idle goroutines leak.
var HTTP = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: WaitFor}

// Get fetches an admin path.
func (p *Proc) Get(path string) string {
	p.t.Helper()
	resp, err := HTTP.Get("http://" + p.Admin + path)
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Metric reads one sample from /metrics (name with labels, as printed).
func (p *Proc) Metric(name string) float64 {
	p.t.Helper()
	for _, line := range strings.Split(p.Get("/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				p.t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	p.t.Fatalf("metric %s missing from /metrics", name)
	return 0
}

// RSS is the process's resident memory in bytes.
func (p *Proc) RSS() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// ArmZeroLive starts a long-poll that answers once the node has no live
// worker; it returns after the node has armed it. Call the returned
// function to wait for the answer.
func (p *Proc) ArmZeroLive(timeout time.Duration) func() (int64, error) {
	p.t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet,
		fmt.Sprintf("http://%s/live?wait=%s", p.Admin, timeout), nil)
	resp, err := HTTP.Do(req)
	if err != nil {
		p.t.Fatalf("arming /live: %v", err)
	}
	return func() (int64, error) {
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, err
		}
		// "LIVE [WHEN_ZERO_UNIX_NS]": the count is the first field.
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0, fmt.Errorf("empty /live answer")
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
}

// Run runs a rexinode subcommand to completion.
func Run(t testing.TB, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitFor*2)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("rexinode %v timed out\nstderr:\n%s", args, e.String())
	}
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// Eventually polls cond until it holds or WaitFor passes.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", WaitFor, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
