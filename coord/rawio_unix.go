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
type sockReader struct{ raw syscall.RawConn }

func newSockReader(s *session) *sockReader { return &sockReader{raw: s.raw} }

// run reads the socket into space() and hands each read's byte count to
// got, waiting while the socket holds nothing, until a read or got
// fails: io.EOF once the node closed its side, the deadline's timeout,
// net.ErrClosed, a read's errno, or got's error.
//
// The loop runs inside one RawConn.Read, which clears the socket's
// readiness once, on entry, and waits only when a read answers EAGAIN.
// A short read is not enough to wait on: data and the peer's FIN that
// arrive together leave one readiness mark, which the wake-up for the
// data consumed, and the read that takes the data stops at the FIN and
// leaves it queued with nothing to mark it again. Waiting then missed a
// node's close until the read deadline (the heartbeat timeout). So run
// reads until EAGAIN or EOF, as conn.Read's callers do.
//
// After maxReads reads without an EAGAIN, run lets go of the Read and
// takes a new one all the same: a node that keeps the socket busy would
// otherwise keep us in one Read, and closing the connection waits for
// the Read to end (a flooding node hung Client.Close, and the session's
// end, for as long as it sent). Waiting there instead would not do: bytes
// already buffered mark nothing ready.
func (r *sockReader) run(space func() []byte, got func(n int) error) error {
	var err error
	more := false // maxReads reads: read on in a new Read
	read := func(fd uintptr) bool {
		for range maxReads {
			b := space()
			n, e := sysIO(syscall.SYS_READ, fd, b)
			switch {
			case e == syscall.EAGAIN:
				return false
			case e != 0:
				err = os.NewSyscallError("read", e)
				return true
			case n == 0:
				err = io.EOF
				return true
			}
			if err = got(n); err != nil {
				return true
			}
		}
		more = true
		return true
	}
	for {
		more = false
		if rerr := r.raw.Read(read); rerr != nil {
			return rerr // the deadline passed, or the connection was closed
		}
		if !more {
			return err
		}
	}
}

// maxReads: see sockReader.run.
const maxReads = 16

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
