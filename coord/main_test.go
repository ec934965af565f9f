package coord

import (
	"testing"

	"go.uber.org/goleak"
)

// gnet (the nodes under test) starts an ants pool at init whose two
// goroutines live for the whole process; everything else must be gone.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
	)
}
