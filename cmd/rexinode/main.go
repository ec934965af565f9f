// Command rexinode is the rexi daemon and its tools.
//
//	rexinode serve    run a node (and a coordinator over its peers)
//	rexinode fanout   run one fan-out against running nodes
//	rexinode bench    run the anchor workloads against running nodes
//	rexinode demo     a 3-node cluster in-process: a fan-out and the reaper at work
//	rexinode keygen   write a static key pair for encrypted connections
//	rexinode drain    ask a running daemon to drain (preStop)
//
// Exit codes: 0 success; 1 the work failed (fan-out error, forced exit on a
// second signal); 2 usage error (bad flags, config or secret); 3 cannot
// listen (address in use); 4 cannot reach or authenticate with the nodes.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitListen      = 3
	exitUnreachable = 4
)

// exitError carries an exit code with its message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func fail(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

const usage = `usage: rexinode <command> [flags]

commands:
  serve    run a node; see rexinode serve -h
  fanout   run one fan-out against running nodes
  bench    run the anchor workloads (w-cast, w-stream, w-reap, w-conc) against running nodes
  demo     start a 3-node cluster in-process, stream a Q=64 N=3 fan-out, show the reaper
  keygen   write a static key pair (-out FILE: FILE and FILE.pub) for encrypted connections
  drain    ask a running daemon to drain and wait for its workers (a Kubernetes preStop hook)
  version  print the version, VCS revision and Go version (also -version)

exit codes: 0 ok, 1 failed, 2 usage, 3 cannot listen, 4 nodes unreachable or secret refused
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(args[1:], stdout, stderr)
	case "fanout":
		err = fanoutCmd(args[1:], stdout, stderr)
	case "bench":
		err = benchCmd(args[1:], stdout, stderr)
	case "demo":
		err = demo(args[1:], stdout, stderr)
	case "keygen":
		err = keygen(args[1:], stdout, stderr)
	case "drain":
		err = drainCmd(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		err = versionCmd(stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "rexinode: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	if err == nil || errors.Is(err, flag.ErrHelp) { // -h printed the flags
		return exitOK
	}
	fmt.Fprintln(stderr, "rexinode:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFailed
}
