package main

import (
	"testing"

	"github.com/rexi-go/rexi/internal/proctest"
)

type proc = proctest.Proc

var httpClient = proctest.HTTP

func startServe(t *testing.T, args ...string) *proc { return proctest.StartServe(t, binary, args...) }

func runCmd(t *testing.T, args ...string) (string, string, int) {
	return proctest.Run(t, binary, args...)
}

func secretFile(t *testing.T, s string) string { return proctest.SecretFile(t, s) }

func eventually(t *testing.T, what string, cond func() bool) { proctest.Eventually(t, what, cond) }

// waitPeers waits until the daemon's coordinator side is connected to n peers.
func waitPeers(t *testing.T, p *proc, n int) {
	t.Helper()
	eventually(t, "peers connected", func() bool { return p.Metric("rexi_coord_peers_up") == float64(n) })
}
