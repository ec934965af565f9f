//go:build linux

package netns

import (
	"testing"

	"github.com/rexi-go/rexi/internal/leak"
	"go.uber.org/goleak"
)

// Both roles of this binary are checked: the parent (topology, node
// processes, metrics clients) and the coordinator child (client, toxiproxy)
// must each end with no goroutine but gnet's pool, which package handlers
// pulls in.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leak.IgnoreGnet...)
}
