//go:build !unix

package coord

// tryWrite: without a non-blocking write on this platform, every write is
// the writer goroutine's (a blocking one, bounded by HeartbeatTimeout).
func (s *session) tryWrite(buf []byte) (int, error) { return 0, errWouldBlock }

func (s *session) rawWrite(uintptr) bool { return true }
