//go:build !unix

package coord

import "net"

// tryWrite: without a non-blocking write on this platform, every write is
// the writer goroutine's (a blocking one, bounded by HeartbeatTimeout).
func (s *session) tryWrite(buf []byte) (int, error) { return 0, errWouldBlock }

func (s *session) rawWrite(uintptr) bool { return true }

// sockReader is the reader goroutine's way to read its socket: here,
// the connection's own Read.
type sockReader struct{ conn net.Conn }

func newSockReader(s *session) *sockReader { return &sockReader{s.conn} }

func (r *sockReader) Read(buf []byte) (int, error) { return r.conn.Read(buf) }
