//go:build unix

package coord

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
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

// errStop ends a test's sockReader.run from its got callback.
var errStop = errors.New("stop")

// readOnce runs r until its first read: the bytes read, or run's error.
func readOnce(r *sockReader, buf []byte) ([]byte, error) {
	var n int
	err := r.run(func() []byte { return buf }, func(m int) error { n = m; return errStop })
	if errors.Is(err, errStop) {
		return buf[:n], nil
	}
	return nil, err
}

// The reader's raw reads keep what conn.Read promised the reader loop:
// data as it comes, io.EOF at the peer's close, a timeout net.Error at
// the read deadline, and the errno of a reset.
func TestSockReaderKeepsConnReadsContract(t *testing.T) {
	buf := make([]byte, 64)

	s, peer := tcpPair(t)
	r := newSockReader(s)
	go peer.Write([]byte("hello"))
	if got, err := readOnce(r, buf); err != nil || string(got) != "hello" {
		t.Fatalf("run: %q, %v", got, err)
	}
	peer.Close()
	if got, err := readOnce(r, buf); len(got) != 0 || err != io.EOF {
		t.Fatalf("after the peer closed: %q, %v; want io.EOF", got, err)
	}

	s, _ = tcpPair(t)
	r = newSockReader(s)
	s.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var ne net.Error
	if _, err := readOnce(r, buf); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("past the deadline: %v; want a timeout", err)
	}

	s, peer = tcpPair(t)
	r = newSockReader(s)
	peer.SetLinger(0) // close with RST
	peer.Close()
	if _, err := readOnce(r, buf); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after a reset: %v; want ECONNRESET", err)
	}

	s, _ = tcpPair(t)
	r = newSockReader(s)
	s.conn.Close()
	if _, err := readOnce(r, buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("on a closed connection: %v; want net.ErrClosed", err)
	}
}

// What arrives while run is between reads, or waiting, still wakes it:
// writes with short reads between them all reach got, byte for byte, and
// a read that fills the space reads again at once.
func TestSockReaderShortReadStillSeesWhatFollows(t *testing.T) {
	s, peer := tcpPair(t)
	r := newSockReader(s)
	const total = 1000
	buf := make([]byte, 64)
	var got []byte
	go func() {
		for i := 0; i < total; i += 100 {
			chunk := make([]byte, 100)
			for j := range chunk {
				chunk[j] = byte(i + j)
			}
			peer.Write(chunk)
		}
	}()
	err := r.run(func() []byte { return buf }, func(n int) error {
		got = append(got, buf[:n]...)
		if len(got) == total {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("run: %v after %d bytes", err, len(got))
	}
	for i, b := range got {
		if b != byte(i) {
			t.Fatalf("byte %d is %d", i, b)
		}
	}
}

// A peer that writes and closes at once leaves its data and its FIN
// behind one readiness mark: the read that takes the data leaves the FIN
// queued with nothing to mark it again, so run must read on past a short
// read. It waited for the read deadline instead (a node's last frames
// followed by its close went unnoticed until the heartbeat timeout; found
// by FuzzNodeOutput). Here the last data and the FIN both arrive while
// got is handling the first byte, so both are queued when run reads next.
func TestSockReaderSeesACloseThatCameWithTheData(t *testing.T) {
	s, peer := tcpPair(t)
	r := newSockReader(s)
	s.conn.SetReadDeadline(time.Now().Add(waitFor)) // bounds the test: run must end with EOF first
	inGot, goOn := make(chan struct{}), make(chan struct{})
	type result struct {
		got []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		buf := make([]byte, 64)
		var got []byte
		err := r.run(func() []byte { return buf }, func(n int) error {
			got = append(got, buf[:n]...)
			if len(got) == 1 {
				inGot <- struct{}{}
				<-goOn
			}
			return nil
		})
		done <- result{got, err}
	}()
	if _, err := peer.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	<-inGot
	if _, err := peer.Write([]byte(" last word")); err != nil {
		t.Fatal(err)
	}
	if err := peer.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	close(goOn)
	res := <-done
	if string(res.got) != "a last word" || res.err != io.EOF {
		t.Fatalf("run: %q, %v; want the data, then io.EOF", res.got, res.err)
	}
}

// A peer that keeps the socket full cannot hold the reader in one
// RawConn.Read: closing the connection waits for the Read in progress to
// end, and a flooding node hung Client.Close for as long as it sent.
func TestSockReaderLetsCloseInWhileThePeerFloods(t *testing.T) {
	s, peer := tcpPair(t)
	flood := make([]byte, 64<<10)
	go func() { // keeps the socket full until the connection ends
		for {
			if _, err := peer.Write(flood); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 16) // every read fills it
	closed := make(chan struct{})
	var reads atomic.Int64
	ran := make(chan error, 1)
	go func() {
		ran <- newSockReader(s).run(func() []byte { return buf }, func(int) error {
			if reads.Add(1) == 1 {
				go func() {
					s.conn.Close()
					close(closed)
				}()
			}
			return nil
		})
	}()
	select {
	case err := <-ran:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("run: %v after %d reads, want net.ErrClosed", err, reads.Load())
		}
	case <-time.After(waitFor):
		t.Fatalf("the reader still reads after %d reads: Close cannot get in", reads.Load())
	}
	<-closed
}
