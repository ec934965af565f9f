package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rexi-go/rexi/internal/leak"
	"go.uber.org/goleak"
)

// cluster3 starts three daemons; the first lists all three as peers.
func cluster3(t *testing.T, sf string) []*proc {
	b := startServe(t, "-secret-file", sf, "-name", "b")
	c := startServe(t, "-secret-file", sf, "-name", "c")
	a := startServe(t, "-secret-file", sf, "-name", "a", "-peers", "self,"+b.Addr+","+c.Addr)
	waitPeers(t, a, 3)
	return []*proc{a, b, c}
}

func totalLive(ps []*proc) float64 {
	var n float64
	for _, p := range ps {
		n += p.Metric("rexi_node_live_workers")
	}
	return n
}

func TestServeFanoutMetricsAndCleanShutdown(t *testing.T) {
	sf := secretFile(t, "integration-secret")
	ps := cluster3(t, sf)
	nodes := ps[0].Addr + "," + ps[1].Addr + "," + ps[2].Addr

	out, errOut, code := runCmd(t, "fanout", "-nodes", nodes, "-secret-file", sf, "-q", "64", "-n", "3", "-rows", "10", "-json")
	if code != 0 {
		t.Fatalf("fanout exit %d\n%s", code, errOut)
	}
	var res fanoutResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Rows != 640 {
		t.Fatalf("fanout result %q (%v), want 640 rows", out, err)
	}
	if !strings.Contains(errOut, "progress: 640/640 (100%)") {
		t.Fatalf("no plain progress lines on a non-terminal:\n%s", errOut)
	}

	// /fanout through the first daemon, hanging up after 100 rows.
	resp, err := httpClient.Get("http://" + ps[0].Admin + "/fanout?handler=rows&q=64&n=3&rows=1000000&size=100")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 100; i++ {
		line, err := br.ReadString('\n')
		var row fanoutRow
		if err != nil || json.Unmarshal([]byte(line), &row) != nil || row.Kind != "row" {
			t.Fatalf("line %d: %q %v", i, line, err)
		}
	}
	resp.Body.Close()
	eventually(t, "every node's live workers at 0 after the hang-up", func() bool { return totalLive(ps) == 0 })
	if v := ps[0].Metric("rexi_coord_fanouts_total"); v != 1 {
		t.Fatalf("rexi_coord_fanouts_total %v, want 1", v)
	}
	// Both are recorded just after the workers are gone: wait for them.
	eventually(t, "a KILL_ALL counted", func() bool { return ps[0].Metric("rexi_coord_kill_all_sent_total") >= 1 })
	eventually(t, "the cancelled fan-out in the latency histogram", func() bool {
		return strings.Contains(ps[0].Get("/metrics"), `rexi_coord_fanout_duration_seconds_count{handler="rows",outcome="cancelled"} 1`)
	})

	// A crash shows in /errors; /jobs and /healthz answer.
	if body := ps[0].Get("/fanout?handler=crash&q=1&n=1"); !strings.Contains(body, "panic") {
		t.Fatalf("/fanout of a crashing handler ended with %q, want the panic reported", body)
	}
	eventually(t, "the crash in /errors", func() bool { return strings.Contains(ps[0].Get("/errors"), `"handler": "crash"`) })
	if j := ps[1].Get("/jobs"); strings.TrimSpace(j) != "null" && strings.TrimSpace(j) != "[]" {
		t.Fatalf("/jobs on an idle node: %s", j)
	}
	if h := ps[0].Get("/healthz"); !strings.Contains(h, `"peers_up": 3`) {
		t.Fatalf("/healthz: %s", h)
	}
	if !strings.Contains(ps[0].Get("/debug/pprof/"), "goroutine") {
		t.Fatal("/debug/pprof/ does not list profiles")
	}

	for _, p := range ps {
		if code := p.Stop(syscall.SIGTERM); code != 0 {
			t.Fatalf("exit code %d after SIGTERM\nstderr:\n%s", code, p.Stderr)
		}
		if !strings.Contains(p.Stderr.String(), "msg=stopped") {
			t.Fatalf("no clean stop logged:\n%s", p.Stderr)
		}
	}
}

func TestSigtermDrainsThenSecondSignalExitsAtOnce(t *testing.T) {
	sf := secretFile(t, "s")
	p := startServe(t, "-secret-file", sf, "-drain-grace", "1m")
	waitPeers(t, p, 1)
	// A blocked worker keeps the drain waiting.
	resp, err := httpClient.Get("http://" + p.Admin + "/fanout?handler=block&q=1&n=1&timeout=1m")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	eventually(t, "a live worker", func() bool { return p.Metric("rexi_node_live_workers") == 1 })
	p.Cmd.Process.Signal(syscall.SIGTERM)
	eventually(t, "draining logged", func() bool { return strings.Contains(p.Stderr.String(), "draining") })
	if code := p.Stop(syscall.SIGTERM); code != exitFailed {
		t.Fatalf("second signal: exit code %d, want %d", code, exitFailed)
	}
}

func TestOperatorErrors(t *testing.T) {
	sf := secretFile(t, "right")
	wrong := secretFile(t, "wrong")
	p := startServe(t, "-secret-file", sf)

	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad flag", []string{"serve", "-no-such-flag"}, exitUsage, "flag provided but not defined"},
		{"no secret", []string{"serve", "-listen", "127.0.0.1:0"}, exitUsage, "no secret"},
		{"port in use", []string{"serve", "-secret-file", sf, "-listen", "127.0.0.1:0", "-admin", p.Admin}, exitListen, "cannot listen on admin address"},
		{"unreachable peer", []string{"fanout", "-secret-file", sf, "-nodes", "127.0.0.1:1", "-dial-timeout", "200ms"}, exitUnreachable, "cannot reach"},
		{"wrong secret", []string{"fanout", "-secret-file", wrong, "-nodes", p.Addr, "-dial-timeout", "500ms"}, exitUnreachable, "secret"},
		{"unknown command", []string{"frobnicate"}, exitUsage, "unknown command"},
		{"bad q", []string{"fanout", "-secret-file", sf, "-nodes", p.Addr, "-q", "0"}, exitUsage, "q=0"},
		{"bad otlp endpoint", []string{"serve", "-secret-file", sf, "-listen", "127.0.0.1:0", "-admin", "off", "-otlp-endpoint", "ftp://x"}, exitUsage, "-otlp-endpoint"},
		{"bad sample ratio", []string{"serve", "-secret-file", sf, "-listen", "127.0.0.1:0", "-admin", "off", "-otlp-endpoint", "x:4318", "-otlp-sample-ratio", "2"}, exitUsage, "want a number in [0, 1]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errOut, code := runCmd(t, c.args...)
			if code != c.code || !strings.Contains(errOut, c.want) {
				t.Fatalf("exit %d (want %d), stderr:\n%s\nwant it to mention %q", code, c.code, errOut, c.want)
			}
		})
	}
	eventually(t, "the node logs the refused secret", func() bool {
		return strings.Contains(p.Stderr.String(), "authentication failed")
	})
}

func TestConfigFileAndEnvironment(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "rexi.json")
	os.WriteFile(cfg, []byte(`{"name": "from-file", "window": 7, "secret": "file-secret"}`), 0o600)
	t.Setenv("REXI_NAME", "from-env")
	p := startServe(t, "-config", cfg)
	if !strings.Contains(p.Get("/healthz"), `"node": "from-env"`) {
		t.Fatalf("env did not override the config file: %s", p.Get("/healthz"))
	}
	p2 := startServe(t, "-config", cfg, "-name", "from-flag")
	if !strings.Contains(p2.Get("/healthz"), `"node": "from-flag"`) {
		t.Fatalf("flag did not override env and file: %s", p2.Get("/healthz"))
	}
}

func TestDemo(t *testing.T) {
	out, errOut, code := runCmd(t, "demo")
	if code != 0 {
		t.Fatalf("demo exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"640 rows", "live workers after", "node1=0, node2=0, node3=0"} {
		if !strings.Contains(out, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out)
		}
	}
}

// -config keeps large integers integral, and -idle-timeout 0 disables
// the idle timeout as its help says (the library's zero means "default").
func TestFlagValues(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "rexi.json")
	os.WriteFile(cfgFile, []byte(`{"max-frame": 16777216, "outbound-limit": 1000000, "idle-timeout": "0s"}`), 0o600)
	fs := newFlagSet("serve", io.Discard)
	f := addServeFlags(fs)
	fs.String("config", "", "")
	if err := fs.parse([]string{"-config", cfgFile}); err != nil {
		t.Fatal(err)
	}
	nc := f.nodeConfig([]byte("s"), keySet{}, nil)
	if nc.MaxPayload != 16777216 || nc.OutboundLimit != 1000000 {
		t.Fatalf("max-frame %d, outbound-limit %d from the config file", nc.MaxPayload, nc.OutboundLimit)
	}
	if nc.IdleTimeout >= 0 {
		t.Fatalf("-idle-timeout 0 gave IdleTimeout %v, want disabled (negative)", nc.IdleTimeout)
	}
}

// A daemon's node and its client of the peers use the same -key-file: a
// peer that admits only that key as a coordinator accepts the daemon.
func TestServeSharesItsKeyWithItsPeers(t *testing.T) {
	dir := t.TempDir()
	keyA, keyB := filepath.Join(dir, "a.key"), filepath.Join(dir, "b.key")
	for _, k := range []string{keyA, keyB} {
		if _, errOut, code := runCmd(t, "keygen", "-out", k); code != 0 {
			t.Fatalf("keygen: exit %d: %s", code, errOut)
		}
	}
	sf := secretFile(t, "keys")
	b := startServe(t, "-secret-file", sf, "-name", "b", "-key-file", keyB, "-allowed-keys-file", keyA+".pub")
	a := startServe(t, "-secret-file", sf, "-name", "a", "-key-file", keyA, "-allowed-keys-file", keyA+".pub",
		"-node-keys-file", keyB+".pub", "-peers", b.Addr)
	waitPeers(t, a, 1)
}

// startDaemon checks every flag before it starts anything (a bad flag is
// a usage error even when the listen address is taken), and a failure
// once things run stops them: no tracer, node or client outlives it.
func TestStartDaemonFailures(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := busy.Addr().String()
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad handler mode", []string{"-listen", taken, "-handler-mode", "bogus"}, exitUsage, "-handler-mode"},
		{"bad peers-dns", []string{"-listen", taken, "-peers-dns", "no-port"}, exitUsage, "-peers-dns"},
		{"bad heartbeats", []string{"-listen", taken, "-heartbeat-interval", "5s", "-heartbeat-timeout", "1s"}, exitUsage, "HeartbeatTimeout"},
		{"bad window", []string{"-listen", taken, "-window", "-1"}, exitUsage, "indow"},
		{"listen address taken, tracing on", []string{"-listen", taken, "-otlp-endpoint", "127.0.0.1:1"}, exitListen, "cannot listen on " + taken},
		{"admin address taken, tracing on", []string{"-listen", "127.0.0.1:0", "-admin", taken, "-otlp-endpoint", "127.0.0.1:1"}, exitListen, "admin address"},
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := newFlagSet("serve", io.Discard)
			f := addServeFlags(fs)
			if err := fs.parse(c.args); err != nil {
				t.Fatal(err)
			}
			d, err := startDaemon(f, []byte("secret"), log)
			var ee *exitError
			if d != nil || !errors.As(err, &ee) || ee.code != c.code || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("startDaemon: %v, %v; want exit %d mentioning %q", d, err, c.code, c.want)
			}
			goleak.VerifyNone(t, leak.IgnoreGnet...)
		})
	}
}
