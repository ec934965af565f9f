//go:build linux

package netns

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rexi-go/rexi/internal/proctest"
	"golang.org/x/sys/unix"
)

// waitFor bounds every wait on a process or a node's state: generous for a
// busy 2-core machine, far below the package's time budget.
const waitFor = 20 * time.Second

// buildRexinode compiles the daemon once, without -race (the make target
// runs without it, and the scenarios assert behaviour, not speed).
func buildRexinode(dir string) (string, error) {
	bin := filepath.Join(dir, "rexinode")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/rexinode")
	cmd.Dir = "../.." // the repository root, from this package's directory
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/rexinode: %w\n%s", err, out)
	}
	return bin, nil
}

// owned are the PIDs of the processes this run started and has not reaped
// yet: the signal trap kills them before deleting the namespaces.
var owned sync.Map // int → struct{}

// startOwned starts cmd so that it cannot outlive this process: it gets
// SIGKILL when the thread that started it dies (Pdeathsig: the runtime
// ends a thread only with the process, or when a goroutine exits locked to
// it, which here happens only if nsDialer cannot leave a namespace), and
// it is recorded for the signal trap.
func startOwned(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	owned.Store(cmd.Process.Pid, struct{}{})
	return nil
}

// nodeProc is one `rexinode serve` running in its namespace. `ip netns
// exec` execs the daemon in place, so the PID is the daemon's own and
// signals reach it directly.
type nodeProc struct {
	cmd    *exec.Cmd
	stderr *proctest.SyncBuffer
	done   chan struct{}
}

// startNode runs node i in its namespace and waits until it prints that it
// listens.
func startNode(bin, secretFile string, i int) (*nodeProc, error) {
	p := &nodeProc{stderr: &proctest.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command("ip", "netns", "exec", nodeNS(i), bin, "serve",
		"-listen", nodeAddr(i), "-admin", adminAddr, "-secret-file", secretFile,
		"-name", fmt.Sprint("n", i+1), "-log-level", "warn",
		"-drain-grace", "3s") // a rolling restart's drain is bounded
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := startOwned(p.cmd); err != nil {
		return nil, err
	}
	listening := make(chan struct{}) // closed once both the rexi and the admin listeners are up
	go func() {
		sc := bufio.NewScanner(out)
		rexi, admin, closed := false, false, false
		for sc.Scan() {
			rexi = rexi || strings.Contains(sc.Text(), " listening on ")
			admin = admin || strings.HasPrefix(sc.Text(), "admin http://")
			if rexi && admin && !closed {
				close(listening)
				closed = true
			}
		}
		p.cmd.Wait()
		owned.Delete(p.cmd.Process.Pid)
		close(p.done)
	}()
	select {
	case <-listening:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("node n%d exited before listening: %v\nstderr:\n%s", i+1, p.cmd.ProcessState, p.stderr)
	case <-time.After(waitFor):
		p.kill()
		return nil, fmt.Errorf("node n%d printed no listen address within %v\nstderr:\n%s", i+1, waitFor, p.stderr)
	}
}

// stop sends sig and waits for the exit code.
func (p *nodeProc) stop(sig syscall.Signal) (int, error) {
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), nil
	case <-time.After(waitFor):
		p.kill()
		return -1, fmt.Errorf("node did not exit within %v of %v\nstderr:\n%s", waitFor, sig, p.stderr)
	}
}

// kill ends the process if it still runs and waits for it.
func (p *nodeProc) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill()
		<-p.done
	}
}

// nsDialer returns a DialContext whose sockets are created inside network
// namespace ns. A socket belongs to the namespace of the thread that
// creates it, so the dial runs on an OS thread locked to a goroutine,
// switched into ns and back. If switching back fails, the thread is left
// locked and dies with the goroutine instead of serving others in ns.
func nsDialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			c, restored, err := dialIn(ctx, ns, network, addr)
			if restored {
				runtime.UnlockOSThread()
			}
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}

func dialIn(ctx context.Context, ns, network, addr string) (c net.Conn, restored bool, err error) {
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, true, err
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		return nil, true, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, true, fmt.Errorf("entering namespace %s: %w", ns, err)
	}
	var d net.Dialer
	c, err = d.DialContext(ctx, network, addr)
	if rerr := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); rerr != nil {
		if c != nil {
			c.Close()
		}
		return nil, false, fmt.Errorf("leaving namespace %s: %w", ns, rerr)
	}
	return c, true, err
}

// admin is an HTTP client for node i's loopback admin endpoint. No
// keep-alive: every request dials again (in the right namespace), and no
// idle connection outlives the test.
func admin(i int) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true, DialContext: nsDialer(nodeNS(i))}}
}

// metric reads one sample from node i's /metrics.
func metric(hc *http.Client, name string) (float64, error) {
	resp, err := hc.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("metric %s missing from /metrics", name)
}

// streamingWorkers counts node i's live workers that have sent rows, from
// its /jobs list (open on a loopback admin address).
func streamingWorkers(hc *http.Client) (int, error) {
	resp, err := hc.Get("http://" + adminAddr + "/jobs")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var jobs []struct {
		Rows uint64 `json:"rows_sent"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jobs); err != nil {
		return 0, fmt.Errorf("/jobs: %w", err)
	}
	n := 0
	for _, j := range jobs {
		if j.Rows > 0 {
			n++
		}
	}
	return n, nil
}
