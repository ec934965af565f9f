package integration

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The README's two library programs, exactly as printed there: built, the
// node started, the coordinator run against it.
func TestReadmeProgramsRunAsWritten(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var progs []string
	for _, m := range regexp.MustCompile("(?s)```go\n(package main\n.*?)```").FindAllSubmatch(readme, -1) {
		progs = append(progs, string(m[1]))
	}
	if len(progs) != 2 || !strings.Contains(progs[0], "node.New") || !strings.Contains(progs[1], "coord.NewClient") {
		t.Fatalf("README.md has %d complete Go programs; want the node's, then the coordinator's", len(progs))
	}
	// Built inside the module, so the imports resolve to this checkout.
	dir, err := os.MkdirTemp("..", ".readme-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bins := make([]string, 2)
	for i, name := range []string{"node", "coord"} {
		src := filepath.Join(dir, name)
		os.Mkdir(src, 0o755)
		if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(progs[i]), 0o644); err != nil {
			t.Fatal(err)
		}
		bins[i], _ = filepath.Abs(filepath.Join(dir, name+".bin"))
		build := exec.Command("go", "build", "-o", bins[i], ".")
		build.Dir = src
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("the README's %s program does not build: %v\n%s", name, err, out)
		}
	}

	env := append(os.Environ(), "REXI_SECRET=readme-secret")
	nodeCmd := exec.Command(bins[0])
	nodeCmd.Env = append(env, "REXI_ADDR=127.0.0.1:0")
	stdout, _ := nodeCmd.StdoutPipe()
	nodeCmd.Stderr = os.Stderr
	if err := nodeCmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	defer func() {
		nodeCmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("node program after SIGINT: %v", err)
			}
		case <-time.After(10 * time.Second):
			nodeCmd.Process.Kill()
			t.Error("node program did not exit after SIGINT")
		}
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	go func() { exited <- nodeCmd.Wait() }()
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		t.Fatalf("node program printed %q (%v), want \"listening on ADDR\"", line, err)
	}

	coordCmd := exec.Command(bins[1])
	coordCmd.Env = append(env, "REXI_NODES="+addr)
	var logs strings.Builder
	coordCmd.Stderr = &logs
	out, err := coordCmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != "40 rows" {
		t.Fatalf("coordinator program: %v, printed %q; want \"40 rows\"\nstderr:\n%s", err, out, logs.String())
	}
}
