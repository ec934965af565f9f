package main

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/panjf2000/gnet/v2"
)

// Frames both ways: a 4-byte length, then the body: an 8-byte id, a kind
// byte and the kind's payload.
const (
	kindCast   = 1 // C→N: 92 bytes; answered with a reply
	kindReply  = 2 // N→C: 64 bytes
	kindDoit   = 3 // C→N: 92 bytes; answered with an init, the job waits
	kindInit   = 4 // N→C
	kindStart  = 5 // C→N: the job streams
	kindCancel = 6 // C→N: the job is dropped
	kindRow    = 7 // N→C: 100 bytes
	kindAck    = 8 // C→N: a 4-byte count of rows taken in
	kindLast   = 9 // N→C: the job is done

	headerLen = 4 + 8 + 1
	reqBytes  = 92  // about a rexi DOIT's payload
	replySize = 64  // W-cast's reply
	rowSize   = 100 // W-stream's row
	rows      = 10  // W-stream's rows per job
	window    = 5   // W-stream's un-acked rows
)

// job is a W-stream job on a node.
type job struct {
	started       bool
	sent, unacked int
}

// events is the node: it runs every job on its event loop. One node
// serves one coordinator, so ids are its jobs' keys.
type events struct {
	gnet.BuiltinEventEngine
	out  []byte
	jobs map[uint64]*job
}

func (e *events) OnBoot(gnet.Engine) gnet.Action {
	fmt.Println("listening") // the coordinator waits for this line
	return gnet.None
}

func (e *events) OnTraffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Peek(-1)
	e.out = e.out[:0]
	used := 0
	for len(buf)-used >= 4 {
		n := int(binary.BigEndian.Uint32(buf[used:]))
		if n < headerLen-4 {
			return gnet.Close
		}
		if len(buf)-used < 4+n {
			break
		}
		body := buf[used+4 : used+4+n]
		used += 4 + n
		id := binary.BigEndian.Uint64(body)
		switch body[8] {
		case kindCast:
			e.out = appendFrame(e.out, id, kindReply, replySize)
		case kindDoit:
			e.jobs[id] = &job{}
			e.out = appendFrame(e.out, id, kindInit, 0)
		case kindStart:
			if j := e.jobs[id]; j != nil {
				j.started = true
				e.pump(id, j)
			}
		case kindCancel:
			delete(e.jobs, id)
		case kindAck:
			if j := e.jobs[id]; j != nil && len(body) >= 13 {
				j.unacked -= int(binary.BigEndian.Uint32(body[9:]))
				e.pump(id, j)
			}
		default:
			return gnet.Close
		}
	}
	if used > 0 { // gnet's Discard(0) would drop a partial frame too
		c.Discard(used)
	}
	if len(e.out) > 0 {
		if _, err := c.Write(e.out); err != nil {
			return gnet.Close
		}
	}
	return gnet.None
}

// pump sends a started job's rows while its window allows, and its last
// message after the last row.
func (e *events) pump(id uint64, j *job) {
	for j.started && j.sent < rows && j.unacked < window {
		e.out = appendFrame(e.out, id, kindRow, rowSize)
		j.sent++
		j.unacked++
	}
	if j.sent == rows {
		e.out = appendFrame(e.out, id, kindLast, 0)
		delete(e.jobs, id)
	}
}

// appendFrame appends a frame of kind for id with n zero bytes of payload.
func appendFrame(b []byte, id uint64, kind byte, n int) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(headerLen-4+n))
	b = binary.BigEndian.AppendUint64(b, id)
	b = append(b, kind)
	return append(b, make([]byte, n)...)
}

func serve() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // find a free port, then hand it to gnet
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	fmt.Println(addr)
	return gnet.Run(&events{jobs: map[uint64]*job{}}, "tcp://"+addr) // one event loop: one connection
}
