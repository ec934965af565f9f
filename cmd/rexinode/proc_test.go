package main

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

const waitFor = 20 * time.Second

// proc is a running rexinode serve.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string // rexi protocol address
	admin  string // admin HTTP address
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// secretFile writes the test secret to a file.
func secretFile(t *testing.T, secret string) string {
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startServe runs rexinode serve on free ports and waits until it prints
// where it listens.
func startServe(t *testing.T, args ...string) *proc {
	t.Helper()
	base := []string{"serve", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-log-level", "debug"}
	p := &proc{t: t, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, append(base, args...)...)
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.running() {
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	timeout := time.After(waitFor)
	for p.addr == "" || p.admin == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("rexinode serve exited before listening: %v\nstderr:\n%s", p.err, p.stderr)
			}
			if _, a, ok := strings.Cut(line, " listening on "); ok {
				p.addr = a
			}
			if a, ok := strings.CutPrefix(line, "admin http://"); ok {
				p.admin = a
			}
		case <-timeout:
			t.Fatalf("rexinode serve printed no addresses within %v\nstderr:\n%s", waitFor, p.stderr)
		}
	}
	go func() {
		for range lines {
		}
	}()
	return p
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// signal sends sig and waits for the exit code.
func (p *proc) stop(sig syscall.Signal) int {
	p.t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(waitFor):
		p.t.Fatalf("rexinode did not exit within %v of %v\nstderr:\n%s", waitFor, sig, p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitFor}

func (p *proc) get(path string) string {
	p.t.Helper()
	resp, err := httpClient.Get("http://" + p.admin + path)
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metric reads one sample from /metrics (name with labels, as printed).
func (p *proc) metric(name string) float64 {
	p.t.Helper()
	for _, line := range strings.Split(p.get("/metrics"), "\n") {
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

// runCmd runs a rexinode subcommand to completion.
func runCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor*2)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
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

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitFor, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

var _ = fmt.Sprint
