// Package leak holds the goleak options every test package shares.
package leak

import "go.uber.org/goleak"

// IgnoreGnet ignores exactly the two goroutines of the ants worker pool
// that gnet starts at package init and keeps for the whole process; every
// other goroutine must be gone when a test binary ends.
var IgnoreGnet = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
	goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
}
