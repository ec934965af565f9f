package node

import (
	"testing"

	"go.uber.org/goleak"
)

// gnet starts an ants worker pool at package init whose two goroutines live
// for the whole process; everything else must be gone.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
	)
}
