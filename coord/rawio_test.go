//go:build unix

package coord

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection; the first as
// a session, so that its reads go through sockReader.
func tcpPair(t *testing.T) (*session, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := (<-accepted).(*net.TCPConn)
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	return &session{conn: c, raw: raw}, peer
}

// The reader's raw reads keep what conn.Read promised the reader loop:
// data as it comes, io.EOF at the peer's close, a timeout net.Error at
// the read deadline, and the errno of a reset.
func TestSockReaderKeepsConnReadsContract(t *testing.T) {
	buf := make([]byte, 64)

	s, peer := tcpPair(t)
	r := newSockReader(s)
	go peer.Write([]byte("hello"))
	if n, err := r.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read: %q, %v", buf[:n], err)
	}
	peer.Close()
	if n, err := r.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("after the peer closed: %d bytes, %v; want io.EOF", n, err)
	}

	s, _ = tcpPair(t)
	r = newSockReader(s)
	s.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var ne net.Error
	if _, err := r.Read(buf); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("past the deadline: %v; want a timeout", err)
	}

	s, peer = tcpPair(t)
	r = newSockReader(s)
	peer.SetLinger(0) // close with RST
	peer.Close()
	if _, err := r.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after a reset: %v; want ECONNRESET", err)
	}

	s, _ = tcpPair(t)
	r = newSockReader(s)
	s.conn.Close()
	if _, err := r.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("on a closed connection: %v; want net.ErrClosed", err)
	}
}
