package coord

import (
	"testing"

	"github.com/rexi-go/rexi/node"
)

func restartNode(t testing.TB, addr, name string) *node.Node {
	t.Helper()
	n, err := node.New(node.Config{Name: name, Addr: addr, Secret: secret, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	registerTestHandlers(n)
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	return n
}
