package coord

import (
	"testing"

	"github.com/rexi-go/rexi/internal/leak"
	"go.uber.org/goleak"
)

// gnet (the nodes under test) starts an ants pool at init whose two
// goroutines live for the whole process; everything else must be gone.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leak.IgnoreGnet...)
}
