// Package leak holds the goleak options every test package shares.
package leak

import (
	"github.com/rexi-go/rexi/node"
	"go.uber.org/goleak"
)

// IgnoreGnet ignores exactly the two goroutines of the ants worker pool
// that gnet starts at package init and keeps for the whole process
// (node.ProcessGoroutines); every other goroutine must be gone when a
// test binary ends.
var IgnoreGnet = func() []goleak.Option {
	var opts []goleak.Option
	for _, fn := range node.ProcessGoroutines {
		opts = append(opts, goleak.IgnoreAnyFunction(fn))
	}
	return opts
}()
