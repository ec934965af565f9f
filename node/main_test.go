package node

import (
	"testing"

	"go.uber.org/goleak"
)

// gnet starts an ants worker pool at package init whose two goroutines live
// for the whole process (ProcessGoroutines, ignored the way the package doc
// tells users to); everything else must be gone.
func TestMain(m *testing.M) {
	var opts []goleak.Option
	for _, fn := range ProcessGoroutines {
		opts = append(opts, goleak.IgnoreAnyFunction(fn))
	}
	goleak.VerifyTestMain(m, opts...)
}
