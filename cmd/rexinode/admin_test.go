package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rexi-go/rexi/secure"
)

func status(t *testing.T, c *http.Client, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// The endpoints that run or reveal work need the bearer token; /metrics
// and /healthz stay open.
func TestAdminTokenGuardsWork(t *testing.T) {
	sf := secretFile(t, "admin-secret")
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cr3t-token\n"), 0o600)
	p := startServe(t, "-secret-file", sf, "-admin-token-file", tokenFile)
	base := "http://" + p.Admin
	for _, path := range []string{"/jobs", "/errors", "/fanout?handler=echo&q=1&n=1", "/debug/pprof/", "/live"} {
		if got := status(t, httpClient, base+path, ""); got != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", path, got)
		}
		if got := status(t, httpClient, base+path, "wrong"); got != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d, want 401", path, got)
		}
	}
	for _, path := range []string{"/jobs", "/errors", "/debug/pprof/"} {
		if got := status(t, httpClient, base+path, "s3cr3t-token"); got != http.StatusOK {
			t.Errorf("%s with the token: %d, want 200", path, got)
		}
	}
	for _, path := range []string{"/metrics", "/healthz"} {
		if got := status(t, httpClient, base+path, ""); got != http.StatusOK {
			t.Errorf("%s: %d, want 200 without a token", path, got)
		}
	}
}

// Without a token, guarded endpoints answer only on a loopback address.
func TestAdminWithoutTokenOffLoopback(t *testing.T) {
	p := startServe(t, "-secret-file", secretFile(t, "x"), "-admin", "0.0.0.0:0")
	port := p.Admin[strings.LastIndexByte(p.Admin, ':'):]
	if got := status(t, httpClient, "http://127.0.0.1"+port+"/jobs", ""); got != http.StatusForbidden {
		t.Fatalf("/jobs on a non-loopback admin address without a token: %d, want 403", got)
	}
	if got := status(t, httpClient, "http://127.0.0.1"+port+"/healthz", ""); got != http.StatusOK {
		t.Fatalf("/healthz: %d", got)
	}
}

func TestAdminTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir)
	p := startServe(t, "-secret-file", secretFile(t, "x"), "-admin-tls-cert", certFile, "-admin-tls-key", keyFile)
	if !p.TLS {
		t.Fatal("serve did not announce an https admin address")
	}
	pem, _ := os.ReadFile(certFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if got := status(t, c, "https://"+p.Admin+"/healthz", ""); got != http.StatusOK {
		t.Fatalf("/healthz over TLS: %d", got)
	}
	if _, _, code := runCmd(t, "serve", "-secret-file", secretFile(t, "x"), "-admin-tls-cert", certFile); code != exitUsage {
		t.Fatalf("-admin-tls-cert alone: exit %d, want %d", code, exitUsage)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rexinode test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

func TestKeygen(t *testing.T) {
	out := filepath.Join(t.TempDir(), "node.key")
	stdout, stderr, code := runCmd(t, "keygen", "-out", out)
	if code != 0 {
		t.Fatalf("keygen exit %d: %s", code, stderr)
	}
	k, err := secure.ReadPrivateKeyFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, k.Public().String()) {
		t.Fatalf("keygen printed %q, not the public key %s", stdout, k.Public())
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o600 {
		t.Fatalf("private key file mode %v, want 0600", st.Mode().Perm())
	}
	if pub, err := secure.ReadPublicKeysFile(out + ".pub"); err != nil || len(pub) != 1 || pub[0] != k.Public() {
		t.Fatalf("public key file: %v %v", pub, err)
	}
	if _, _, code := runCmd(t, "keygen", "-out", out); code != exitUsage {
		t.Fatalf("keygen over an existing key: exit %d, want %d", code, exitUsage)
	}
	// A node with that key, pinned by a client: a fan-out goes through.
	p := startServe(t, "-secret-file", secretFile(t, "k"), "-key-file", out)
	sf := secretFile(t, "k")
	if _, errOut, code := runCmd(t, "fanout", "-nodes", p.Addr, "-secret-file", sf, "-node-keys-file", out+".pub", "-q", "2", "-n", "1", "-rows", "3"); code != 0 {
		t.Fatalf("fanout to the pinned node: exit %d\n%s", code, errOut)
	}
}

// rexinode drain (a preStop hook) drains the daemon: /healthz turns 503,
// /livez stays 200.
func TestDrainCommand(t *testing.T) {
	p := startServe(t, "-secret-file", secretFile(t, "d"))
	out, errOut, code := runCmd(t, "drain", "-admin", p.Admin, "-grace", "2s")
	if code != 0 {
		t.Fatalf("drain exit %d: %s %s", code, out, errOut)
	}
	if got := status(t, httpClient, "http://"+p.Admin+"/healthz", ""); got != http.StatusServiceUnavailable {
		t.Fatalf("/healthz after drain: %d, want 503", got)
	}
	if got := status(t, httpClient, "http://"+p.Admin+"/livez", ""); got != http.StatusOK {
		t.Fatalf("/livez after drain: %d, want 200", got)
	}
}

// The first hour: -h is not an error, a usage error is printed once and
// exits 2, a config error names the type it wanted.
func TestCLIPapercuts(t *testing.T) {
	for _, cmd := range []string{"serve", "fanout", "bench", "demo", "keygen", "drain"} {
		if _, errOut, code := runCmd(t, cmd, "-h"); code != 0 || !strings.Contains(errOut, "usage: rexinode "+cmd) || strings.Contains(errOut, "help requested") {
			t.Errorf("%s -h: exit %d, stderr %q: want 0, the flags and no error", cmd, code, errOut)
		}
	}
	_, errOut, code := runCmd(t, "fanout", "-nodes", "a:1", "-bogus")
	if code != exitUsage || strings.Count(errOut, "-bogus") != 1 {
		t.Errorf("unknown flag: exit %d, stderr %q: want exit 2 and the error once", code, errOut)
	}
	cfg := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(cfg, []byte(`{"drain-grace": 5}`), 0o600)
	if _, errOut, code := runCmd(t, "serve", "-config", cfg); code != exitUsage || !strings.Contains(errOut, `"5s"`) {
		t.Errorf("a number for a duration in -config: exit %d, %q: want exit 2 naming the expected type", code, errOut)
	}
	if _, errOut, code := runCmd(t, "bench", "-nodes", "a:1", "-secret", "x", "-workload", "w-reap"); code != exitUsage || !strings.Contains(errOut, "-metrics") {
		t.Errorf("bench -workload w-reap without -metrics: exit %d, %q", code, errOut)
	}
}

// fanout goes on when a node is down but every range has a live copy,
// and any handler works (echo replies: one answer per range).
func TestFanoutWithANodeDown(t *testing.T) {
	sf := secretFile(t, "f")
	a := startServe(t, "-secret-file", sf)
	b := startServe(t, "-secret-file", sf)
	down := "127.0.0.1:1" // nothing listens there
	out, errOut, code := runCmd(t, "fanout", "-nodes", a.Addr+","+b.Addr+","+down, "-secret-file", sf, "-q", "8", "-n", "3", "-rows", "5", "-json")
	if code != 0 || !strings.Contains(errOut, "going on with 2 of 3 nodes") {
		t.Fatalf("fanout with a node down: exit %d\n%s", code, errOut)
	}
	if !strings.Contains(out, `"rows":40`) {
		t.Fatalf("fanout result %s, want 40 rows", out)
	}
	out, errOut, code = runCmd(t, "fanout", "-nodes", a.Addr+","+b.Addr, "-secret-file", sf, "-q", "4", "-n", "2", "-handler", "echo", "-args", "hi", "-json")
	if code != 0 || !strings.Contains(out, `"replies":4`) {
		t.Fatalf("fanout of a replying handler: exit %d, %s\n%s", code, out, errOut)
	}
}

func TestVersionAndBuildInfo(t *testing.T) {
	out, _, code := runCmd(t, "version")
	if code != 0 || !strings.HasPrefix(out, "rexinode ") || !strings.Contains(out, "go1.") {
		t.Fatalf("rexinode version: exit %d, %q", code, out)
	}
	if out2, _, _ := runCmd(t, "-version"); out2 != out {
		t.Fatalf("-version printed %q, version %q", out2, out)
	}
	p := startServe(t, "-secret-file", secretFile(t, "v"))
	if !strings.Contains(p.Get("/metrics"), `rexi_build_info{goversion="go1.`) {
		t.Fatal("/metrics has no rexi_build_info")
	}
}

// rexinode bench's w-reap reads /live of daemons that guard it: with
// -admin-token-file and -admin-tls it measures; without the token it says
// which URL refused it and how.
func TestBenchReapWithGuardedAdmin(t *testing.T) {
	sf := secretFile(t, "guarded-bench")
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("bench-token\n"), 0o600)
	certFile, keyFile := selfSigned(t, dir)
	var nodes, admins []string
	for range 3 { // the bench places every range's 3 copies on 3 nodes
		p := startServe(t, "-secret-file", sf, "-admin-token-file", tokenFile, "-admin-tls-cert", certFile, "-admin-tls-key", keyFile)
		nodes, admins = append(nodes, p.Addr), append(admins, p.Admin)
	}
	bench := []string{"bench", "-nodes", strings.Join(nodes, ","), "-secret-file", sf, "-metrics", strings.Join(admins, ","),
		"-workload", "w-reap", "-fanouts", "1", "-admin-tls"}
	out, errOut, code := runCmd(t, append(bench, "-admin-token-file", tokenFile)...)
	if code != 0 || !strings.Contains(out, "w-reap") || !strings.Contains(out, "leaked 0") {
		t.Fatalf("bench w-reap with the admin token: exit %d\n%s\n%s", code, out, errOut)
	}
	// The certificate verified: against the daemons' own it works, against
	// another it is refused before the token is sent.
	out, errOut, code = runCmd(t, append(bench, "-admin-token-file", tokenFile, "-admin-ca-file", certFile)...)
	if code != 0 || !strings.Contains(out, "leaked 0") {
		t.Fatalf("bench w-reap verifying the admin certificate: exit %d\n%s\n%s", code, out, errOut)
	}
	otherCert, _ := selfSigned(t, t.TempDir())
	_, errOut, code = runCmd(t, append(bench, "-admin-token-file", tokenFile, "-admin-ca-file", otherCert)...)
	if code != exitFailed || !strings.Contains(errOut, "certificate") {
		t.Fatalf("bench w-reap with another CA: exit %d, want %d and a certificate error:\n%s", code, exitFailed, errOut)
	}
	_, errOut, code = runCmd(t, bench...)
	if code != exitFailed || !strings.Contains(errOut, "https://"+admins[0]+"/live?") || !strings.Contains(errOut, "401 Unauthorized") {
		t.Fatalf("bench w-reap without the admin token: exit %d, want %d and the refused URL and status:\n%s", code, exitFailed, errOut)
	}
}

// rexinode drain sends the admin token; refused, it names the status.
func TestDrainWithToken(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("drain-token\n"), 0o600)
	p := startServe(t, "-secret-file", secretFile(t, "d"), "-admin-token-file", tokenFile)
	if _, errOut, code := runCmd(t, "drain", "-admin", p.Admin, "-grace", "2s"); code != exitFailed || !strings.Contains(errOut, "401 Unauthorized") {
		t.Fatalf("drain without the token: exit %d, want %d and the status:\n%s", code, exitFailed, errOut)
	}
	if out, errOut, code := runCmd(t, "drain", "-admin", p.Admin, "-grace", "2s", "-admin-token-file", tokenFile); code != 0 {
		t.Fatalf("drain with the token: exit %d: %s %s", code, out, errOut)
	}
	if got := status(t, httpClient, "http://"+p.Admin+"/healthz", ""); got != http.StatusServiceUnavailable {
		t.Fatalf("/healthz after drain: %d, want 503", got)
	}
}

// rexinode bench with every workload but no -metrics leaves w-reap out,
// and says so, once.
func TestBenchAllWithoutMetricsSkipsReap(t *testing.T) {
	sf := secretFile(t, "bench-all")
	var nodes []string
	for range 3 {
		nodes = append(nodes, startServe(t, "-secret-file", sf).Addr)
	}
	out, errOut, code := runCmd(t, "bench", "-nodes", strings.Join(nodes, ","), "-secret-file", sf,
		"-fanouts", "1", "-warmup", "1", "-duration", "50ms", "-concurrency", "1", "-json")
	if code != 0 || strings.Count(errOut, "skipping w-reap") != 1 {
		t.Fatalf("bench: exit %d, want 0 and w-reap skipped once:\n%s", code, errOut)
	}
	var results []struct{ Workload string }
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		t.Fatalf("bench -json: %v\n%s", err, out)
	}
	var got []string
	for _, r := range results {
		got = append(got, r.Workload)
	}
	if strings.Join(got, ",") != "w-cast,w-stream,w-conc" {
		t.Fatalf("bench ran %v, want every workload but w-reap", got)
	}
}

// rexinode bench writes the coordinator's CPU profile and execution trace
// where -cpuprofile and -trace say; a file it cannot create is a usage
// error naming the flag.
func TestBenchWritesProfileAndTrace(t *testing.T) {
	sf := secretFile(t, "bench-trace")
	var nodes []string
	for range 3 {
		nodes = append(nodes, startServe(t, "-secret-file", sf).Addr)
	}
	dir := t.TempDir()
	prof, tr := filepath.Join(dir, "coord.pprof"), filepath.Join(dir, "coord.trace")
	bench := []string{"bench", "-nodes", strings.Join(nodes, ","), "-secret-file", sf, "-workload", "w-cast", "-fanouts", "2", "-warmup", "1"}
	if out, errOut, code := runCmd(t, append(bench, "-cpuprofile", prof, "-trace", tr)...); code != 0 {
		t.Fatalf("bench -cpuprofile -trace: exit %d\n%s\n%s", code, out, errOut)
	}
	if st, err := os.Stat(prof); err != nil || st.Size() == 0 {
		t.Fatalf("CPU profile: %v, %v; want a non-empty file", st, err)
	}
	if b, err := os.ReadFile(tr); err != nil || !bytes.HasPrefix(b, []byte("go 1.")) {
		t.Fatalf("execution trace: %v, starts %q; want a Go trace", err, b[:min(len(b), 16)])
	}
	_, errOut, code := runCmd(t, append(bench, "-trace", filepath.Join(dir, "missing", "x.trace"))...)
	if code != exitUsage || !strings.Contains(errOut, "trace:") {
		t.Fatalf("bench -trace into a missing directory: exit %d, want %d naming the flag:\n%s", code, exitUsage, errOut)
	}
}
