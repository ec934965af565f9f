//go:build unix

package coord

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// A session's reads and its direct writes are raw system calls on the
// non-blocking socket, made inside RawConn.Read and RawConn.Write, so the
// netpoller still does all the waiting and the read deadline still holds.
//
// Why raw: syscall.Read and syscall.Write tell the Go scheduler they may
// block, and the first such call after every P of the process went idle
// wakes the runtime's monitor thread (sysmon), which then polls every
// 20 µs for a while. A coordinator goes idle in every fan-out while the
// nodes work, so that was a thread wake-up per fan-out for nothing: a
// call on a non-blocking socket never blocks. Raw calls cut the CPU of a
// W-cast fan-out by a tenth on a small host (see bench/README.md).

// sysIO makes a read or write system call on fd, retrying EINTR.
func sysIO(trap, fd uintptr, b []byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		if e != syscall.EINTR {
			return int(n), e
		}
	}
}

// sockReader is the reader goroutine's way to read its socket.
type sockReader struct {
	raw syscall.RawConn
	fn  func(fd uintptr) bool // r.once, made once
	buf []byte
	n   int
	err error
}

func newSockReader(s *session) *sockReader {
	r := &sockReader{raw: s.raw}
	r.fn = r.once
	return r
}

// Read returns what the socket holds, waiting only while it holds
// nothing; io.EOF once the node closed its side.
func (r *sockReader) Read(buf []byte) (int, error) {
	r.buf, r.n, r.err = buf, 0, nil
	err := r.raw.Read(r.fn)
	r.buf = nil
	if err != nil {
		return 0, err // the deadline passed, or the connection was closed
	}
	return r.n, r.err
}

// once runs inside RawConn.Read; false means "nothing yet, wait".
func (r *sockReader) once(fd uintptr) bool {
	n, e := sysIO(syscall.SYS_READ, fd, r.buf)
	switch {
	case e == syscall.EAGAIN:
		return false
	case e != 0:
		r.err = os.NewSyscallError("read", e)
	case n == 0:
		r.err = io.EOF
	default:
		r.n = n
	}
	return true
}

// tryWrite writes as much of buf as the socket takes now, from the
// calling goroutine, without waiting: the direct path that spares a
// hand-off to the writer goroutine.
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
		n, e := sysIO(syscall.SYS_WRITE, fd, s.wbuf[s.wn:])
		if e == syscall.EAGAIN {
			break
		}
		if e != 0 {
			s.werr = os.NewSyscallError("write", e)
			break
		}
		s.wn += n
	}
	return true
}
