package live

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// counter is a node whose workers the test starts and ends by hand.
type counter struct {
	live, started atomic.Int64
	idle          time.Time
}

func (c *counter) Live() int64    { return c.live.Load() }
func (c *counter) Started() int64 { return c.started.Load() }
func (c *counter) WaitNoLive(ctx context.Context) error {
	if c.live.Load() == 0 {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}
func (c *counter) IdleSince() (time.Time, bool) { return c.idle, c.live.Load() == 0 }

// guarded serves Handler(c) at /live and a /jobs, both behind token as
// rexinode guards them, and records the Authorization of every /jobs.
type guarded struct {
	srv     *httptest.Server
	mu      sync.Mutex
	jobAuth []string
}

func serveGuarded(t *testing.T, c Counter, token string, useTLS bool) *guarded {
	g := &guarded{}
	mux := http.NewServeMux()
	mux.Handle("GET /live", Handler(c))
	mux.HandleFunc("GET /jobs", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.jobAuth = append(g.jobAuth, r.Header.Get("Authorization"))
		g.mu.Unlock()
		w.Write([]byte("[]"))
	})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "send the admin token", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
	if useTLS {
		g.srv = httptest.NewTLSServer(h)
	} else {
		g.srv = httptest.NewServer(h)
	}
	t.Cleanup(g.srv.Close)
	return g
}

func (g *guarded) addr() string { return g.srv.Listener.Addr().String() }

func newClient(t *testing.T, token string, useTLS bool) *AdminClient {
	var tlsConf *tls.Config
	if useTLS { // the test server's certificate is its own
		tlsConf = &tls.Config{InsecureSkipVerify: true}
	}
	c := NewAdminClient([]byte(token), tlsConf)
	t.Cleanup(c.CloseIdleConnections) // before the server closes: no idle goroutine outlives the test
	return c
}

// Watch carries the admin token, over HTTP or HTTPS, and reads the moment
// the node's last worker left.
func TestWatchWithTokenAndTLS(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[useTLS], func(t *testing.T) {
			node := &counter{idle: time.Unix(0, 1234567890)}
			g := serveGuarded(t, node, "tok", useTLS)
			wait := NewWatcher(newClient(t, "tok", useTLS), []string{g.addr()}).Watch(context.Background(), time.Minute)
			idle := time.Now()
			node.idle = idle
			node.started.Add(1) // a worker came and went after the watch was armed
			left, zero, err := wait()
			if err != nil || left != 0 || !zero.Equal(idle) {
				t.Fatalf("wait: %d live, zero at %v, %v; want 0, %v, nil", left, zero, err, idle)
			}
		})
	}
}

// A refused watch is an error naming the URL and the status, not a
// malformed answer.
func TestWatchReportsStatus(t *testing.T) {
	g := serveGuarded(t, &counter{}, "tok", false)
	_, _, err := NewWatcher(newClient(t, "wrong", false), []string{g.addr()}).Watch(context.Background(), time.Minute)()
	for _, want := range []string{"http://" + g.addr() + "/live?", "401 Unauthorized", "send the admin token"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("wait with a wrong token: %v, want an error mentioning %q", err, want)
		}
	}
}

// When workers are still live at the end, the watch reads /jobs, with the
// token, to say which.
func TestWatchLeakReadsJobsWithToken(t *testing.T) {
	node := &counter{}
	node.live.Store(1)
	g := serveGuarded(t, node, "tok", false)
	wait := NewWatcher(newClient(t, "tok", false), []string{g.addr()}).Watch(context.Background(), 20*time.Millisecond)
	if left, _, err := wait(); left != 1 || err != nil {
		t.Fatalf("wait: %d live, %v; want 1 leaked worker", left, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.jobAuth) != 1 || g.jobAuth[0] != "Bearer tok" {
		t.Fatalf("/jobs requests carried %q, want one with the token", g.jobAuth)
	}
}

// A caller that gives up before it waits (a trial failing early) cancels
// the watch's context, and Wait returns once every long-poll has ended,
// without waiting out their timeout.
func TestWatcherCancelledBeforeWait(t *testing.T) {
	g := serveGuarded(t, &counter{}, "tok", false) // no worker ever starts: the long-poll would run its minute
	w := NewWatcher(newClient(t, "tok", false), []string{g.addr(), g.addr()})
	ctx, cancel := context.WithCancel(context.Background())
	w.Watch(ctx, time.Minute) // armed on both
	cancel()
	done := make(chan struct{})
	go func() { w.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after the watch's context was cancelled")
	}
}

func TestReadAdminToken(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "token")
	os.WriteFile(f, []byte("  s3cret\n"), 0o600)
	if tok, err := ReadAdminToken(f); err != nil || string(tok) != "s3cret" {
		t.Fatalf("ReadAdminToken: %q, %v; want the content without white space", tok, err)
	}
	os.WriteFile(f, []byte("\n"), 0o600)
	if _, err := ReadAdminToken(f); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("an empty token file: %v, want an error", err)
	}
	if _, err := ReadAdminToken(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing token file: no error")
	}
}

// stagedCounter is a node that counts a worker started before it counts
// it live, as a real node does, and tells the test when /live asks it
// for the instant it last had none.
type stagedCounter struct {
	live, started atomic.Int64
	idle          atomic.Int64 // unix ns
	asked         chan struct{}
}

func (c *stagedCounter) Live() int64    { return c.live.Load() }
func (c *stagedCounter) Started() int64 { return c.started.Load() }
func (c *stagedCounter) WaitNoLive(ctx context.Context) error {
	for c.live.Load() != 0 {
		select {
		case <-time.After(100 * time.Microsecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
func (c *stagedCounter) IdleSince() (time.Time, bool) {
	select {
	case c.asked <- struct{}{}:
	default:
	}
	return time.Unix(0, c.idle.Load()), c.live.Load() == 0
}

// A watch that sees a worker started but not yet live does not take the
// node's earlier "none live" instant for the end of the new workers.
func TestWatchWaitsForWorkersCountedStartedNotYetLive(t *testing.T) {
	node := &stagedCounter{asked: make(chan struct{}, 1)}
	node.idle.Store(time.Now().Add(-time.Hour).UnixNano()) // the previous trial's end
	g := serveGuarded(t, node, "tok", false)
	wait := NewWatcher(newClient(t, "tok", false), []string{g.addr()}).Watch(context.Background(), time.Minute)
	node.started.Add(1) // started, not yet live
	<-node.asked        // /live looked in between
	node.live.Add(1)
	end := time.Now()
	node.idle.Store(end.UnixNano())
	node.live.Add(-1)
	left, zero, err := wait()
	if err != nil || left != 0 || !zero.Equal(time.Unix(0, end.UnixNano())) {
		t.Fatalf("wait: %d live, zero at %v, %v; want 0, %v, nil", left, zero, err, end)
	}
}

// A watch that waits for no new worker (from=0) on a node with none live
// answers at once, with the instant the node last had one.
func TestWatchWithoutNewWorkersAnswersAtOnce(t *testing.T) {
	idle := time.Now().Add(-time.Hour)
	g := serveGuarded(t, &counter{idle: idle}, "tok", false)
	c := newClient(t, "tok", false)
	req, err := c.NewRequest(context.Background(), http.MethodGet, g.addr(), "/live?wait=1m")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ans := parseLive(string(b)); ans.live != 0 || !ans.zero.Equal(time.Unix(0, idle.UnixNano())) {
		t.Fatalf("answer %q, want 0 live since %v", b, idle)
	}
}
