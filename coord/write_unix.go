//go:build unix

package coord

import "syscall"

// tryWrite writes as much of buf as the socket takes now, from the
// calling goroutine, without waiting (the descriptor is non-blocking):
// the direct path that spares a hand-off to the writer goroutine.
func (s *session) tryWrite(buf []byte) (int, error) {
	s.wbuf, s.wn, s.werr = buf, 0, nil
	if err := s.raw.Write(s.rawWriteFn); err != nil {
		return 0, err
	}
	n, err := s.wn, s.werr
	s.wbuf = nil
	return n, err
}

// rawWrite runs inside RawConn.Write: EAGAIN ends the attempt instead of
// waiting.
func (s *session) rawWrite(fd uintptr) bool {
	for s.wn < len(s.wbuf) {
		n, err := syscall.Write(int(fd), s.wbuf[s.wn:])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			break
		}
		if err != nil {
			s.werr = err
			break
		}
		s.wn += n
	}
	return true
}
