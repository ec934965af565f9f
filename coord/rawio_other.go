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

// run reads the connection into space() and hands each read's byte count
// to got until a read or got fails.
func (r *sockReader) run(space func() []byte, got func(n int) error) error {
	for {
		n, err := r.conn.Read(space())
		if n > 0 {
			if gerr := got(n); gerr != nil {
				return gerr
			}
		}
		if err != nil {
			return err
		}
	}
}
