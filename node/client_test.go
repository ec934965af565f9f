package node

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/rexi-go/rexi/frame"
	"github.com/rexi-go/rexi/internal/wiretest"
)

// waitFor bounds every wait in these tests: generous, because CI runs on a
// busy 2-core machine under -race.
const waitFor = 10 * time.Second

var testSecret = []byte("node-test-secret")

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// rawClient is the protocol-only test coordinator of internal/wiretest.
type rawClient = wiretest.Client

func dialRaw(t testing.TB, addr string) *rawClient { return wiretest.Dial(t, addr) }

func parseExit(t testing.TB, f frame.Frame) frame.Exit {
	t.Helper()
	if f.Type != frame.TypeExit {
		t.Fatalf("got %s, want EXIT", f.Type)
	}
	x, err := frame.ParseExit(f.Payload)
	if err != nil {
		t.Fatalf("EXIT payload: %v", err)
	}
	return x
}

// eventually polls cond until it holds or waitFor passes. Used for node
// stats, which have no event to wait on from outside the node.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitFor, what)
		}
		time.Sleep(time.Millisecond)
	}
}
